"""The main job: stylizer, detector, restorer on the embedded data; evaluate; report.

`run(config, workdir)` is the one library call behind `experiments.run`:

  workdir/gan/        the style GAN run (checkpoints, logs, eval.json)
  workdir/detector/   the learned detector run; calibration.json, feature_stats.npz
  workdir/restorer/   the restorer run
  workdir/report/     summary.json, report.md, index.html, PNG figures

Every stage resumes from its checkpoints, so re-running after a stop continues.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from stylegan_ad import artifacts, correct, detect, fullres, report
from stylegan_ad.train import loop, stages


def build_scorers(config: ml_collections.ConfigDict, gan: loop.Run, det_params: Any,
                  fit: stages.Outputs) -> list[detect.Scorer]:
  """[discriminator, detector, feature_distance] scorers (not yet calibrated)."""
  d_params = jax.device_get(gan.state.d_params["b"])
  paired = gan.models.paired
  fd = detect.FeatureDistanceScorer(gan.models.discriminator, d_params, conditional=paired)
  fd.fit(fit.clean, fit.content, seed=config.seed)
  return [detect.DiscriminatorScorer(gan.models.discriminator, d_params, conditional=paired),
          stages.make_detector_scorer(config, det_params), fd]


@dataclasses.dataclass
class DetectorStage:
  gan: loop.Run
  ema: Any                   # the EMA generator's parameters
  fit: stages.Outputs        # clean train outputs the detector and restorer learn from
  test: stages.Outputs       # clean outputs of the test photos
  det_params: Any
  scorers: list              # [discriminator, detector, feature_distance], calibrated


ALL_TYPES = list(range(len(artifacts.TYPES)))


def detector_stage(config: ml_collections.ConfigDict, workdir: str) -> DetectorStage | None:
  """GAN (trained or resumed), its outputs, the detector, and the calibrated scorers."""
  gan = loop.train(config, os.path.join(workdir, "gan"))
  if gan.preempted:
    return None
  crop = config.data.crop_size
  ema = jax.device_get(gan.state.ema["ab"])
  # every train photo's outputs (all of them when the dataset has pairs): more variety
  # of clean outputs makes the detector's notion of "clean" generalise to new photos
  train_set = gan.dataset.train_pairs or gan.dataset.train_a
  train_out = stages.generator_outputs(gan.models, ema, train_set.images, train_set.targets, crop,
                                       corners=True)
  fit, calib = stages.split_calibration(train_out, config.detect.calibration_fraction, config.seed)
  det_params = stages.train_detector(config, os.path.join(workdir, "detector"), fit, gan.mesh, ALL_TYPES)
  scorers = build_scorers(config, gan, det_params, fit)
  for s in scorers:
    s.calibrate(calib.clean, calib.content, config.detect.fpr)
  if jax.process_index() == 0:
    detect.save_calibration(os.path.join(workdir, "detector", "calibration.json"), scorers,
                            config.detect.fpr)
  test_out = stages.generator_outputs(gan.models, ema, gan.dataset.test_a.images,
                                      gan.dataset.test_a.targets, crop)
  return DetectorStage(gan, ema, fit, test_out, det_params, scorers)


def train_and_calibrate_detector(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The detector stage alone; returns the calibrated thresholds."""
  stage = detector_stage(config, workdir)
  return {} if stage is None else {s.name: s.threshold for s in stage.scorers}


WHOLE_PHOTO_SCALES = (1.0, 0.5)


def whole_photo_false_positives(stage: DetectorStage, scorer: detect.Scorer) -> dict[str, Any]:
  """The calibrated detector on clean G outputs of the whole test photos at the scale the
  folder CLI uses them (their own size, and half of it): the share flagged, against the
  crop-level calibration target."""
  photos = stage.gan.dataset.test_photos
  if photos is None or not len(photos):
    return {"note": "no whole test photos in this dataset"}
  fn = lambda y: dict(zip(("score", "map"), scorer._jit(y, y)))
  scores = []
  for i in range(len(photos)):
    for scale in WHOLE_PHOTO_SCALES:
      photo = photos.images[i]
      photo, _ = fullres.fit_max_side(photo, int(round(max(photo.shape[:2]) * scale)))
      y = loop.stylize_photo(stage.gan.models, stage.ema, photo)
      scores.append(float(np.max(fullres.apply(fn, y)["score"])))
  flagged = np.asarray(scores) > scorer.threshold
  return {"images": len(scores), "scales": list(WHOLE_PHOTO_SCALES), "flagged": int(flagged.sum()),
          "fpr": float(flagged.mean()), "scores": scores, "threshold": scorer.threshold}


def seen_types_test_set(config: ml_collections.ConfigDict, stage: DetectorStage) -> dict[str, np.ndarray]:
  return detect.make_test_set(stage.test.clean, stage.test.content, ALL_TYPES, seed=config.seed + 7, copies=2)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every stage and returns the summary written to `workdir/report/summary.json`."""
  t0 = time.time()
  stage = detector_stage(config, workdir)
  if stage is None:
    return {}
  gan, scorers, det_params = stage.gan, stage.scorers, stage.det_params
  stylize = loop.evaluate(gan)
  test = seen_types_test_set(config, stage)
  detection = {s.name: detect.evaluate_scorer(s(test["images"], test["content"]), test) for s in scorers}

  res_params = stages.train_restorer(config, os.path.join(workdir, "restorer"), stage.fit, gan.mesh,
                                     ALL_TYPES, det_params)
  detector_scorer = scorers[1]
  corrector = correct.Corrector.build(config, gan.models, detector_scorer)
  correction, per_image = correct.benchmark(corrector, det_params, res_params, stage.ema,
                                            stage.test.clean, stage.test.content, test)
  det = detection["detector"]
  summary = {
      "data": gan.dataset.summary(),
      "train_steps": int(jax.device_get(gan.state.step)),
      "stylize": {k: stylize[k] for k in ("psnr", "ssim", "identity_psnr", "identity_ssim",
                                          "channel_mean_error", "photos") if k in stylize},
      "detect": {"image_auroc": det["image_auroc"], "image_ap": det["image_ap"],
                 "pixel_auroc": det["pixel_auroc"], "aupro": det["aupro"],
                 "fpr": det.get("fpr"), "tpr": det.get("tpr"),
                 "test_images": {"clean": int((test["is_anomalous"] == 0).sum()),
                                 "corrupted": int((test["is_anomalous"] > 0).sum())},
                 "whole_photos": whole_photo_false_positives(stage, scorers[1])},
      "detect_all_scorers": detection,
      "correct": correction,
      "seconds": time.time() - t0,
  }
  if jax.process_index() == 0:
    report.write_run_report(os.path.join(workdir, "report"), summary, gan, test, per_image)
  return summary


def _natural_failures(config, gan: loop.Run, workdir: str, clean_test: stages.Outputs) -> dict[str, np.ndarray]:
  """Outputs of under-trained checkpoints and of the final G, labelled by |G(x) - S(x)|."""
  from stylegan_ad.train.checkpoint import Checkpointer
  ckpt = Checkpointer(os.path.join(workdir, "gan"), keep=config.checkpoint.keep)
  try:
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), gan.state)
    early_steps = [s for s in ckpt.steps() if s < int(jax.device_get(gan.state.step))]
    outputs = [clean_test.clean]
    for s in early_steps:
      _, state, _ = ckpt.restore(abstract, step=s)
      g = jax.device_get(state.ema["ab"])
      outputs.append(stages.generator_outputs(gan.models, g, gan.dataset.test_a.images, None,
                                              config.data.crop_size).clean)
  finally:
    ckpt.close()
  images = np.concatenate(outputs)
  target = np.concatenate([clean_test.target] * len(outputs))
  masks = (np.abs(images - target).mean(-1) > config.detect.natural_threshold).astype(np.float32)
  anomalous = (masks.mean((1, 2)) > 0.05).astype(np.float32)
  return {"images": images, "content": np.concatenate([clean_test.content] * len(outputs)),
          "masks": masks * anomalous[:, None, None], "is_anomalous": anomalous,
          "kind": np.full(len(images), -1, np.int32), "checkpoints": np.array(early_steps)}


def evaluate_detection(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """All scorers x three settings: seen types, each type held out, natural failures.

  Needs a finished main-job run in `workdir`; writes `workdir/detection.json` and
  `workdir/detection.md`.
  """
  stage = detector_stage(config, workdir)
  if stage is None:
    return {}
  gan, fit, test_out, scorers = stage.gan, stage.fit, stage.test, stage.scorers
  all_types = ALL_TYPES
  seen = seen_types_test_set(config, stage)
  results = {"seen types": {s.name: detect.evaluate_scorer(s(seen["images"], seen["content"]), seen)
                            for s in scorers}}

  heldout_config = ml_collections.ConfigDict(config.to_dict())
  heldout_config.detect.steps = config.detect.heldout_steps
  per_type: dict[str, dict] = {}
  for t in all_types:
    name = artifacts.TYPES[t]
    params = stages.train_detector(heldout_config, os.path.join(workdir, "heldout", name), fit, gan.mesh,
                                   [u for u in all_types if u != t])
    test = detect.make_test_set(test_out.clean, test_out.content, [t], seed=config.seed + 11 + t, copies=1)
    held = [stages.make_detector_scorer(config, params), scorers[0], scorers[2]]
    per_type[name] = {s.name: detect.evaluate_scorer(s(test["images"], test["content"]), test) for s in held}
  keys = ("image_auroc", "image_ap", "pixel_auroc", "aupro")
  results["held-out type (mean)"] = {
      s: {k: float(np.nanmean([per_type[t][s][k] for t in per_type])) for k in keys}
      for s in ("detector", "discriminator", "feature_distance")}

  natural = _natural_failures(config, gan, workdir, test_out)
  labels = natural["is_anomalous"] > 0
  if labels.any() and (~labels).any():
    results["natural failures"] = {s.name: detect.evaluate_scorer(s(natural["images"], natural["content"]),
                                                                  natural) for s in scorers}
  out = {"results": results, "held_out_per_type": per_type,
         "natural": {"checkpoints": natural["checkpoints"].tolist(), "images": int(len(labels)),
                     "anomalous": int(labels.sum()), "threshold": config.detect.natural_threshold}}
  if jax.process_index() == 0:
    report.write_json(os.path.join(workdir, "detection.json"), out)
    report.write_text(os.path.join(workdir, "detection.md"),
                      "# Detection benchmark\n\n" + report.detection_table(results) + "\n")
  return out
