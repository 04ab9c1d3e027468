"""What else could find G's real failures: the detector's fusion refitted other ways.

  python scripts/fusion_probe.py --run=runs/embedded --out=runs/fusion_probe

On a finished main-job run (its G, detector and pools, resumed), the detector's fused map
(`detect.Fusion`: the network's logit, the style-statistics and G-spread maps) is refitted
by logistic regression on G's real failures in several ways, and each fit is measured on
the test photos' real-failure pool exactly as the main job measures its scorers
(`failures.evaluate`), with the threshold set to 1% false positives on the reference
photo's clean outputs:

- `the run's fusion`: the main job's own fit (with its palette model where it has one:
  `detect.fuse_palette`), its image score taken over the photo's own pixels (the main
  job's is taken over the padded canvas the networks run on);
- `reference`: refitted on the reference photo's pool as the main job fits it, but on
  its real pixels only (no synthetic share);
- `reference + palette`: the style's palette map (`detect.Palette`, the run's own) as a
  fourth weight of the linear model, instead of a model of its own whose probability
  wins where it is larger (the main job's `detect.fuse_palette`);
- `reference + train photos`: fitted on the train photos' pool as well (G trained on those
  photos, and the network on crops of them);
- `reference + portrait`: fitted on a second, unseen photo's pool as well (matplotlib's
  bundled `grace_hopper.jpg`: a portrait with large dark, smooth areas, which the single
  reference photo lacks);
- `palette alone`: the palette map as its own scorer (the `palette` scorer's map, its
  image score the same percentile as the fusion's).

It also says what the failure truth would become if the portrait joined the reference
split (its thresholds fixed on both photos). Writes OUT/fusion_probe.json and prints a
Markdown table. About 4 minutes on 2 cores.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from absl import app, flags

_RUN = flags.DEFINE_string("run", "runs/embedded", "a finished main-job run (embedded data)")
_OUT = flags.DEFINE_string("out", "runs/fusion_probe", "folder for fusion_probe.json")

KEYS = ("spearman", "pixel_auroc", "aupro", "image_auroc", "fpr", "tpr")


def portrait() -> np.ndarray:
  import matplotlib.cbook
  from PIL import Image
  with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
    return np.asarray(Image.open(f).convert("RGB"))


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  from experiments.configs import embedded
  from stylegan_ad import console, detect, failures, main_job

  console.quiet_libraries()
  config = embedded.get_config()
  f = config.failures
  stage = main_job.detector_stage(config, _RUN.value)
  if stage is None or stage.real is None:
    raise SystemExit(f"{_RUN.value}: needs a finished main-job run on data with true targets")
  gan, real = stage.gan, stage.real
  fusion = stage.scorers[1].fusion
  # columns: the three linear features and the style's palette map (`detect.Fusion` uses the
  # fourth only where the run's fusion has its palette model)
  fn = main_job.fusion_feature_fn(stage.scorers[1], stage.scorers[3], stage.scorers[3].palette)

  gens = main_job.pool_generators(gan)
  # (the detector stage built the train pool too, but keeps only its crops)
  pools = {"reference": (real.reference, real.reference_labels), "test": (real.test, real.test_labels)}
  train = failures.build_pool(gan.dataset.train_photos.images, gens, gan.dataset.style, f.max_side, desc="train pool")
  extra = failures.build_pool([portrait()], gens, gan.dataset.style, f.max_side, scales=main_job.REFERENCE_SCALES,
                              desc="portrait pool")
  for p in (train, extra):
    p.alts = main_job.pool_alternates(gan, p)
  pools["train"] = (train, failures.label(train, real.truth))
  pools["portrait"] = (extra, failures.label(extra, real.truth))
  feats = {name: [o["f"] for o in failures.apply_pool(jax.jit(fn), pool, f.max_side, f"{name}: maps")]
           for name, (pool, _) in pools.items()}

  q = 1.0 - real.truth.area_cut
  clean_ref = ~real.reference_labels.anomalous
  test_pool, test_labels = pools["test"]

  def measure(cols, weights, bias, model=None):
    def maps(name):
      if model is not None:
        return [np.asarray(model(x)) for x in feats[name]]
      return [1.0 / (1.0 + np.exp(-(x[..., cols] @ weights + bias))) for x in feats[name]]
    ref_scores = np.array([np.quantile(m, q) for m in maps("reference")])
    test_maps = maps("test")
    score = np.array([np.quantile(m, q) for m in test_maps])
    threshold = detect.threshold_for_fpr(ref_scores[clean_ref], config.detect.fpr)
    out = failures.evaluate(score, test_maps, test_pool, test_labels, threshold, f.bootstrap, config.seed)
    return {k: out[k] for k in KEYS} | {"weights": [round(float(w), 3) for w in weights], "bias": round(bias, 3)}

  def fitted(cols, sources):
    w, b = detect.fit_logistic([x[..., cols] for s in sources for x in feats[s]],
                               [m for s in sources for m in pools[s][1].masks])
    return measure(cols, w, b)

  three, four = [0, 1, 2], [0, 1, 2, 3]
  rows = {"the run's fusion": measure(three, np.asarray(fusion.weights), fusion.bias,
                                      lambda x: fusion.from_features(jnp.asarray(x[None]))[1][0]),
          "reference": fitted(three, ["reference"]),
          "reference + palette": fitted(four, ["reference"]),
          "reference + train photos": fitted(three, ["reference", "train"]),
          "reference + portrait": fitted(three, ["reference", "portrait"]),
          "palette alone": measure([3], np.ones(1), 0.0)}
  # the failure truth if the portrait joined the reference split (thresholds on both photos)
  both = failures.take(real.reference, np.arange(len(real.reference)))
  for attr in ("inputs", "outputs", "targets", "generator", "shift", "alts"):
    getattr(both, attr).extend(getattr(extra, attr))
  both.photo = np.r_[real.reference.photo, extra.photo + 1]
  truth2 = failures.fit_truth(both, f.quantile, f.area_factor, min_region=f.min_region)
  relabelled = failures.label(test_pool, truth2)
  final_train = train.where(train.generator[0], "none")
  train_share = float(pools["train"][1].area[final_train].max())
  result = {"run": _RUN.value, "rows": rows, "truth": dataclasses.asdict(real.truth),
            "train_final_g_failing_share_max": train_share,
            "test_anomalous_rate": float(test_labels.anomalous.mean()),
            "portrait_anomalous": [int(pools["portrait"][1].anomalous.sum()), len(extra)],
            "truth_with_portrait": dataclasses.asdict(truth2),
            "test_anomalous_rate_with_portrait_truth": float(relabelled.anomalous.mean())}
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, "fusion_probe.json"), "w") as fh:
    json.dump(result, fh, indent=2)
  print("| fusion fitted on | " + " | ".join(KEYS) + " |")
  print("|---" * (len(KEYS) + 1) + "|")
  for name, r in rows.items():
    print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in KEYS) + " |")
  print(f"train photos: at most {train_share:.1%} of a final G output's pixels fail")
  print(f"portrait pool: {result['portrait_anomalous'][0]} of {result['portrait_anomalous'][1]} outputs fail "
        f"under the run's truth; with the truth fixed on both photos the pixel threshold is "
        f"{truth2.pixel_threshold:.3f} (was {real.truth.pixel_threshold:.3f}) and the test pool's anomalous rate "
        f"{result['test_anomalous_rate_with_portrait_truth']:.0%} (was {result['test_anomalous_rate']:.0%})")


if __name__ == "__main__":
  app.run(main)
