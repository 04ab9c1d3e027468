"""Correction: score, and where flagged, try every candidate and keep the best that passes.

The path for a batch:

    score y (a 1-view screen, then all views if it passes) -> flagged?
      -> candidates: the restorer inside the (dilated) map, and K regenerations; each re-scored
      -> keep the candidate the detector scores lowest, if it passes the threshold
    verdict per image: clean / repaired (the restorer's candidate kept) / regenerated / failed,
    and `attempt`: the regeneration kept (-1: none; REGENERATIONS[attempt % 3]).
    A failed image (no candidate passes) is returned unchanged.

Every candidate of a flagged image is scored, not the first that passes: on G's real
failures the restorer's candidate can pass by a hair while changing almost nothing
(and so can make the output slightly worse against the true target), where a
regeneration the detector likes far better is at hand. The lowest score is the
detector's own measure of the best repair.

`correct_outputs` is the whole path as one pure function (one jit program per
batch); `run_batched` runs the same pieces gated, so only flagged images pay for
the candidates. Unflagged outputs pass through unchanged, bit for bit. Regeneration
changes the generation, as the seed design suggests: the test-time-augmentation
average of G, G on a slightly perturbed input, and G on the mirrored input (mirrored back).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_ad import detect, metrics, stages
from stylegan_ad.train import aux_trainer, steps

VERDICTS = ("clean", "repaired", "regenerated", "failed")
REGENERATIONS = ("tta_average", "perturbed_input", "mirrored_input")  # attempt k uses k % 3


@dataclasses.dataclass(frozen=True)
class Corrector:
  """Static parts of the correction path (hashable, so it can be a jit static argument)."""
  models: steps.Models
  detector: Any
  restorer: Any
  threshold: float
  dilate: int
  attempts: int
  views: int = 1   # test-time augmentation of the detector (detect.views)
  screen: float | None = None   # the 1-view screen's threshold (detect.screen_rate), or none
  sees_input: bool = False      # the detector judges (x, y), not y alone (detect.sees_input)
  sees_tta: bool = False        # ... and G's test-time disagreement (detect.sees_tta)
  spread_weight: float = 0.0    # the image score's G-spread term (detect.spread_weight)
  fusion: Any = None            # the detector's `detect.Fusion` with label-free maps, or none

  @classmethod
  def build(cls, config, models: steps.Models, scorer) -> "Corrector":
    """From the config and a calibrated `DetectorScorer` (network, thresholds, views)."""
    return cls(models, scorer.detector, stages.make_restorer(config), float(scorer.threshold),
               config.correct.dilate, config.correct.attempts, scorer.views, scorer.screen_threshold,
               scorer.sees_input, scorer.sees_tta, scorer.spread_weight, scorer.fusion)

  @property
  def screened(self) -> bool:
    return self.screen is not None and self.views > 1 and self.fusion is None

  @property
  def first_views(self) -> int:
    """Views of the first look at every image: 1 behind a screen, else all."""
    return 1 if self.screened else self.views


# Inside the path, `x` is the input's *context*: the photo x itself, followed (with
# `sees_tta`) by G's alternate view of it (`detect.tta_alternates`, 3 more channels).
# They depend on x alone, so they are computed once per image and reused by every
# look of the detector and by the TTA-average regeneration.

def context(c: Corrector, g_params, x):
  """x, or [x, G's alternate view of x] for a detector that sees the TTA spread (an x
  that is a context already, `detect.context`, is kept as it is)."""
  if not c.sees_tta:
    return x
  return detect.context(lambda v: steps.generate(c.models, g_params, v), x)


def _photo(x):
  return x[..., :3]


def _alts(c: Corrector, x):
  return x[..., 3:] if c.sees_tta else None


def _predict(c: Corrector, det_params, y, x, views: int, skip: int = 0):
  return detect.judge(c.detector, det_params, y, _photo(x), _alts(c, x), views, skip, c.sees_input,
                      c.spread_weight, c.fusion)


def _first_look(c: Corrector, det_params, y, x):
  return _predict(c, det_params, y, x, c.first_views)


def _judge(c: Corrector, det_params, y, x):
  """(score, map) of the detector as the correction path uses it: the screen's 1-view
  score, replaced by the full `views` score where it passes the screen."""
  s, m = _first_look(c, det_params, y, x)
  if not c.screened:
    return s, m
  rest_s, rest_m = _predict(c, det_params, y, x, c.views, skip=1)
  full = s > c.screen
  return (jnp.where(full, _with_rest(c, s, rest_s), s),
          jnp.where(full[:, None, None], _with_rest(c, m, rest_m), m))


def _with_rest(c: Corrector, first, rest):
  """The average over all views from the first view's and the mean of the others."""
  return (first + (c.views - 1) * rest) / c.views


def _restore(c: Corrector, det_params, res_params, x, y, prob, score=_judge):
  """The restorer's repair inside the dilated map, and its new score."""
  restored = c.restorer.apply({"params": res_params}, y, stages.soft_map(prob, c.dilate), _photo(x))
  return restored, score(c, det_params, restored, x)[0]


def tta_average(generator_fn, x, gx=None, alts=None):
  """The mean of G over x and its half turn, mapped back (`detect.tta_views`): G's own
  errors that depend on orientation average out. `gx` is G(x) and `alts` the alternate
  view (the half turn) where the caller has them."""
  views = detect.tta_views(generator_fn, x, gx, alts)
  return sum(views) / len(views)


def _regenerate(c: Corrector, det_params, g_params, x, k: int, key, gx=None, score=_judge):
  """Attempt k's new generation of x, and its score: the test-time-augmentation average
  of G, G on a slightly perturbed input (one noise image for the whole batch, so a
  result does not depend on how images are batched), G on the mirrored input.
  `gx` is G(x) where the caller has it (it stylized x itself): with the context's
  half-turned view (`sees_tta`) the average then needs no generator pass."""
  g = lambda v: steps.generate(c.models, g_params, v)
  p = _photo(x)
  if k % 3 == 0:
    y = tta_average(g, p, gx, _alts(c, x))
  elif k % 3 == 1:
    y = g(jnp.clip(p + 0.03 * jax.random.normal(jax.random.fold_in(key, k), p.shape[1:]), -1, 1))
  else:
    y = g(p[:, :, ::-1])[:, :, ::-1]
  return y, score(c, det_params, y, x)[0]


def correct_outputs(c: Corrector, det_params, res_params, g_params, x, y, key, generated: bool = False
                    ) -> dict[str, jax.Array]:
  """The correction path for stylized outputs `y` of inputs `x` (pure; jit it).
  `generated`: y is G(x) with these `g_params` (not outputs from elsewhere)."""
  x = context(c, g_params, x)
  s0, p0 = _judge(c, det_params, y, x)
  flagged = s0 > c.threshold
  restored, s1 = _restore(c, det_params, res_params, x, y, p0)
  sel = lambda cond, a, b: jnp.where(cond[:, None, None, None], a, b)
  # a candidate is kept only where the detector passes it (so below the original's
  # score), and of those the one it scores lowest (the first on a tie)
  repaired = flagged & (s1 <= c.threshold)
  best, best_score = sel(repaired, restored, y), jnp.where(repaired, s1, s0)
  attempt = jnp.full(flagged.shape, -1, jnp.int32)
  for k in range(c.attempts):
    yk, sk = _regenerate(c, det_params, g_params, x, k, key, y if generated else None)
    accept = flagged & (sk <= c.threshold) & (sk < jnp.where(best_score <= c.threshold, best_score, jnp.inf))
    best = sel(accept, yk, best)
    best_score = jnp.where(accept, sk, best_score)
    attempt = jnp.where(accept, k, attempt)
  regenerated = attempt >= 0
  verdict = jnp.where(~flagged, 0, jnp.where(regenerated, 2, jnp.where(repaired, 1, 3)))
  return {"output": best, "restored": sel(flagged, restored, y), "verdict": verdict.astype(jnp.int32),
          "score_before": s0, "score_after": best_score, "map": p0, "attempt": attempt}


def stylize_and_correct(c: Corrector, det_params, res_params, g_params, x, key) -> dict[str, jax.Array]:
  """G(x), then the correction path: the whole main inference in one program."""
  y = steps.generate(c.models, g_params, x)
  result = correct_outputs(c, det_params, res_params, g_params, x, y, key, generated=True)
  result["stylized"] = y
  return result


# The gated path's programs score with the first look only; `_complete` adds the full
# score for the rows that pass the screen, so together they compute `_judge`.

@functools.partial(jax.jit, static_argnums=0)
def _stylize_and_score_jit(c: Corrector, det_params, g_params, x):
  y = steps.generate(c.models, g_params, x)
  x = context(c, g_params, x)
  score, prob = _first_look(c, det_params, y, x)
  return {"stylized": y, "score_before": score, "map": prob, "context": x}


@functools.partial(jax.jit, static_argnums=0)
def _context_jit(c: Corrector, g_params, x):
  return context(c, g_params, x)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _score_jit(c: Corrector, det_params, y, x, views: int, skip: int = 0):
  score, prob = _predict(c, det_params, y, x, views, skip)
  return {"score_before": score, "map": prob}


@functools.partial(jax.jit, static_argnums=0)
def _restore_jit(c: Corrector, det_params, res_params, x, y, prob):
  return _restore(c, det_params, res_params, x, y, prob, score=_first_look)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _regenerate_jit(c: Corrector, det_params, g_params, x, k, key, gx=None):
  return _regenerate(c, det_params, g_params, x, k, key, gx, score=_first_look)


def _complete(c: Corrector, det_params, images: np.ndarray, inputs: np.ndarray, score: np.ndarray,
              amap: np.ndarray | None, batch: int):
  """First-look (score, map) of `images` -> `_judge`'s: the full score where the screen
  passes (the other views, averaged with the first look's)."""
  if not c.screened:
    return score, amap
  idx = np.flatnonzero(score > c.screen)
  if len(idx):
    rest = _gated(lambda yb, xb: _score_jit(c, det_params, yb, xb, c.views, 1), idx, batch, images, inputs)
    score = score.copy()
    score[idx] = _with_rest(c, score[idx], rest["score_before"])
    if amap is not None:
      amap = amap.copy()
      amap[idx] = _with_rest(c, amap[idx], rest["map"])
  return score, amap


def _gated(fn, idx: np.ndarray, batch: int, *arrays: np.ndarray):
  """`fn` on rows `idx` of `arrays`, in batches of `batch` rows, the last one padded with
  copies of its last row (their results dropped): one batch shape compiled per program
  (a compile takes 1.5-3 s on 2 cores; a padded row of 64 px, milliseconds)."""
  return aux_trainer.batched(fn, *[a[idx] for a in arrays], batch=batch)


def run_batched(c: Corrector, det_params, res_params, g_params, x: np.ndarray, y: np.ndarray | None,
                seed: int = 0, batch: int = 16) -> dict[str, np.ndarray]:
  """`correct_outputs` over arrays, gated: the cost grows with the fraction flagged.

  Every image is stylized (when `y` is None) and scored (behind the screen, only the
  ones that pass it get the full score); only the flagged ones are restored, and only
  those still flagged go on to each regeneration attempt.
  """
  key = jax.random.key(seed)
  generated = y is None
  if generated:
    first = aux_trainer.batched(lambda xb: _stylize_and_score_jit(c, det_params, g_params, xb), x, batch=batch)
    y, x = first["stylized"], first["context"]
  else:
    if c.sees_tta:
      x = aux_trainer.batched(lambda xb: _context_jit(c, g_params, xb), x, batch=batch)
    first = aux_trainer.batched(lambda yb, xb: _score_jit(c, det_params, yb, xb, c.first_views), y, x,
                                batch=batch)
  s0, m0 = _complete(c, det_params, y, x, first["score_before"], first["map"], batch)
  out = {"stylized": y, "output": y.copy(), "restored": y.copy(), "map": m0,
         "score_before": s0, "score_after": s0.copy(), "verdict": np.zeros(len(y), np.int32),
         "attempt": np.full(len(y), -1, np.int32)}
  idx = np.flatnonzero(s0 > c.threshold)
  if not len(idx):
    return out
  restored, s1 = _gated(lambda xb, yb, pb: _restore_jit(c, det_params, res_params, xb, yb, pb),
                        idx, batch, x, y, m0)
  s1, _ = _complete(c, det_params, restored, x[idx], s1, None, batch)
  out["restored"][idx] = restored
  repaired = s1 <= c.threshold   # kept only where the detector passes it
  best = np.where(repaired, s1, np.inf)   # the kept candidate's score, inf: none yet
  out["output"][idx[repaired]] = restored[repaired]
  out["score_after"][idx[repaired]] = s1[repaired]
  out["verdict"][idx] = np.where(repaired, 1, 3)
  for k in range(c.attempts):   # every regeneration of every flagged image: the lowest score wins
    # the TTA average includes G(x), which the stylize path has already
    reuse = generated and k % 3 == 0
    yk, sk = _gated(lambda xb, gb=None: _regenerate_jit(c, det_params, g_params, xb, k, key, gb), idx,
                    batch, *((x, y) if reuse else (x,)))
    sk, _ = _complete(c, det_params, yk, x[idx], sk, None, batch)
    accept = (sk <= c.threshold) & (sk < best)
    take = idx[accept]
    out["output"][take] = yk[accept]
    out["score_after"][take] = sk[accept]
    out["attempt"][take] = k
    out["verdict"][take] = 2
    best = np.where(accept, sk, best)
  return out


def benchmark(c: Corrector, det_params, res_params, g_params, clean: np.ndarray, content: np.ndarray,
              test: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Correction figures on a synthetic test set (`detect.make_test_set`) of clean outputs.

  Returns the figures and the per-image results on the corrupted images.
  """
  anomalous = test["is_anomalous"] > 0
  corrupted = test["images"][anomalous]
  truth = test["clean"][anomalous]
  res = run_batched(c, det_params, res_params, g_params, test["content"][anomalous], corrupted)
  clean_res = run_batched(c, det_params, res_params, g_params, content, clean)
  before = metrics.psnr_np(corrupted, truth)
  after = metrics.psnr_np(res["output"], truth)
  restored_only = metrics.psnr_np(res["restored"], truth)
  v = res["verdict"]
  # how far each regeneration variant of a clean output is from it: what regeneration
  # can give back at best, whatever the artifact
  regen = {}
  for k in range(min(c.attempts, len(REGENERATIONS))):
    yk, _ = _gated(lambda xb: _regenerate_jit(c, det_params, g_params, _context_jit(c, g_params, xb), k,
                                              jax.random.key(0)),
                   np.arange(len(clean)), 16, content)
    regen[REGENERATIONS[k]] = float(np.mean(metrics.psnr_np(yk, clean)))
  unflagged_clean = clean_res["verdict"] == 0
  by = res["attempt"][v == 2] % len(REGENERATIONS)
  return {
      "num_corrupted": int(anomalous.sum()),
      "num_clean": int(len(clean)),
      "psnr_before": float(before.mean()),
      "psnr_after": float(after.mean()),
      "psnr_after_restorer_only": float(restored_only.mean()),
      "psnr_gain": float(after.mean() - before.mean()),
      "detected_rate": float(np.mean(v != 0)),
      "repair_rate": float(np.mean((v == 1) | (v == 2))),
      "repaired_by_restorer": float(np.mean(v == 1)),
      "regenerated": float(np.mean(v == 2)),
      "regenerated_by": {name: float(np.mean(by == i)) if len(by) else 0.0 for i, name in enumerate(REGENERATIONS)},
      "failed": float(np.mean(v == 3)),
      "clean_unchanged": float(np.mean(np.all(clean_res["output"] == clean, axis=(1, 2, 3)))),
      "clean_flagged": float(np.mean(~unflagged_clean)),
      "regeneration_psnr_to_clean": regen,
      "unflagged_bit_identical": bool(np.all(clean_res["output"][unflagged_clean] == clean[unflagged_clean])),
  }, res
