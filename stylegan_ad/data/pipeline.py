"""Deterministic, resumable, per-process input pipeline.

The stream is defined globally: sample `g` of the run (g = step * global_batch + j)
is record `perm_{epoch}[g % N]` of its stream, with `epoch = g // N`, a permutation
seeded by (seed, stream, epoch), and augmentation drawn from (seed, stream, g).
Process p of P reads only rows [p*B/P, (p+1)*B/P) of each global batch, so the
shards are disjoint, together cover the batch, and the values do not depend on the
number of processes. The position is the step: saving it and restoring it continues
the same sequence exactly.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import jax
import numpy as np

from stylegan_ad import parallel
from stylegan_ad.errors import ConfigError


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return images.astype(np.float32) * (2.0 / 255.0) - 1.0


def to_uint8(images) -> np.ndarray:
  """float [-1, 1] -> uint8 [0, 255]."""
  x = np.asarray(images, np.float32)
  return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def center_crop(image: np.ndarray, crop: int) -> np.ndarray:
  h, w = image.shape[:2]
  if h < crop or w < crop:
    raise ValueError(f"image {w}x{h} is smaller than the {crop} crop")
  y, x = (h - crop) // 2, (w - crop) // 2
  return image[y:y + crop, x:x + crop]


class Pipeline:
  """Batches of aligned columns from one or more independently shuffled streams.

  Args:
    streams: {stream name: {column name: random-access uint8 images}}; columns of
      one stream are aligned (read with the same index and augmentation), streams
      are shuffled independently (unpaired domains A and B are two streams).
    global_batch: examples per step over all processes.
    crop: output size; images larger than it are randomly cropped.
    seed: the only source of randomness.
    augment: random crop and a random symmetry; otherwise a center crop.
    symmetries: 2 (identity or a horizontal flip, as CycleGAN) or 8 (the dihedral
      group: flips and quarter turns; for styles that do not depend on orientation,
      four times the variety from the same photos).
    process_index, process_count: this process's slice (default: jax's).
  """

  def __init__(self, streams: Mapping[str, Mapping[str, Sequence[np.ndarray]]], *,
               global_batch: int, crop: int, seed: int, augment: bool = True,
               symmetries: int = 2, process_index: int | None = None, process_count: int | None = None):
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    if global_batch % self.process_count:
      raise ConfigError(f"batch_size {global_batch} is not divisible by the "
                        f"{self.process_count} processes")
    for name, cols in streams.items():
      lengths = {len(c) for c in cols.values()}
      if len(lengths) != 1 or 0 in lengths:
        raise ConfigError(f"stream {name!r} has empty or misaligned columns: {sorted(lengths)}")
    self.streams = streams
    if symmetries not in (2, 8):
      raise ConfigError(f"config key data.symmetries: must be 2 or 8, got {symmetries}")
    self.global_batch, self.crop, self.seed, self.augment = global_batch, crop, seed, augment
    self.symmetries = symmetries
    self.local_batch = global_batch // self.process_count
    self.position = 0
    self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

  # -- resumable position ---------------------------------------------------
  def get_state(self) -> dict[str, int]:
    return {"position": self.position, "seed": self.seed}

  def set_state(self, state: Mapping[str, int]) -> None:
    if int(state["seed"]) != self.seed:
      raise ConfigError(f"data seed {self.seed} differs from the checkpoint's {int(state['seed'])}")
    self.position = int(state["position"])

  # -- indexing ---------------------------------------------------------------
  def _perm(self, stream_id: int, epoch: int, n: int) -> np.ndarray:
    key = (stream_id, epoch)
    if key not in self._perm_cache:
      if len(self._perm_cache) > 8:
        self._perm_cache.clear()
      self._perm_cache[key] = np.random.default_rng([self.seed, stream_id, epoch]).permutation(n)
    return self._perm_cache[key]

  def indices(self, step: int, stream_id: int, n: int) -> np.ndarray:
    """Record indices of this process's rows of global batch `step`."""
    start = step * self.global_batch + self.process_index * self.local_batch
    g = np.arange(start, start + self.local_batch)
    return np.array([self._perm(stream_id, int(gi // n), n)[gi % n] for gi in g]), g

  def _augment(self, image: np.ndarray, stream_id: int, g: int) -> np.ndarray:
    h, w = image.shape[:2]
    c = self.crop
    if h < c or w < c:
      raise ConfigError(f"data.crop_size {c} is larger than a {w}x{h} image of the dataset")
    if not self.augment:
      return center_crop(image, c)
    rng = np.random.default_rng([self.seed, stream_id, g, 7])
    y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
    out = image[y:y + c, x:x + c]
    out = out[:, ::-1] if rng.random() < 0.5 else out
    if self.symmetries == 8:
      out = np.rot90(out, int(rng.integers(0, 4)))
    return np.ascontiguousarray(out)

  def local_arrays(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of batch `step` as float32 arrays in [-1, 1]."""
    out = {}
    for stream_id, cols in enumerate(self.streams.values()):
      n = len(next(iter(cols.values())))
      idx, g = self.indices(step, stream_id, n)
      for col, images in cols.items():
        out[col] = to_float(np.stack([self._augment(np.asarray(images[int(i)]), stream_id, int(gi))
                                      for i, gi in zip(idx, g)]))
    return out

  def next_local(self) -> dict[str, np.ndarray]:
    batch = self.local_arrays(self.position)
    self.position += 1
    return batch

  def next_global(self, mesh) -> dict[str, jax.Array]:
    """The next batch as global arrays sharded over the mesh's data axis."""
    return parallel.global_batch(mesh, self.next_local())


def eval_batches(images: Sequence[np.ndarray], targets: Sequence[np.ndarray] | None,
                 batch: int, crop: int):
  """Center-cropped, in-order batches padded to `batch`; yields (x, target or None, n_valid)."""
  n = len(images)
  for start in range(0, n, batch):
    idx = list(range(start, min(start + batch, n)))
    valid = len(idx)
    idx += [idx[-1]] * (batch - valid)
    x = to_float(np.stack([center_crop(np.asarray(images[i]), crop) for i in idx]))
    t = None if targets is None else to_float(
        np.stack([center_crop(np.asarray(targets[i]), crop) for i in idx]))
    yield x, t, valid
