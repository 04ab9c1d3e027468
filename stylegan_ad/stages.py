"""Stages trained on the GAN's outputs: the artifact detector and the restorer.

Both learn from clean outputs of the trained generator, corrupted on the fly by the
artifact library; each checkpoints in its own sub-directory and resumes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from stylegan_ad import artifacts, detect, losses
from stylegan_ad.data import pipeline as pipeline_lib
from stylegan_ad.models import detector as detector_lib
from stylegan_ad.models.layers import apply_in
from stylegan_ad.registry import DETECTORS, RESTORERS
from stylegan_ad.train import aux_trainer, steps


@dataclasses.dataclass
class Outputs:
  """Clean generator outputs with their inputs (and true targets where known)."""
  clean: np.ndarray     # G(x), float32 [-1, 1]
  content: np.ndarray   # x
  target: np.ndarray | None = None  # S(x)
  groups: np.ndarray | None = None  # outputs of crops of one source image share a group
  alts: np.ndarray | None = None    # G's alternate views of x (`detect.tta_alternates`), where asked for

  def take(self, idx) -> "Outputs":
    pick = lambda a: None if a is None else a[idx]
    return Outputs(self.clean[idx], self.content[idx], pick(self.target), pick(self.groups), pick(self.alts))


def crops(image: np.ndarray, crop: int, corners: bool) -> list[np.ndarray]:
  """The center crop of `image`; with `corners`, its four corner crops after it."""
  out = [pipeline_lib.center_crop(np.asarray(image), crop)]
  if corners:
    h, w = image.shape[:2]
    out += [np.asarray(image)[y:y + crop, x:x + crop] for y in (0, h - crop) for x in (0, w - crop)]
  return out


def generator_outputs(models: steps.Models, g_params: Any, images: Sequence[np.ndarray],
                      targets: Sequence[np.ndarray] | None, crop: int, multiple: int = 32, batch: int = 16,
                      corners: bool = False, alternates: bool = False) -> Outputs:
  """Crops of G(x) for whole images x: G runs on each image (reflect-padded on the bottom
  and right to a `multiple` of the network's), as on a user's photo, and the center crop
  (with `corners`, the four corner crops after it: five views of each image, one group)
  of the output is kept, with the same crops of x, S(x) and, with `alternates`, G's
  alternate views of x (`detect.tta_alternates`)."""
  per = 5 if corners else 1
  g = lambda v: steps.generate(models, g_params, v)
  fn = jax.jit(lambda v: {"y": g(v), **({"alts": detect.tta_alternates(g, v)} if alternates else {})})
  shapes = [np.shape(i)[:2] for i in images]
  out: list[dict] = [{} for _ in images]
  for shape in dict.fromkeys(shapes):   # one batched program per image size
    idx = [n for n, s in enumerate(shapes) if s == shape]
    h, w = shape
    pad = ((0, 0), (0, -h % multiple), (0, -w % multiple), (0, 0))
    x = np.pad(pipeline_lib.to_float(np.stack([np.asarray(images[n]) for n in idx])), pad, mode="reflect")
    res = aux_trainer.batched(fn, x, batch=batch)
    for j, n in enumerate(idx):
      out[n] = {k: v[j, :h, :w] for k, v in res.items()}
  stack = lambda arrays: np.stack([c for a in arrays for c in crops(a, crop, corners)]).astype(np.float32)
  return Outputs(stack([o["y"] for o in out]), stack([pipeline_lib.to_float(np.asarray(i)) for i in images]),
                 None if targets is None else stack([pipeline_lib.to_float(np.asarray(t)) for t in targets]),
                 np.repeat(np.arange(len(images)), per), stack([o["alts"] for o in out]) if alternates else None)


def split_calibration(outputs: Outputs, fraction: float, seed: int) -> tuple[Outputs, Outputs]:
  """(training part, calibration part), split at random by group (source image), so no
  view of a calibration image is trained on."""
  groups = np.arange(len(outputs.clean)) if outputs.groups is None else outputs.groups
  ids = np.random.default_rng(seed).permutation(np.unique(groups))
  n_cal = min(max(1, int(round(len(ids) * fraction))), max(len(ids) - 1, 1))
  held = np.isin(groups, ids[:n_cal])
  return outputs.take(np.flatnonzero(~held)), outputs.take(np.flatnonzero(held))


def make_detector(config: ml_collections.ConfigDict) -> nn.Module:
  """The `detect.arch` detector; its type head has a class per `detect.artifact_types`."""
  d = config.detect
  return DETECTORS.make(d.arch, features=d.features, depth=d.depth, num_types=len(d.artifact_types))


def artifact_ids(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The ids (`artifacts.names()` positions) of the types `detect.artifact_types` names."""
  return artifacts.type_ids(config.detect.artifact_types)


def type_classes(config: ml_collections.ConfigDict, types: Sequence[int]) -> np.ndarray:
  """[number of registered types]: the detector's type-head class of each artifact id
  (its place in `detect.artifact_types`); `types`, the ids drawn, must all have one."""
  classes = artifact_ids(config)
  if set(types) - set(classes):
    raise ValueError(f"artifact ids {sorted(set(types) - set(classes))} are not in detect.artifact_types")
  table = np.zeros(len(artifacts.names()), np.int32)
  table[list(classes)] = np.arange(len(classes))
  return table


def make_detector_scorer(config: ml_collections.ConfigDict, params: Any, generator=None) -> detect.DetectorScorer:
  """The learned detector's scorer, with the config's test-time views, screen and input;
  `generator` (x -> G(x)) is needed by a detector that sees G's TTA disagreement."""
  if config.detect.sees_tta and generator is None:
    raise ValueError("detect.sees_tta: the detector's scorer needs the generator")
  return detect.DetectorScorer(make_detector(config), params, config.detect.views, config.detect.screen_rate,
                               config.detect.sees_input, generator if config.detect.sees_tta else None,
                               config.detect.spread_weight)


def _detector_input(config: ml_collections.ConfigDict, y: jax.Array, b: dict[str, jax.Array]) -> jax.Array:
  return detector_lib.detector_input(y, b["content"] if config.detect.sees_input else None,
                                     b["alts"] if config.detect.sees_tta else None)


def real_crops(pool, labels, area_cut: float, crop: int, per_image: int, seed: int,
               alts: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
  """Random `crop` x `crop` windows of a real-failure pool (`failures.Pool` of train
  photos): G's output ("clean", as the synthetic rows call it), its input, the true
  target S(x), the true failure mask, the crop's label, and (given `alts`, each photo's
  G alternate views) the alternates."""
  rng = np.random.default_rng(seed)
  rows = {"clean": [], "content": [], "target": [], "mask": []}
  if alts is not None:
    rows["alts"] = []
  for n, (y, x, t, m) in enumerate(zip(pool.outputs, pool.inputs, pool.targets, labels.masks)):
    h, w = m.shape
    if h < crop or w < crop:
      continue
    arrays = (("clean", y), ("content", x), ("target", t), ("mask", m)) + ((("alts", alts[n]),) if alts else ())
    for _ in range(per_image):
      i, j = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
      for k, a in arrays:
        rows[k].append(a[i:i + crop, j:j + crop])
  out = {k: np.stack(v).astype(np.float32) for k, v in rows.items()}
  out["anomalous"] = (out["mask"].mean((1, 2)) > area_cut).astype(np.float32)
  return out


def make_restorer(config: ml_collections.ConfigDict) -> nn.Module:
  """The `correct.arch` restorer."""
  return RESTORERS.make(config.correct.arch, features=config.correct.features, depth=config.correct.depth)


def optimizer(group: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with cosine decay, for `config.detect` or `config.correct`."""
  return optax.adam(optax.cosine_decay_schedule(group.lr, group.steps, alpha=0.05))


def train_detector(config: ml_collections.ConfigDict, workdir: str, train: Outputs, mesh,
                   types: Sequence[int], real: dict[str, np.ndarray] | None = None,
                   alts: np.ndarray | None = None) -> Any:
  """Trains the segmentation detector; returns params.

  Its rows: clean outputs `train`, half of them corrupted on the fly by synthetic
  artifacts of `types`; and, where given, `real` crops of G's real outputs (from
  `real_crops`), labelled by the true failure mask (the seed's L_det on generated
  images). With `detect.sees_input`, it sees [x, y]; with `detect.sees_tta`, also the
  spread of y and G's alternate views of x (`alts`: those of `train`'s rows; the real
  rows carry theirs)."""
  model = make_detector(config)
  types = tuple(int(t) for t in types)
  classes = jnp.asarray(type_classes(config, types))
  crop = train.clean.shape[1]
  n = len(train.clean)
  arrays = {"clean": train.clean, "content": train.content, "mask": np.zeros(train.clean.shape[:3], np.float32),
            "anomalous": np.zeros(n, np.float32), "real": np.zeros(n, np.float32)}
  arrays = _with_real_rows(_with_alts(config, arrays, alts), real)

  def loss_fn(params, b, key):
    c = detect.corrupt_batch(b["clean"], b["content"], b["other"], key, types, 0.5)
    real_row = b["real"] > 0
    images = jnp.where(real_row[:, None, None, None], b["clean"], c["images"])
    masks = jnp.where(real_row[:, None, None], b["mask"], c["masks"])
    anomalous = jnp.where(real_row, b["anomalous"], c["is_anomalous"])
    out = apply_in(model, params, config.model.dtype, _detector_input(config, images, b))
    return losses.detection_loss(out, masks, anomalous, classes[c["kind"]], typed=c["is_anomalous"] * (1 - b["real"]))

  d = config.detect
  tx = optimizer(d)
  channels = detector_lib.input_channels(d.sees_input, d.sees_tta)
  return aux_trainer.fit("detector", workdir, model=model, init_inputs=(jnp.zeros((1, crop, crop, channels)),),
                         tx=tx, loss_fn=loss_fn, arrays=arrays,
                         batch=d.batch_size, num_steps=d.steps, seed=config.seed + 101, mesh=mesh,
                         log_every=config.log.every, checkpoint_every=config.checkpoint.every,
                         max_bad_steps=config.train.max_bad_steps)


def soft_map(pixel_prob: jax.Array, dilate: int) -> jax.Array:
  """The restorer's mask: the detector's probabilities, max-pooled to cover region edges."""
  if dilate <= 1:
    return pixel_prob
  return jax.lax.reduce_window(pixel_prob, -jnp.inf, jax.lax.max, (1, dilate, dilate),
                               (1, 1, 1), "SAME")


def _with_alts(config: ml_collections.ConfigDict, arrays: dict[str, np.ndarray],
               alts: np.ndarray | None) -> dict[str, np.ndarray]:
  if not config.detect.sees_tta:
    return arrays
  if alts is None:
    raise ValueError("detect.sees_tta: training needs G's alternate views of the rows (stages.alternates)")
  return dict(arrays, alts=alts)


def _with_real_rows(arrays: dict[str, np.ndarray], real: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
  """The synthetic rows, and the real-failure crops after them (`real` = 1)."""
  if real is None or not len(real["clean"]):
    return arrays
  extra = dict(real, real=np.ones(len(real["clean"]), np.float32))
  return {k: np.concatenate([arrays[k], extra[k].astype(np.float32)]) for k in arrays}


def train_restorer(config: ml_collections.ConfigDict, workdir: str, train: Outputs, mesh,
                   types: Sequence[int], detector_params: Any, real: dict[str, np.ndarray] | None = None,
                   alts: np.ndarray | None = None) -> Any:
  """Trains the restorer; returns params.

  Rows: clean outputs corrupted by synthetic artifacts, restored toward the clean
  output; and, where given, `real` crops of G's real outputs (`real_crops`), restored
  toward the true target S(x) (the seed's L_rec). The mask it sees: the detector's map
  (dilated) joined with the true region, so it learns to repair what the detector found
  only in part; outside the mask its output is its input, exactly."""
  model = make_restorer(config)
  detector = make_detector(config)
  types = tuple(int(t) for t in types)
  crop = train.clean.shape[1]
  dilate = config.correct.dilate
  n = len(train.clean)
  arrays = _with_real_rows(_with_alts(config, {"clean": train.clean, "content": train.content,
                                                "target": train.clean,
                                                "mask": np.zeros(train.clean.shape[:3], np.float32),
                                                "real": np.zeros(n, np.float32)}, alts), real)

  def loss_fn(params, b, key):
    c = detect.corrupt_batch(b["clean"], b["content"], b["other"], key, types, 0.8)
    real_row = b["real"] > 0
    images = jnp.where(real_row[:, None, None, None], b["clean"], c["images"])
    true_mask = jnp.where(real_row[:, None, None], b["mask"], c["masks"])
    prob = jax.nn.sigmoid(apply_in(detector, detector_params, config.model.dtype,
                                   _detector_input(config, images, b))["pixel"])
    m = jnp.maximum(soft_map(prob, dilate), true_mask)
    pred = apply_in(model, params, config.model.dtype, images, m, b["content"])
    return losses.restoration_loss(pred, b["target"])

  r = config.correct
  tx = optimizer(r)
  zeros = jnp.zeros((1, crop, crop, 3))
  return aux_trainer.fit("restorer", workdir, model=model, init_inputs=(zeros, zeros[..., 0], zeros),
                         tx=tx, loss_fn=loss_fn, arrays=arrays,
                         batch=r.batch_size, num_steps=r.steps, seed=config.seed + 202, mesh=mesh,
                         log_every=config.log.every, checkpoint_every=config.checkpoint.every,
                         max_bad_steps=config.train.max_bad_steps)
