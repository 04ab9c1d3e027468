"""Which alternate views of G carry its spread: the TTA scorer's map with each set of views.

  python scripts/views_probe.py --run=runs/embedded --out=runs/views_probe

On a finished main-job run (its G and real-failure pools, resumed), G runs on each pool
input turned half a turn (the view this build's detector sees, `detect.tta_alternates`),
mirrored, flipped and shifted by (3, 5) pixels, each mapped back, at the photo's own
padded size as the main job runs G. For each set of views, the per-pixel spread of G's
output and those views (`detect.tta_spread_map`, the `tta_variance` scorer's map, its
image score the map's mean) is measured on the test photos' real-failure pool as the main
job measures its scorers (`failures.evaluate`; threshold at 1% false positives on the
reference photo's clean outputs). Writes OUT/views_probe.json and prints a Markdown
table. About 5 minutes on 2 cores.
"""
from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

_RUN = flags.DEFINE_string("run", "runs/embedded", "a finished main-job run (embedded data)")
_OUT = flags.DEFINE_string("out", "runs/views_probe", "folder for views_probe.json")

KEYS = ("pixel_auroc", "aupro", "image_auroc", "spearman")
VIEWS = {"half turn": lambda x: x[:, ::-1, ::-1], "mirrored": lambda x: x[:, :, ::-1],
         "flipped": lambda x: x[:, ::-1]}
SETS = (("half turn",), ("mirrored",), ("flipped",), ("shifted",), ("mirrored", "flipped"),
        ("mirrored", "flipped", "shifted"))


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  from experiments.configs import embedded
  from stylegan_ad import console, detect, failures, fullres, main_job

  console.quiet_libraries()
  config = embedded.get_config()
  stage = main_job.detector_stage(config, _RUN.value)
  if stage is None or stage.real is None:
    raise SystemExit(f"{_RUN.value}: needs a finished main-job run on data with true targets")
  real, g = stage.real, main_job._generator(stage.gan)

  def views(x):  # each view of G, mapped back (a flip is its own inverse)
    out = {name: t(g(t(x))) for name, t in VIEWS.items()}
    out["shifted"] = jnp.roll(g(jnp.roll(x, (3, 5), (1, 2))), (-3, -5), (1, 2))
    return out

  fn = jax.jit(views)
  tiling = fullres.run_tiling(stage.gan.config)

  def pool_views(pool):
    first = failures.unique_inputs(pool)
    done = {i: fullres.apply(fn, pool.inputs[i], tiling)
            for i in console.progress(np.unique(first), "G's views", unit="image")}
    return [done[i] for i in first]

  ref_views, test_views = pool_views(real.reference), pool_views(real.test)
  rows = {}
  for names in SETS:
    def maps(pool, pviews):
      return [np.asarray(detect.tta_spread_map(jnp.asarray(y)[None],
                                               jnp.concatenate([jnp.asarray(v[n])[None] for n in names], -1))[0])
              for y, v in zip(pool.outputs, pviews)]
    ref_maps, test_maps = maps(real.reference, ref_views), maps(real.test, test_views)
    ref_scores = np.array([m.mean() for m in ref_maps])
    threshold = detect.threshold_for_fpr(ref_scores[~real.reference_labels.anomalous], config.detect.fpr)
    out = failures.evaluate(np.array([m.mean() for m in test_maps]), test_maps, real.test, real.test_labels,
                            threshold, config.failures.bootstrap, config.seed)
    rows[" + ".join(names)] = {k: float(out[k]) for k in KEYS}
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, "views_probe.json"), "w") as fh:
    json.dump({"run": _RUN.value, "rows": rows}, fh, indent=2)
  print("| G's views | " + " | ".join(KEYS) + " |")
  print("|---" * (len(KEYS) + 1) + "|")
  for name, r in rows.items():
    print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in KEYS) + " |")


if __name__ == "__main__":
  app.run(main)
