"""A run directory for a generator trained elsewhere (the PyTorch CycleGAN reference's
ResnetGenerator, `interop`): its weights, and a detector and restorer fitted for it on
the user's own photos, so that `experiments.stylize --workdir=RUN` scores and corrects
that generator's outputs as it does a main-job run's.

  python -m experiments.fit_generator --config=experiments/configs/imported.py \\
      --generator=torch:latest_net_G_A.pth --photos=DIR --workdir=RUN

Without true targets S(x), the detector learns from the label-free signals the
real-failure benchmark defines for such data: synthetic artifacts on the generator's own
outputs (pixel masks known), seeing the photo x and the spread of G over flipped and
shifted views of x (`detect.sees_tta`). The photos are split by photo: a share
(`detect.calibration_fraction`) is held out of every fit, calibrates the threshold, and
measures the result (synthetic artifacts on their crops; their clean outputs, whole).

  RUN/gan/            config.json, the generator's weights (an Orbax checkpoint at step 0)
  RUN/detector/       the detector run; calibration.json
  RUN/restorer/       the restorer run
  RUN/report/summary.json   the fit's figures (`fit`'s return)
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from stylegan_ad import configs, console, correct, detect, fullres, inference, interop, parallel, stages
from stylegan_ad.data import images as images_lib
from stylegan_ad.data.pipeline import to_float
from stylegan_ad.errors import DataError
from stylegan_ad.files import write_json
from stylegan_ad.train import checkpoint as checkpoint_lib
from stylegan_ad.train import loop, steps

SHORT_SIDES = (1.125, 2.0, 4.0)   # each photo at these short sides (x data.crop_size, at most its own), whole
WHOLE_SCALES = (1.0, 0.5)         # held-out photos, whole, at these scales of their own size: calibration


def imported_config(config: ml_collections.ConfigDict, path: str, module) -> ml_collections.ConfigDict:
  """`config` with the imported generator's architecture and file."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.ngf = int(module.ngf)
  if hasattr(module, "n_blocks"):
    config.model.generator, config.model.upsample, config.model.n_blocks = "resnet", "transpose", int(module.n_blocks)
  else:
    config.model.generator, config.model.depth = "reference_unet", int(module.depth)
  config.model.imported = f"torch:{os.path.abspath(path)}"
  config.detect.fuse = False   # the fused score is fitted on true targets; here there are none
  configs.validate(config, device_count=jax.device_count())
  return config


def read_photos(photos_dir: str) -> list[tuple[str, np.ndarray]]:
  """(name, uint8 photo) for every image file of the folder (by extension; hidden files
  and folders skipped); an unreadable image, or fewer than two photos, is one line naming it."""
  if not os.path.isdir(photos_dir):
    raise DataError(f"{photos_dir}: no such folder")
  names = sorted(n for n in os.listdir(photos_dir) if not n.startswith(".")
                 and n.lower().endswith(inference.IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(photos_dir, n)))
  out = [(n, images_lib.read_rgb(os.path.join(photos_dir, n))) for n in names]   # DataError names the file
  if len(out) < 2:
    raise DataError(f"{photos_dir}: {len(out)} photo(s); fitting needs at least 2 (one to fit on, one held out "
                    "to calibrate)")
  return out


def outputs(models: steps.Models, params: Any, photos: list[tuple[str, np.ndarray]], crop: int, tta: bool,
            tiling: fullres.Tiling, desc: str = "generator outputs") -> tuple[stages.Outputs, np.ndarray | None]:
  """G on each photo whole, at `SHORT_SIDES` (its statistics as at inference), then the
  center and corner crops of input, output and (with `tta`) G's alternate views; grouped
  by photo. (outputs, alternates or None)."""
  def views(p, v):   # (the weights an argument, not constants of every program compiled)
    gen = lambda u: steps.generate(models, p, u)
    return {"y": gen(v), **({"alts": detect.tta_alternates(gen, v)} if tta else {})}
  fn = jax.jit(views)
  xs, ys, alts, groups = [], [], [], []
  for g, (name, photo) in enumerate(console.progress(photos, desc, unit="photo")):
    short = min(photo.shape[:2])
    for side in sorted({min(short, round(f * crop)) for f in SHORT_SIDES}):
      if side < crop:
        raise DataError(f"{name}: {photo.shape[1]}x{photo.shape[0]} is smaller than the "
                        f"{crop}x{crop} crop (data.crop_size)")
      x = to_float(images_lib.resize_short_side(photo, side))
      out = fullres.apply(functools.partial(fn, params), x, tiling)
      parts = [x, out["y"]] + ([out["alts"]] if tta else [])
      cut = [stages.crops(np.asarray(p, np.float32), crop, corners=True) for p in parts]
      xs += cut[0]
      ys += cut[1]
      if tta:
        alts += cut[2]
      groups += [g] * len(cut[0])
  result = stages.Outputs(np.stack(ys), np.stack(xs), None, np.asarray(groups))
  return result, (np.stack(alts) if tta else None)


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(fit, held-out) photo indices: at least one of each."""
  ids = np.random.default_rng(seed).permutation(n)
  held = min(max(1, int(round(n * fraction))), n - 1)
  return np.sort(ids[held:]), np.sort(ids[:held])


def save_generator(gan_dir: str, params: Any, source: str) -> None:
  """The weights as the run's step-0 checkpoint; a run that already holds them resumes
  (its detector and restorer stages continue), one that holds other weights is refused."""
  ckpt = checkpoint_lib.Checkpointer(gan_dir, keep=1)
  try:
    if 0 in ckpt.steps():
      restored = ckpt.restore(jax.eval_shape(lambda: {"ab": params}), step=0)
      same = jax.tree.structure(restored[1]) == jax.tree.structure({"ab": params}) and all(
          np.array_equal(a, b) for a, b in zip(jax.tree.leaves(restored[1]), jax.tree.leaves({"ab": params})))
      if not same:
        raise DataError(f"{os.path.dirname(gan_dir)}: holds another generator's run ({restored[2].get('imported')}); "
                        "give a new --workdir")
      return
    ckpt.save(0, {"ab": params}, {"imported": source}, force=True)
  finally:
    ckpt.close()


def fit(config: ml_collections.ConfigDict, workdir: str, generator: str, photos_dir: str) -> dict[str, Any]:
  """Writes the run directory for `generator` (`torch:PATH.pth`) fitted on the photos of
  `photos_dir`; returns the figures also written to `workdir/report/summary.json`."""
  t0 = time.time()
  scheme, _, path = generator.partition(":")
  if scheme not in inference.GENERATOR_SCHEMES or not path:
    raise DataError(f"--generator={generator}: expected torch:PATH.pth")
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file")
  module, params = interop.load_torch_generator(path)
  photos = read_photos(photos_dir)
  config = imported_config(config, path, module)
  gan_dir = os.path.join(workdir, "gan")
  loop.enable_compilation_cache(gan_dir)
  models = steps.make_models(config)
  gen = lambda v: steps.generate(models, params, v)
  crop = config.data.crop_size
  tiling = fullres.run_tiling(config)
  fit_ids, held_ids = _split(len(photos), config.detect.calibration_fraction, config.seed)
  console.say(f"{path}: {interop.describe(module)}; "
              f"{len(fit_ids)} photos to fit on, {len(held_ids)} held out to calibrate")
  os.makedirs(gan_dir, exist_ok=True)
  if jax.process_index() == 0:
    write_json(os.path.join(gan_dir, "config.json"), json.loads(config.to_json_best_effort()))
  save_generator(gan_dir, params, config.model.imported)
  tta = config.detect.sees_tta
  train, train_alts = outputs(models, params, [photos[i] for i in fit_ids], crop, tta, tiling, "outputs to fit on")
  held, held_alts = outputs(models, params, [photos[i] for i in held_ids], crop, tta, tiling, "held-out outputs")
  # G's alternate views as they come at inference, from the whole photo (`detect.context`)
  held_ctx = held.content if held_alts is None else np.concatenate([held.content, held_alts], axis=-1)
  mesh = parallel.make_mesh()
  types = stages.artifact_ids(config)
  det_params = stages.train_detector(config, os.path.join(workdir, "detector"), train, mesh, types, None, train_alts)
  res_params = stages.train_restorer(config, os.path.join(workdir, "restorer"), train, mesh, types, det_params,
                                     None, train_alts)
  scorers = [stages.make_detector_scorer(config, det_params, gen), detect.TTAScorer(models.generator, params)]
  for s in scorers:
    s.calibrate(held.clean, held_ctx, config.detect.fpr)
  # the detector's threshold also holds the held-out photos whole, scored as `experiments.stylize` scores them
  detector = scorers[0]
  never_flags = dataclasses.replace(correct.Corrector.build(config, models, detector), threshold=float("inf"))
  probe = inference.Trained(config, never_flags, params, det_params, res_params)
  whole = [inference.correct_photo(probe, fullres.fit_max_side(photos[i][1], round(max(photos[i][1].shape[:2]) * f))[0])
           ["score_before"] for i in held_ids for f in WHOLE_SCALES]
  crop_scores = detector(held.clean, held_ctx).score
  detector.threshold = detect.threshold_for_fpr(np.concatenate([crop_scores, whole]), config.detect.fpr)
  if jax.process_index() == 0:
    detect.save_calibration(os.path.join(workdir, "detector", "calibration.json"), scorers, config.detect.fpr,
                            {"gan": 0, "detector": config.detect.steps})
  test = detect.make_test_set(held.clean, held.content, types, seed=config.seed + 7, copies=2)
  test_ctx = np.concatenate([held_ctx] * (len(test["images"]) // len(held_ctx)))   # rows: clean, then each copy
  synthetic = {s.name: detect.evaluate_scorer(s(test["images"], test_ctx), test) for s in scorers}
  trained = inference.load_trained(workdir)
  summary = {
      "generator": config.model.imported, "architecture": interop.describe(module),
      "photos": {"fit": [photos[i][0] for i in fit_ids], "held_out": [photos[i][0] for i in held_ids]},
      "crops": {"fit": int(len(train.clean)), "held_out": int(len(held.clean))},
      "target_fpr": config.detect.fpr, "threshold": trained.corrector.threshold,
      "calibration": {"crop_scores": int(len(crop_scores)), "whole_photo_scores": [float(w) for w in whole],
                      "whole_photo_scales": list(WHOLE_SCALES)},
      "synthetic_held_out": {name: {k: r[k] for k in ("image_auroc", "pixel_auroc", "aupro", "fpr", "tpr")}
                             for name, r in synthetic.items()},
      "seconds": time.time() - t0,
  }
  if jax.process_index() == 0:
    os.makedirs(os.path.join(workdir, "report"), exist_ok=True)
    write_json(os.path.join(workdir, "report", "summary.json"), summary)
  return summary
