"""Stages trained on the GAN's outputs: the artifact detector and the restorer.

Both learn from clean outputs of the trained generator, corrupted on the fly by the
artifact library; each checkpoints in its own sub-directory and resumes.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from stylegan_ad import artifacts, detect, losses
from stylegan_ad.data import pipeline as pipeline_lib
from stylegan_ad.models.detector import Detector
from stylegan_ad.models.restorer import Restorer
from stylegan_ad.train import aux_trainer, steps


@dataclasses.dataclass
class Outputs:
  """Clean generator outputs with their inputs (and true targets where known)."""
  clean: np.ndarray     # G(x), float32 [-1, 1]
  content: np.ndarray   # x
  target: np.ndarray | None = None  # S(x)
  groups: np.ndarray | None = None  # outputs of crops of one source image share a group

  def take(self, idx) -> "Outputs":
    pick = lambda a: None if a is None else a[idx]
    return Outputs(self.clean[idx], self.content[idx], pick(self.target), pick(self.groups))


def _crops(image: np.ndarray, crop: int, corners: bool) -> list[np.ndarray]:
  out = [pipeline_lib.center_crop(np.asarray(image), crop)]
  if corners:
    h, w = image.shape[:2]
    out += [np.asarray(image)[y:y + crop, x:x + crop] for y in (0, h - crop) for x in (0, w - crop)]
  return out


def generator_outputs(models: steps.Models, g_params: Any, images: Sequence[np.ndarray],
                      targets: Sequence[np.ndarray] | None, crop: int, batch: int = 16,
                      corners: bool = False) -> Outputs:
  """G(x) for center crops of `images`; with `corners`, for the four corner crops as well
  (five views of each image, one group: more variety of clean outputs to learn from)."""
  per = 5 if corners else 1
  x = pipeline_lib.to_float(np.stack([c for i in images for c in _crops(i, crop, corners)]))
  fn = jax.jit(lambda v: steps.generate(models, g_params, v))
  clean = aux_trainer.batched(fn, x, batch=batch)
  target = None
  if targets is not None:
    target = pipeline_lib.to_float(np.stack([c for t in targets for c in _crops(t, crop, corners)]))
  return Outputs(clean.astype(np.float32), x, target, np.repeat(np.arange(len(images)), per))


def split_calibration(outputs: Outputs, fraction: float, seed: int) -> tuple[Outputs, Outputs]:
  """(training part, calibration part), split at random by group (source image), so no
  view of a calibration image is trained on."""
  groups = np.arange(len(outputs.clean)) if outputs.groups is None else outputs.groups
  ids = np.random.default_rng(seed).permutation(np.unique(groups))
  n_cal = min(max(1, int(round(len(ids) * fraction))), max(len(ids) - 1, 1))
  held = np.isin(groups, ids[:n_cal])
  return outputs.take(np.flatnonzero(~held)), outputs.take(np.flatnonzero(held))


def make_detector(config: ml_collections.ConfigDict) -> Detector:
  return Detector(config.detect.features, config.detect.depth, len(artifacts.TYPES))


def make_detector_scorer(config: ml_collections.ConfigDict, params: Any) -> detect.DetectorScorer:
  """The learned detector's scorer, with the config's test-time views and screen."""
  return detect.DetectorScorer(make_detector(config), params, config.detect.views,
                               config.detect.screen_rate)


def make_restorer(config: ml_collections.ConfigDict) -> Restorer:
  return Restorer(config.correct.features, config.correct.depth)


def optimizer(group: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with cosine decay, for `config.detect` or `config.correct`."""
  return optax.adam(optax.cosine_decay_schedule(group.lr, group.steps, alpha=0.05))


def train_detector(config: ml_collections.ConfigDict, workdir: str, train: Outputs, mesh,
                   types: Sequence[int]) -> Any:
  """Trains the segmentation detector on clean vs. corrupted outputs; returns params."""
  model = make_detector(config)
  types = tuple(int(t) for t in types)
  crop = train.clean.shape[1]

  def loss_fn(params, b, key):
    c = detect.corrupt_batch(b["clean"], b["content"], b["other"], key, types, 0.5)
    out = model.apply({"params": params}, c["images"])
    return losses.detection_loss(out, c["masks"], c["is_anomalous"], c["kind"])

  d = config.detect
  tx = optimizer(d)
  return aux_trainer.fit("detector", workdir, model=model, init_inputs=(jnp.zeros((1, crop, crop, 3)),),
                         tx=tx, loss_fn=loss_fn, arrays={"clean": train.clean, "content": train.content},
                         batch=d.batch_size, num_steps=d.steps, seed=config.seed + 101, mesh=mesh,
                         log_every=config.log.every, checkpoint_every=config.checkpoint.every)


def soft_map(pixel_prob: jax.Array, dilate: int) -> jax.Array:
  """The restorer's mask: the detector's probabilities, max-pooled to cover region edges."""
  if dilate <= 1:
    return pixel_prob
  return jax.lax.reduce_window(pixel_prob, -jnp.inf, jax.lax.max, (1, dilate, dilate),
                               (1, 1, 1), "SAME")


def train_restorer(config: ml_collections.ConfigDict, workdir: str, train: Outputs, mesh,
                   types: Sequence[int], detector_params: Any) -> Any:
  """Trains the restorer on detector maps of corrupted outputs; returns params."""
  model = make_restorer(config)
  detector = make_detector(config)
  types = tuple(int(t) for t in types)
  crop = train.clean.shape[1]
  dilate = config.correct.dilate

  def loss_fn(params, b, key):
    c = detect.corrupt_batch(b["clean"], b["content"], b["other"], key, types, 0.8)
    prob = jax.nn.sigmoid(detector.apply({"params": detector_params}, c["images"])["pixel"])
    # the map the restorer will see at inference, plus the true region (so it learns
    # to repair what the detector found only in part)
    m = jnp.maximum(soft_map(prob, dilate), c["masks"])
    pred = model.apply({"params": params}, c["images"], m, b["content"])
    return losses.restoration_loss(pred, b["clean"])

  r = config.correct
  tx = optimizer(r)
  zeros = jnp.zeros((1, crop, crop, 3))
  return aux_trainer.fit("restorer", workdir, model=model, init_inputs=(zeros, zeros[..., 0], zeros),
                         tx=tx, loss_fn=loss_fn, arrays={"clean": train.clean, "content": train.content},
                         batch=r.batch_size, num_steps=r.steps, seed=config.seed + 202, mesh=mesh,
                         log_every=config.log.every, checkpoint_every=config.checkpoint.every)
