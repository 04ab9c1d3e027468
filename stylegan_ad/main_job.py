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
import functools
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylegan_ad import artifacts, console, correct, detect, failures, files, fullres, metrics, report, stages
from stylegan_ad.data import pipeline as pipeline_lib
from stylegan_ad.train import aux_trainer
from stylegan_ad.train import checkpoint as checkpoint_lib
from stylegan_ad.train import loop
from stylegan_ad.train import steps as steps_lib


def build_scorers(config: ml_collections.ConfigDict, gan: loop.Run, det_params: Any,
                  fit: stages.Outputs) -> list[detect.Scorer]:
  """[discriminator, detector, feature_distance, style_statistics, tta_variance,
  raw_vs_ema, palette (+ cycle where the reverse generator learns: unpaired mode, but for
  `embedded.py:unpaired_lines`)] scorers, not yet calibrated."""
  d_params = jax.device_get(gan.state.d_params["b"])
  paired, gen = gan.models.paired, gan.models.generator
  ema, raw = jax.device_get(gan.state.ema), jax.device_get(gan.state.g_params)
  fd = detect.FeatureDistanceScorer(gan.models.discriminator, d_params, conditional=paired)
  fd.fit(fit.clean, fit.content, seed=config.seed)
  style = detect.StyleStatisticsScorer(gan.models.discriminator, d_params, conditional=paired)
  if paired and fit.target is not None:
    style.fit(fit.target, fit.content)
  else:
    real = np.stack([pipeline_lib.center_crop(np.asarray(gan.dataset.train_b.images[i]), fit.clean.shape[1])
                     for i in range(min(len(gan.dataset.train_b), 512))])
    style.fit(pipeline_lib.to_float(real), pipeline_lib.to_float(real))
  scorers = [detect.DiscriminatorScorer(gan.models.discriminator, d_params, conditional=paired),
             stages.make_detector_scorer(config, det_params, _generator(gan)), fd, style,
             detect.TTAScorer(gen, ema["ab"]), detect.DisagreementScorer("raw_vs_ema", gen, raw["ab"]),
             detect.PaletteScorer(style.palette)]
  if steps_lib.reverse_trained(gan.models):
    scorers.append(detect.DisagreementScorer("cycle", gen, ema["ba"], cycle=True))
  return scorers


def _generator(gan: loop.Run):
  """x -> G(x) with the final EMA weights (jit-able)."""
  ema = jax.device_get(gan.state.ema["ab"])
  return lambda v: steps_lib.generate(gan.models, ema, v)


MAIN_STAGES = ("gan", "real-failure pools", "detector", "scorers fitted and calibrated", "stylization figures",
               "real-failure benchmark", "synthetic detection benchmark", "restorer",
               "synthetic correction benchmark", "real correction benchmark", "whole-photo false positives")


class StageClock:
  """Wall seconds of each stage (summary.json `stage_seconds`), with a console banner as
  each stage of `plan` begins (`[3/11] detector`) and a line as it ends."""

  def __init__(self, plan: tuple[str, ...] = MAIN_STAGES):
    self.plan = plan
    self.seconds: dict[str, float] = {}
    self._last = time.time()
    self._banner(0)

  def _banner(self, i: int) -> None:
    if i < len(self.plan):
      console.say(f"[{i + 1}/{len(self.plan)}] {self.plan[i]}")

  def done(self, name: str) -> None:
    now = time.time()
    self.seconds[name] = round(now - self._last, 1)
    self._last = now
    console.say(f"{name}: done in {console.clock(self.seconds[name])}")
    self._banner(self.plan.index(name) + 1)


@dataclasses.dataclass
class RealPools:
  """G's real outputs (failures.Pool) of the reference, train and test photos."""
  truth: failures.Truth
  reference: failures.Pool
  reference_labels: failures.Labels
  test: failures.Pool
  test_labels: failures.Labels
  train: failures.Pool | None = None      # (the calibration's second source: calibrate_on_clean_outputs)
  train_labels: failures.Labels | None = None


@dataclasses.dataclass
class DetectorStage:
  gan: loop.Run
  ema: Any                   # the EMA generator's parameters
  fit: stages.Outputs        # clean train outputs the detector and restorer learn from (with G's
                             # alternate views of their inputs where detect.sees_tta)
  test: stages.Outputs       # clean outputs of the test photos
  det_params: Any
  scorers: list              # see build_scorers; calibrated
  real: RealPools | None     # None: the data has no true targets (or no reference photos)
  real_crops: dict | None    # the detector's real-failure training crops
  real_skipped: str = ""     # why `real` is None
  clock: StageClock = dataclasses.field(default_factory=StageClock)


REFERENCE_SCALES = (1.0, 0.75, 0.5)


def pool_generators(gan: loop.Run) -> dict[str, Any]:
  """The generators of the real-failure pool: the final G (EMA weights first, then the
  raw weights) and the run's under-trained snapshots, as photo -> output functions
  (run as the folder CLI runs a photo: `fullres.run_tiling`)."""
  ema = jax.device_get(gan.state.ema["ab"])
  params = {"ema": ema, "raw": jax.device_get(gan.state.g_params["ab"])}
  for step, p in checkpoint_lib.load_snapshots(gan.workdir, ema).items():
    params[f"step_{step}"] = p
  tiling = fullres.run_tiling(gan.config)
  return {name: functools.partial(loop.stylize_photo, gan.models, p, tiling=tiling) for name, p in params.items()}


def real_failure_pools(config: ml_collections.ConfigDict, gan: loop.Run) -> tuple[RealPools | None, Any, str]:
  """(pools, the detector's real-failure crops of the train photos, why skipped)."""
  ds = gan.dataset
  if ds.style is None or not ds.reference_photos or not ds.train_photos or not ds.test_photos:
    return None, None, (f"{ds.name} has no true targets S(x) and reference photos: the real-failure "
                        "benchmark needs them (label-free scorers still run)")
  f = config.failures
  gens = pool_generators(gan)
  ref = failures.build_pool(ds.reference_photos.images, gens, ds.style, f.max_side, scales=REFERENCE_SCALES,
                            desc="reference pool")
  truth = failures.fit_truth(ref, f.quantile, f.area_factor, min_region=f.min_region)
  train = failures.build_pool(ds.train_photos.images, gens, ds.style, f.max_side, desc="train pool")
  train.alts = pool_alternates(gan, train)
  crops = stages.real_crops(train, failures.label(train, truth), truth.area_cut, config.data.crop_size,
                            f.crops_per_image, config.seed, train.alts if config.detect.sees_tta else None)
  test = failures.build_pool(ds.test_photos.images, gens, ds.style, f.max_side, desc="test pool")
  for pool in (ref, test):
    pool.alts = pool_alternates(gan, pool)
  pools = RealPools(truth, ref, failures.label(ref, truth), test, failures.label(test, truth), train,
                    failures.label(train, truth))
  return pools, crops, ""


def pool_alternates(gan: loop.Run, pool: failures.Pool) -> list[np.ndarray]:
  """G's alternate views (`detect.tta_alternates`) of each pool input, at the photo's
  size: computed once per distinct input, and kept with the pool (`Pool.alts`) for every
  scorer and the correction path that use them. Run as G is on the pool's photos
  (`fullres.run_tiling`: each photo's own padded size, not the scorers' canvas)."""
  g = _generator(gan)
  fn = jax.jit(lambda v: {"alts": detect.tta_alternates(g, v)})
  first = failures.unique_inputs(pool)
  tiling = fullres.run_tiling(gan.config)
  todo = np.unique(first)
  done = {i: fullres.apply(fn, pool.inputs[i], tiling)["alts"]
          for i in console.progress(todo, "G's alternate views", total=len(todo), unit="image")}
  return [done[i] for i in first]


FUSION_SYNTHETIC_SHARES = (0.0, 0.125, 0.25, 0.5, 1.0)


def fusion_feature_fn(detector: detect.DetectorScorer, style: detect.StyleStatisticsScorer,
                      palette: detect.Palette | None = None):
  """A `failures.apply_pool` item -> {"f": its `detect.fusion_features`} (the network
  alone's probability, the style-statistics map, G's spread, and with `palette` its map;
  jit-able)."""
  net = detector.network_alone()

  def fn(v):
    y, ctx = v[..., -3:], failures.context(v)
    prob = net._fn(y, ctx)[1]
    return {"f": detect.fusion_features(prob, style._fn(y, ctx)[1], detect.tta_spread_map(y, ctx[..., 3:]),
                                        None if palette is None else palette.map(y))}
  return fn


def fit_fusion(detector: detect.DetectorScorer, style: detect.StyleStatisticsScorer, real: RealPools,
               config: ml_collections.ConfigDict) -> detect.Fusion:
  """The detector's `detect.Fusion`, fitted on the reference photo alone: on its pool's
  pixel truth (G's real failures), and on synthetic artifacts pasted on crops of its
  final G's outputs, with the least weight (of `FUSION_SYNTHETIC_SHARES`, relative to
  the real pixels) that keeps `detect.fuse_synthetic_auroc` on those crops: G's real
  failures first, and what the network sees of artifacts kept.

  With `detect.fuse_palette`, the style's `detect.Palette` (fitted by the style-statistics
  scorer on the style domain's images) joins as a second model of the failure, fitted on
  the reference pool's real failures alone (`detect.Fusion`)."""
  palette = style.palette if config.detect.fuse_palette else None
  fn = fusion_feature_fn(detector, style, palette)
  ref, labels = real.reference, real.reference_labels
  outs = failures.apply_pool(jax.jit(fn), ref, config.failures.max_side, "fitting the detector's fusion")
  feats, masks = [o["f"] for o in outs], list(labels.masks)
  palette_fit = None
  if palette is not None:
    w, b = detect.fit_logistic([f[..., 3:] for f in feats], masks)
    palette_fit = (float(w[0]), float(b))
  final = failures.take(ref, ref.where(ref.generator[0], "none"))
  rows = stages.real_crops(final, failures.label(final, real.truth), real.truth.area_cut, config.data.crop_size,
                           config.failures.crops_per_image, config.seed + 5, final.alts)
  bad = jax.device_get(jax.jit(detect.corrupt_all(stages.artifact_ids(config)))(
      rows["clean"], rows["content"], np.roll(rows["clean"], 1, axis=0), jax.random.key(config.seed + 5)))
  keep = np.flatnonzero(bad["is_anomalous"] > 0)
  if not len(keep):
    raise ValueError("fitting the detector's fusion: no synthetic artifact showed on the reference crops")
  features = lambda y, idx: aux_trainer.batched(jax.jit(lambda v: fn(v)["f"]), np.concatenate(
      [rows["content"], rows["alts"], y], axis=-1)[idx], batch=16)
  synthetic, clean = features(bad["images"], keep), features(rows["clean"], np.arange(len(rows["clean"])))
  syn_masks = list(bad["masks"][keep] > 0)
  unit = sum(m.size for m in masks) / max(1, synthetic[..., 0].size)   # synthetic pixels' weight: equal totals
  is_bad = np.r_[np.zeros(len(clean), bool), np.ones(len(keep), bool)]
  for share in FUSION_SYNTHETIC_SHARES:
    fusion = detect.fit_fusion(feats + list(synthetic), masks + syn_masks, style, 1.0 - real.truth.area_cut,
                               [1.0] * len(feats) + [share * unit] * len(keep))
    fusion.palette, fusion.palette_fit = palette, palette_fit
    scores = np.concatenate([np.asarray(fusion.from_features(jnp.asarray(f))[0]) for f in (clean, synthetic)])
    synthetic_auroc = metrics.auroc(scores, is_bad)
    if synthetic_auroc >= config.detect.fuse_synthetic_auroc:
      break
  fusion.notes.update(synthetic_share=share, reference_synthetic_auroc=float(synthetic_auroc))
  console.say("detector fused with label-free maps: weights " + ", ".join(
      f"{n} {w:+.2f}" for n, w in zip(detect.FUSION_FEATURES, fusion.weights))
      + ("" if palette_fit is None else f"; or the palette (weight {palette_fit[0]:+.2f})")
      + f"; synthetic artifacts weighted {share:g}: image AUROC {synthetic_auroc:.3f} on the reference crops")
  return fusion


def _calibration_pools(real: RealPools) -> list[tuple[failures.Pool, failures.Labels]]:
  return [(real.reference, real.reference_labels)] + ([] if real.train is None else [(real.train, real.train_labels)])


def calibration_set(real: RealPools) -> dict[str, int]:
  """How many clean outputs, of how many photos, `calibrate_on_clean_outputs` uses."""
  pools = _calibration_pools(real)
  return {"clean_outputs": int(sum((~l.anomalous).sum() for _, l in pools)),
          "photos": int(sum(len(np.unique(p.photo)) for p, _ in pools))}


def calibrate_on_clean_outputs(scorer: detect.Scorer, real: RealPools, config: ml_collections.ConfigDict) -> None:
  """The threshold flagging `detect.fpr` of G's clean outputs (labelled clean by the
  truth) of the reference photos (whole, at several sizes) and of the train photos, never
  a test photo. One photo's clean outputs are too few and too alike to set a 1% tail that
  holds on other photos (on the embedded data the test photos' clean outputs scored above
  all of the reference photo's: 9-11% false positives); the train photos' pools add G's
  snapshots and shifted inputs on more photos. (The detector learns from crops of the
  train pool, which if anything lowers its scores there, and so the threshold.)"""
  pools = _calibration_pools(real)
  scores, clean = [], []
  for pool, labels in pools:
    pool = failures.take(pool, ~labels.anomalous)
    scores.append(failures.score_pool(scorer, pool, config.failures.max_side, f"calibrating {scorer.name}")[0])
    clean.append(pool)
  scorer.threshold = detect.threshold_for_fpr(np.concatenate(scores), config.detect.fpr)
  if isinstance(scorer, detect.DetectorScorer):
    scorer.screen_threshold = None
    if scorer.views > 1 and scorer.screen_rate > 0 and scorer.fusion is None:
      scorer.set_screen(np.concatenate([failures.score_pool(scorer.one_view(), p, config.failures.max_side)[0]
                                        for p in clean]))


def detector_stage(config: ml_collections.ConfigDict, workdir: str, plan: tuple[str, ...] = MAIN_STAGES[:4]
                   ) -> DetectorStage | None:
  """GAN (trained or resumed), its outputs, the real-failure pools, the detector, and the
  calibrated scorers; `plan`: the stages the caller will run (console banners)."""
  if config.detect.sees_tta:  # a detector of an older build would be resumed with other inputs
    detect.check_alternate_view(os.path.join(workdir, "detector", "calibration.json"))
  clock = StageClock(plan)
  gan = loop.train(config, os.path.join(workdir, "gan"))
  if gan.preempted:
    return None
  clock.done("gan")
  crop = config.data.crop_size
  ema = jax.device_get(gan.state.ema["ab"])
  # every train photo's outputs (all of them when the dataset has pairs): more variety
  # of clean outputs makes the detector's notion of "clean" generalise to new photos
  train_set = gan.dataset.train_pairs or gan.dataset.train_a
  train_out = stages.generator_outputs(gan.models, ema, train_set.images, train_set.targets, crop,
                                       fullres.network_multiple(config), corners=True,
                                       alternates=config.detect.sees_tta)
  fit, calib = stages.split_calibration(train_out, config.detect.calibration_fraction, config.seed)
  real, crops, skipped = real_failure_pools(config, gan)
  if real is None:
    console.say(f"real-failure benchmark skipped: {skipped}")
  clock.done("real-failure pools")
  try:
    det_params = stages.train_detector(config, os.path.join(workdir, "detector"), fit, gan.mesh,
                                       stages.artifact_ids(config), crops, fit.alts)
  except checkpoint_lib.Preempted as e:
    console.say(str(e))
    return None
  clock.done("detector")
  scorers = build_scorers(config, gan, det_params, fit)
  if real is not None and config.detect.fuse and config.detect.sees_tta:
    scorers[1].set_fusion(fit_fusion(scorers[1], scorers[3], real, config))
  for s in scorers:
    if real is None:
      s.calibrate(calib.clean, calib.content, config.detect.fpr)
    else:
      calibrate_on_clean_outputs(s, real, config)
  if jax.process_index() == 0:
    detect.save_calibration(os.path.join(workdir, "detector", "calibration.json"), scorers,
                            config.detect.fpr, {"gan": int(gan.state.step), "detector": config.detect.steps})
    if real is not None:  # the folder CLI's `--targets` labels failures with the same truth
      report.write_json(os.path.join(workdir, "detector", "failure_truth.json"), dataclasses.asdict(real.truth))
  test_out = stages.generator_outputs(gan.models, ema, gan.dataset.test_a.images,
                                      gan.dataset.test_a.targets, crop, fullres.network_multiple(config))
  clock.done("scorers fitted and calibrated")
  return DetectorStage(gan, ema, fit, test_out, det_params, scorers, real, crops, skipped, clock)


def real_failure_benchmark(config: ml_collections.ConfigDict, stage: DetectorStage) -> dict[str, Any]:
  """Every scorer on the test photos' real outputs, against the truth (failures.evaluate);
  without targets, each scorer's flagged share of the test outputs."""
  f = config.failures
  if stage.real is None:
    out = {"skipped": stage.real_skipped}
    photos = stage.gan.dataset.test_photos or stage.gan.dataset.test_a
    pool = failures.build_pool(photos.images, dict(list(pool_generators(stage.gan).items())[:1]), None, f.max_side)
    out["flagged"] = {s.name: float(np.mean(failures.score_pool(s, pool, f.max_side)[0] > s.threshold))
                      for s in stage.scorers}
    return out
  r = stage.real
  results = {}
  scorers = list(stage.scorers)
  fused = [s for s in scorers if isinstance(s, detect.DetectorScorer) and s.fusion is not None]
  for s in fused:   # what the fusion adds: the network's own score, calibrated the same way
    alone = s.network_alone()
    alone.name = report.NETWORK_ALONE
    calibrate_on_clean_outputs(alone, r, config)
    scorers.append(alone)
  for s in scorers:
    score, maps = failures.score_pool(s, r.test, f.max_side, f"test pool: {s.name}")
    results[s.name] = failures.evaluate(score, maps, r.test, r.test_labels, s.threshold, f.bootstrap, config.seed)
  out = {"pool": failures.describe(r.test, r.test_labels, r.truth),
         "reference": failures.describe(r.reference, r.reference_labels, r.truth), "scorers": results,
         "calibration": calibration_set(r)}
  for s in fused:
    out["fusion"] = {"features": list(detect.FUSION_FEATURES), "weights": list(s.fusion.weights), "bias": s.fusion.bias,
                     "quantile": s.fusion.quantile, "palette_fit": s.fusion.palette_fit, **s.fusion.notes}
  return out


def train_and_calibrate_detector(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The detector stage alone; returns the calibrated thresholds."""
  stage = detector_stage(config, workdir)
  return {} if stage is None else {s.name: s.threshold for s in stage.scorers}


WHOLE_PHOTO_SCALES = (1.0,)


def whole_photo_false_positives(stage: DetectorStage, scorer: detect.Scorer) -> dict[str, Any]:
  """The calibrated detector on clean G outputs of the whole test photos at their own size
  (the scale the folder CLI runs them at): the share flagged, against the calibration
  target. (The test pool's clean outputs, scored in the real-failure benchmark, are the
  same photos at `failures.max_side`.)"""
  photos = stage.gan.dataset.test_photos
  if photos is None or not len(photos):
    return {"note": "no whole test photos in this dataset"}
  fn = lambda v: dict(zip(("score", "map"), scorer._jit(v[..., 3:], v[..., :3])))
  scores, tiling = [], fullres.run_tiling(stage.gan.config)   # as the folder CLI runs a photo
  for i in range(len(photos)):
    for scale in WHOLE_PHOTO_SCALES:
      photo = photos.images[i]
      photo, _ = fullres.fit_max_side(photo, int(round(max(photo.shape[:2]) * scale)))
      y = loop.stylize_photo(stage.gan.models, stage.ema, photo)
      xy = np.concatenate([pipeline_lib.to_float(photo), y], axis=-1)
      scores.append(float(np.max(fullres.apply(fn, xy, tiling)["score"])))
  flagged = np.asarray(scores) > scorer.threshold
  return {"images": len(scores), "scales": list(WHOLE_PHOTO_SCALES), "flagged": int(flagged.sum()),
          "fpr": float(flagged.mean()), "scores": scores, "threshold": scorer.threshold}


def seen_types_test_set(config: ml_collections.ConfigDict, stage: DetectorStage) -> dict[str, np.ndarray]:
  return detect.make_test_set(stage.test.clean, stage.test.content, stages.artifact_ids(config),
                              seed=config.seed + 7, copies=2)


def real_correction_benchmark(config: ml_collections.ConfigDict, stage: DetectorStage, corrector: correct.Corrector,
                              res_params: Any) -> dict[str, Any]:
  """The correction path on the test photos' real outputs (whole photos), against the
  true S(x), with baselines: the restorer everywhere (no detection), the TTA average
  everywhere, the restorer inside the true (oracle) failure mask, and G(x) unchanged."""
  r, f = stage.real, config.failures
  det_params, g = stage.det_params, stage.ema
  gen = lambda v: steps_lib.generate(stage.gan.models, g, v)

  n = detect.CONTEXT_CHANNELS

  def fn(v):  # v: [x, G's alternate view of x, y, true mask]
    x, alts, y, true_mask = v[..., :3], v[..., 3:n], v[..., n:n + 3], v[..., n + 3]
    ctx = v[..., :n] if corrector.sees_tta else x
    out = correct.run_batched(corrector, det_params, res_params, g, ctx, y, batch=1)
    return {"output": out["output"], "verdict": out["verdict"], "attempt": out["attempt"], "map": out["map"],
            "everywhere": _restore_everywhere(corrector, res_params, x, y, out["map"]),
            "oracle": _restore_everywhere(corrector, res_params, x, y, true_mask),
            "tta": np.asarray(_tta_jit(gen, jnp.asarray(x), jnp.asarray(alts)))}
  tiling = failures.canvas_tiling(f.max_side)
  items = console.progress(zip(r.test.inputs, r.test.alts, r.test.outputs, r.test_labels.masks),
                           "correcting the test pool", total=len(r.test), unit="image")
  outs = [fullres.apply(fn, np.concatenate([x, a, y, m[..., None].astype(np.float32)], axis=-1), tiling)
          for x, a, y, m in items]
  oracle = [o["oracle"] for o in outs]
  psnr = lambda a, t: float(metrics.psnr_np(a[None], t[None])[0])
  ssim = lambda a, t: float(metrics.ssim_np(a[None], t[None])[0])
  targets, before = r.test.targets, r.test.outputs
  after = [o["output"] for o in outs]
  p0 = np.array([psnr(y, t) for y, t in zip(before, targets)])
  p1 = np.array([psnr(y, t) for y, t in zip(after, targets)])
  verdict = np.array([int(np.max(o["verdict"])) for o in outs])
  flagged = verdict > 0
  changed = np.array([not np.array_equal(a, b) for a, b in zip(after, before)])
  attempt = np.array([int(np.max(o["attempt"])) for o in outs])
  kept = {"restorer": int(np.sum(verdict == 1))}
  for k in range(corrector.attempts):
    name = correct.REGENERATIONS[k % len(correct.REGENERATIONS)]
    kept[name] = kept.get(name, 0) + int(np.sum((verdict == 2) & (attempt == k)))
  def inside(ys):  # mean |y - S(x)| over every pixel inside the detector's maps (of all images)
    err = np.concatenate([np.abs(y - t).mean(-1)[o["map"] > 0.5] for y, t, o in zip(ys, targets, outs)])
    return float(err.mean()) if err.size else float("nan")
  return {
      "images": len(before), "flagged": int(flagged.sum()), "changed": int(changed.sum()), "kept": kept,
      "psnr_before": float(p0.mean()), "psnr_after": float(p1.mean()),
      "psnr_gain_flagged": float((p1 - p0)[flagged].mean()) if flagged.any() else float("nan"),
      "ssim_before": float(np.mean([ssim(y, t) for y, t in zip(before, targets)])),
      "ssim_after": float(np.mean([ssim(y, t) for y, t in zip(after, targets)])),
      "harm_rate": float(np.mean(p1[changed] < p0[changed])) if changed.any() else 0.0,
      "error_inside_maps_before": inside(before), "error_inside_maps_after": inside(after),
      "unflagged_bit_identical": bool(all(np.array_equal(a, b) for a, b, fl in zip(after, before, flagged) if not fl)),
      "restore_everywhere_psnr": float(np.mean([psnr(o["everywhere"], t) for o, t in zip(outs, targets)])),
      "tta_psnr": float(np.mean([psnr(o["tta"], t) for o, t in zip(outs, targets)])),
      "oracle_psnr": float(np.mean([psnr(y, t) for y, t in zip(oracle, targets)])),
  }


@functools.partial(jax.jit, static_argnums=0)
def _tta_jit(gen, x, alts):
  return correct.tta_average(gen, x, alts=alts)


def _restore_everywhere(c: correct.Corrector, res_params, x, y, prob) -> np.ndarray:
  """The restorer inside the (dilated) map `prob`, whatever the detector's verdict."""
  return np.asarray(_restore_jit(c, res_params, jnp.asarray(x), jnp.asarray(y), jnp.asarray(prob)))


@functools.partial(jax.jit, static_argnums=0)
def _restore_jit(c: correct.Corrector, res_params, x, y, prob):
  return c.restorer.apply({"params": res_params}, y, stages.soft_map(prob, c.dilate), x)


REAL_KEYS = ("pixel_auroc", "aupro", "image_auroc", "spearman", "fpr", "tpr", "pixel_auroc_worse_than_identity")


def real_summary(real: dict[str, Any]) -> dict[str, Any]:
  """summary.json's `real` (the detector's figures and the pool) and `real_all_scorers`."""
  if "scorers" not in real:
    return {"real": {"skipped": real["skipped"]}, "real_all_scorers": {"flagged": real["flagged"]}}
  det = real["scorers"]["detector"]
  out = {k: det[k] for k in REAL_KEYS if k in det}
  out.update({k: det[k] for k in det if k.endswith("_ci")})
  out["anomalous_rate"] = real["pool"]["anomalous_rate"]
  out["pool"] = real["pool"]
  out["reference"] = {k: real["reference"][k] for k in ("images", "anomalous_rate", "pixel_threshold", "area_cut")}
  out["calibration"] = real.get("calibration")
  if "fusion" in real:
    out["fusion"] = real["fusion"]
  return {"real": out, "real_all_scorers": real["scorers"]}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every stage and returns the summary written to `workdir/report/summary.json`."""
  t0 = time.time()
  stage = detector_stage(config, workdir, MAIN_STAGES)
  if stage is None:
    return {}
  gan, scorers, det_params = stage.gan, stage.scorers, stage.det_params
  clock = stage.clock
  evaluated = os.path.join(workdir, "gan", "eval.json")  # written by loop.train as the GAN finished
  if files.exists(evaluated):
    stylize = files.read_json(evaluated)
  else:
    stylize = loop.evaluate(gan)
  clock.done("stylization figures")
  real = real_failure_benchmark(config, stage)
  clock.done("real-failure benchmark")
  test = seen_types_test_set(config, stage)
  detection = {s.name: detect.evaluate_scorer(s(test["images"], test["content"]), test) for s in scorers}
  clock.done("synthetic detection benchmark")

  try:
    res_params = stages.train_restorer(config, os.path.join(workdir, "restorer"), stage.fit, gan.mesh,
                                       stages.artifact_ids(config), det_params, stage.real_crops,
                                       stage.fit.alts)
  except checkpoint_lib.Preempted as e:
    console.say(str(e))
    return {}
  detector_scorer = scorers[1]
  corrector = correct.Corrector.build(config, gan.models, detector_scorer)
  clock.done("restorer")
  correction, per_image = correct.benchmark(corrector, det_params, res_params, stage.ema,
                                            stage.test.clean, stage.test.content, test)
  clock.done("synthetic correction benchmark")
  correct_real = ({"skipped": stage.real_skipped} if stage.real is None
                  else real_correction_benchmark(config, stage, corrector, res_params))
  clock.done("real correction benchmark")
  whole = whole_photo_false_positives(stage, scorers[1])
  clock.done("whole-photo false positives")
  det = detection["detector"]
  env = report.environment()
  if sys.argv and sys.argv[0].endswith(os.path.join("experiments", "run.py")):
    env["command"] = " ".join(["python -m experiments.run", *sys.argv[1:]])
  summary = {
      "data": gan.dataset.summary(),
      "mode": config.train.mode,
      "reverse_generator": steps_lib.reverse_trained(gan.models),
      "target_fpr": config.detect.fpr,
      "environment": env,
      "train_steps": int(jax.device_get(gan.state.step)),
      "stylize": {k: stylize[k] for k in ("psnr", "ssim", "identity_psnr", "identity_ssim",
                                          "channel_mean_error", "identity_channel_mean_error", "photos")
                   if k in stylize},
      **real_summary(real),
      "detect": {"image_auroc": det["image_auroc"], "image_ap": det["image_ap"],
                 "pixel_auroc": det["pixel_auroc"], "aupro": det["aupro"],
                 "fpr": det.get("fpr"), "tpr": det.get("tpr"),
                 "test_images": {"clean": int((test["is_anomalous"] == 0).sum()),
                                 "corrupted": int((test["is_anomalous"] > 0).sum())},
                 "whole_photos": whole},
      "detect_all_scorers": detection,
      "correct_real": correct_real,
      "correct": correction,
      "seconds": time.time() - t0,
      "stage_seconds": clock.seconds,
  }
  if jax.process_index() == 0:
    report.write_run_report(os.path.join(workdir, "report"), summary, gan, test, per_image)
  return summary


def evaluate_detection(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """All scorers x three settings: seen types, each type held out, G's real failures
  (with the detector that sees only G(x) as well).

  Needs a finished main-job run in `workdir`; writes `workdir/detection.json` and
  `workdir/detection.md`.
  """
  stage = detector_stage(config, workdir)
  if stage is None:
    return {}
  gan, fit, test_out, scorers = stage.gan, stage.fit, stage.test, stage.scorers
  all_types = stages.artifact_ids(config)
  seen = seen_types_test_set(config, stage)
  results = {"seen types": {s.name: detect.evaluate_scorer(s(seen["images"], seen["content"]), seen)
                            for s in scorers}}

  heldout_config = ml_collections.ConfigDict(config.to_dict())
  heldout_config.detect.steps = config.detect.heldout_steps
  per_type: dict[str, dict] = {}
  for t in all_types:
    name = artifacts.names()[t]
    params = stages.train_detector(heldout_config, os.path.join(workdir, "heldout", name), fit, gan.mesh,
                                   [u for u in all_types if u != t], alts=stage.fit.alts)
    test = detect.make_test_set(test_out.clean, test_out.content, [t], seed=config.seed + 11 + t, copies=1)
    held = [stages.make_detector_scorer(config, params, _generator(gan)), scorers[0], scorers[2]]
    per_type[name] = {s.name: detect.evaluate_scorer(s(test["images"], test["content"]), test) for s in held}
  keys = ("image_auroc", "image_ap", "pixel_auroc", "aupro")
  results["held-out type (mean)"] = {
      s: {k: float(np.nanmean([per_type[t][s][k] for t in per_type])) for k in keys}
      for s in ("detector", "discriminator", "feature_distance")}

  out = {"results": results, "held_out_per_type": per_type}
  if stage.real is not None:
    real = real_failure_benchmark(config, stage)
    scorers_real = real["scorers"]
    if config.detect.sees_input or config.detect.sees_tta:  # the same detector, seeing G(x) only:
      y_only = ml_collections.ConfigDict(config.to_dict())      # what x and the TTA spread add
      y_only.detect.sees_input = y_only.detect.sees_tta = False
      params = stages.train_detector(y_only, os.path.join(workdir, "detector_y_only"), fit, gan.mesh,
                                     all_types, stage.real_crops)
      s = stages.make_detector_scorer(y_only, params)
      calibrate_on_clean_outputs(s, stage.real, y_only)
      score, maps = failures.score_pool(s, stage.real.test, config.failures.max_side)
      scorers_real["detector (G(x) only)"] = failures.evaluate(score, maps, stage.real.test, stage.real.test_labels,
                                                                s.threshold, config.failures.bootstrap, config.seed)
    results["real failures"] = scorers_real
    out["real"] = real
  else:
    out["real"] = {"skipped": stage.real_skipped}
  if jax.process_index() == 0:
    report.write_json(os.path.join(workdir, "detection.json"), out)
    report.write_text(os.path.join(workdir, "detection.md"),
                      "# Detection benchmark\n\n" + report.detection_table(results) + "\n")
  return out
