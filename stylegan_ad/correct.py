"""Correction: restore inside the detected map, regenerate if that fails, re-score.

For a batch, one jit-compiled function does the whole path:

    score y -> flagged? -> restore inside the (dilated) map -> re-score
            -> still flagged? -> regenerate (K variants of the generation) -> re-score
    verdict per image: clean / repaired / regenerated / failed

Unflagged outputs pass through unchanged, bit for bit. The regeneration variants
change the generation, as the seed design suggests: the generator on the mirrored
input (mirrored back), on a slightly perturbed input, and at a lower stylization
strength (a blend toward the input).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_ad import metrics
from stylegan_ad.train import aux_trainer, stages, steps

VERDICTS = ("clean", "repaired", "regenerated", "failed")


@dataclasses.dataclass(frozen=True)
class Corrector:
  """Static parts of the correction path (hashable, so it can be a jit static argument)."""
  models: steps.Models
  detector: Any
  restorer: Any
  threshold: float
  dilate: int
  attempts: int


def _detect(c: Corrector, det_params, y):
  out = c.detector.apply({"params": det_params}, y)
  return out["image"], jax.nn.sigmoid(out["pixel"])


def _regenerate(c: Corrector, g_params, x, k: int, key):
  g = lambda v: steps.generate(c.models, g_params, v)
  if k % 3 == 0:
    return g(x[:, :, ::-1])[:, :, ::-1]
  if k % 3 == 1:
    return g(jnp.clip(x + 0.03 * jax.random.normal(key, x.shape), -1, 1))
  return 0.85 * g(x) + 0.15 * x


def correct_outputs(c: Corrector, det_params, res_params, g_params, x, y, key) -> dict[str, jax.Array]:
  """The correction path for stylized outputs `y` of inputs `x` (pure; jit it)."""
  s0, p0 = _detect(c, det_params, y)
  flagged = s0 > c.threshold
  m0 = stages.soft_map(p0, c.dilate)
  restored = c.restorer.apply({"params": res_params}, y, m0)
  sel = lambda cond, a, b: jnp.where(cond[:, None, None, None], a, b)
  y1 = sel(flagged, restored, y)
  s1, _ = _detect(c, det_params, y1)
  repaired = flagged & (s1 <= c.threshold)
  pending = flagged & ~repaired
  best, best_score = y1, s1
  regenerated = jnp.zeros_like(flagged)
  for k in range(c.attempts):
    yk = _regenerate(c, g_params, x, k, jax.random.fold_in(key, k))
    sk, _ = _detect(c, det_params, yk)
    accept = pending & ~regenerated & (sk <= c.threshold)
    better = pending & ~regenerated & (sk < best_score)
    best = sel(accept | better, yk, best)
    best_score = jnp.where(accept | better, sk, best_score)
    regenerated = regenerated | accept
  out = sel(flagged, best, y)
  verdict = jnp.where(~flagged, 0, jnp.where(repaired, 1, jnp.where(regenerated, 2, 3)))
  return {"output": out, "restored": y1, "verdict": verdict.astype(jnp.int32), "score_before": s0,
          "score_after": jnp.where(flagged, best_score, s0), "map": p0}


def stylize_and_correct(c: Corrector, det_params, res_params, g_params, x, key) -> dict[str, jax.Array]:
  """G(x), then the correction path: the whole main inference in one program."""
  y = steps.generate(c.models, g_params, x)
  result = correct_outputs(c, det_params, res_params, g_params, x, y, key)
  result["stylized"] = y
  return result


def stylize_and_score(c: Corrector, det_params, g_params, x) -> dict[str, jax.Array]:
  """G(x) and the detector's verdict inputs: the cheap path every image takes."""
  y = steps.generate(c.models, g_params, x)
  score, prob = _detect(c, det_params, y)
  return {"stylized": y, "score_before": score, "map": prob}


@functools.partial(jax.jit, static_argnums=0)
def _stylize_and_score_jit(c: Corrector, det_params, g_params, x):
  return stylize_and_score(c, det_params, g_params, x)


@functools.partial(jax.jit, static_argnums=0)
def _score_jit(c: Corrector, det_params, y):
  score, prob = _detect(c, det_params, y)
  return {"score_before": score, "map": prob}


@functools.partial(jax.jit, static_argnums=0)
def _correct_jit(c: Corrector, det_params, res_params, g_params, x, y, key):
  return correct_outputs(c, det_params, res_params, g_params, x, y, key)


def run_batched(c: Corrector, det_params, res_params, g_params, x: np.ndarray, y: np.ndarray | None,
                seed: int = 0, batch: int = 16) -> dict[str, np.ndarray]:
  """Gated correction over arrays in fixed-size batches.

  Every image is stylized (when `y` is None) and scored; only the flagged ones go
  through restoration and regeneration, in batches padded to the next power of two,
  so the cost of correction grows with the fraction flagged. Unflagged outputs are
  returned as they are.
  """
  key = jax.random.key(seed)
  if y is None:
    first = aux_trainer.batched(lambda xb: _stylize_and_score_jit(c, det_params, g_params, xb), x, batch=batch)
    y = first["stylized"]
  else:
    first = aux_trainer.batched(lambda yb: _score_jit(c, det_params, yb), y, batch=batch)
  flagged = first["score_before"] > c.threshold
  out = {"stylized": y, "output": y.copy(), "restored": y.copy(), "map": first["map"],
         "score_before": first["score_before"], "score_after": first["score_before"].copy(),
         "verdict": np.zeros(len(y), np.int32)}
  idx = np.flatnonzero(flagged)
  if len(idx):
    bucket = min(batch, 1 << int(np.ceil(np.log2(len(idx)))))
    res = aux_trainer.batched(lambda xb, yb: _correct_jit(c, det_params, res_params, g_params, xb, yb, key),
                              x[idx], y[idx], batch=bucket)
    for k in ("output", "restored", "score_after", "verdict"):
      out[k][idx] = res[k]
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
  before = np.asarray(metrics.psnr(corrupted, truth))
  after = np.asarray(metrics.psnr(res["output"], truth))
  restored_only = np.asarray(metrics.psnr(res["restored"], truth))
  v = res["verdict"]
  unflagged_clean = clean_res["verdict"] == 0
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
      "failed": float(np.mean(v == 3)),
      "clean_unchanged": float(np.mean(np.all(clean_res["output"] == clean, axis=(1, 2, 3)))),
      "clean_flagged": float(np.mean(~unflagged_clean)),
      "unflagged_bit_identical": bool(np.all(clean_res["output"][unflagged_clean] == clean[unflagged_clean])),
  }, res
