"""The main job: stylizer, detector, restorer on the embedded data; evaluate; report.

`run(config, workdir)` is the one library call behind `experiments.run`:

  workdir/gan/        the style GAN run (checkpoints, logs, eval.json)
  workdir/detector/   the learned detector run; calibration.json, feature_stats.npz
  workdir/restorer/   the restorer run
  workdir/report/     summary.json, report.md, index.html, PNG figures

Every stage resumes from its checkpoints, so re-running after a stop continues.
"""
from __future__ import annotations

import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from stylegan_ad import artifacts, correct, detect, report
from stylegan_ad.train import loop, stages


def build_scorers(config: ml_collections.ConfigDict, gan: loop.Run, det_params: Any,
                  fit_images: np.ndarray) -> list[detect.Scorer]:
  d_params = jax.device_get(gan.state.d_params["b"])
  fd = detect.FeatureDistanceScorer(gan.models.discriminator, d_params)
  fd.fit(fit_images, seed=config.seed)
  return [detect.DiscriminatorScorer(gan.models.discriminator, d_params),
          detect.DetectorScorer(stages.make_detector(config), det_params), fd]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every stage and returns the summary written to `workdir/report/summary.json`."""
  t0 = time.time()
  gan = loop.train(config, os.path.join(workdir, "gan"))
  if gan.preempted:
    return {}
  crop = config.data.crop_size
  ema = jax.device_get(gan.state.ema["ab"])
  stylize = loop.evaluate(gan)

  train_out = stages.generator_outputs(gan.models, ema, gan.dataset.train_a.images,
                                       gan.dataset.train_a.targets, crop)
  fit, calib = stages.split_calibration(train_out, config.detect.calibration_fraction, config.seed)
  types = list(range(len(artifacts.TYPES)))
  det_params = stages.train_detector(config, os.path.join(workdir, "detector"), fit, gan.mesh, types)
  scorers = build_scorers(config, gan, det_params, fit.clean)
  for s in scorers:
    s.calibrate(calib.clean, config.detect.fpr)
  detect.save_calibration(os.path.join(workdir, "detector", "calibration.json"), scorers, config.detect.fpr)

  test_out = stages.generator_outputs(gan.models, ema, gan.dataset.test_a.images,
                                      gan.dataset.test_a.targets, crop)
  test = detect.make_test_set(test_out.clean, test_out.content, types, seed=config.seed + 7, copies=2)
  detection = {s.name: detect.evaluate_scorer(s(test["images"]), test) for s in scorers}

  res_params = stages.train_restorer(config, os.path.join(workdir, "restorer"), fit, gan.mesh, types,
                                     det_params)
  detector_scorer = scorers[1]
  corrector = correct.Corrector(gan.models, detector_scorer.detector, stages.make_restorer(config),
                                float(detector_scorer.threshold), config.correct.dilate,
                                config.correct.attempts)
  correction, per_image = correct.benchmark(corrector, det_params, res_params, ema, test_out.clean,
                                            test_out.content, test)
  det = detection["detector"]
  summary = {
      "data": gan.dataset.summary(),
      "train_steps": int(jax.device_get(gan.state.step)),
      "stylize": {k: stylize[k] for k in ("psnr", "ssim", "identity_psnr", "identity_ssim")},
      "detect": {"image_auroc": det["image_auroc"], "image_ap": det["image_ap"],
                 "pixel_auroc": det["pixel_auroc"], "aupro": det["aupro"],
                 "fpr": det.get("fpr"), "tpr": det.get("tpr"),
                 "test_images": {"clean": int((test["is_anomalous"] == 0).sum()),
                                 "corrupted": int((test["is_anomalous"] > 0).sum())}},
      "detect_all_scorers": detection,
      "correct": correction,
      "seconds": time.time() - t0,
  }
  if jax.process_index() == 0:
    report.write_run_report(os.path.join(workdir, "report"), summary, gan, test, per_image)
  return summary
