"""Fully-convolutional networks on photos at their own size, any aspect ratio.

    out = fullres.apply(fn, image)   # fn: [N, h, w, C] batch -> dict of arrays

The networks (generator, detector, restorer) are fully convolutional, so a photo is
never squashed to the training crop. `apply` gives the photo `border` pixels of
reflected context on every side (so its edges look to the networks like any other part
of a photo), reflect-pads that on the bottom and right to a multiple of `bucket` (so
photos of nearby sizes share one compiled program), runs `fn` on it and crops every
per-pixel output back to the photo's size.

Where the padded photo has more than `max_pixels` pixels (memory), it is cut into
overlapping `window` x `window` tiles, one batch of fixed shape: each tile carries
`margin` pixels of real context on every side (reflected at the photo's border), and
only its central `window - 2 * margin` core is kept ("crop and stitch": no blending
weights are needed, because every kept pixel saw at least `margin` pixels of context
in every direction). For a network without normalisation and a receptive field within
the margin, a tiled run equals the whole-photo run up to float rounding; with instance
norm (the ResNet), each tile is normalised by its own statistics, which is why the
default generator has none.

Outputs of `fn` with the input's spatial shape ([N, h, w, ...]) are stitched; every
other output (per-image scores, verdicts) comes back per tile, [tiles], for the caller
to reduce (a photo's score is the max over its tiles).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np
from PIL import Image

DEFAULT_MAX_SIDE = 1024


@dataclasses.dataclass(frozen=True)
class Tiling:
  bucket: int = 32                # padded sides are multiples of this (and of the nets' 2**depth)
  max_pixels: int = 1024 * 1024   # above this (padded), tile
  window: int = 512               # tile side, a multiple of `bucket`
  margin: int = 64                # context kept around each tile's core
  border: int = 32                # reflected context around a photo run whole
  tiles_per_call: int = 4         # tiles given to `fn` at once (memory)

  def __post_init__(self):
    if self.window % self.bucket or self.margin % 8 or self.window <= 2 * self.margin:
      raise ValueError(f"bad tiling {self}: window must be a multiple of bucket and > 2 * margin")


def generator_tiling(arch: str, depth: int, whole: bool) -> Tiling:
  """How a generator meets a photo: padded to a multiple of 32 (of 2**depth for the
  reference U-Net), and with `whole` (a generator with instance norm, which sees the
  statistics of what it is given) never tiled up to `--max_side`. The residual U-Net
  gets a reflected border of 4 * 2**depth pixels (16 for the main job's two poolings,
  which give the same whole-photo figures with 8, 16 or 32: 7% fewer pixels than 32 at
  1024x768)."""
  bucket = max(Tiling.bucket, 2 ** depth) if arch == "reference_unet" else Tiling.bucket
  border = 4 * 2 ** depth if arch == "residual_unet" else Tiling.border
  if whole:
    return Tiling(bucket=bucket, max_pixels=4096 * 4096, window=4096, border=border)
  return Tiling(bucket=bucket, border=border)


def network_multiple(config: Any) -> int:
  """The side a run's generator needs a multiple of: 2**depth for the U-Nets, 4 for the
  ResNet (two stride-2 convolutions)."""
  return 4 if config.model.generator == "resnet" else 2 ** config.model.depth


def run_tiling(config: Any) -> Tiling:
  """A run's `generator_tiling`: the main job's norm-free G is tiled above a megapixel; a
  generator trained elsewhere runs whole."""
  return generator_tiling(config.model.generator, config.model.depth, bool(config.model.imported))


def fit_max_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
  """Downscales (Lanczos) so the longer side is at most `max_side`; returns (image, scale)."""
  h, w = image.shape[:2]
  scale = min(1.0, max_side / max(h, w))
  if scale == 1.0:
    return image, 1.0
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS)), scale


def _pad(image: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
  pads = ((top, bottom), (left, right)) + ((0, 0),) * (image.ndim - 2)
  return np.pad(image, pads, mode="reflect")


def _spatial(value: np.ndarray, n: int, h: int, w: int) -> bool:
  return value.ndim >= 3 and value.shape[:3] == (n, h, w)


def apply(fn: Callable[[np.ndarray], dict], image: np.ndarray, tiling: Tiling = Tiling()) -> dict:
  """Runs `fn` on `image` ([H, W, C] float) at its own size; see the module docstring."""
  h, w = image.shape[:2]
  b = tiling.bucket
  e = tiling.border
  hp, wp = math.ceil((h + 2 * e) / b) * b, math.ceil((w + 2 * e) / b) * b
  if hp * wp <= tiling.max_pixels:
    out = fn(_pad(image, e, hp - h - e, e, wp - w - e)[None])
    return {k: np.asarray(v)[0, e:e + h, e:e + w] if _spatial(np.asarray(v), 1, hp, wp) else np.asarray(v)
            for k, v in out.items()}
  core, m, win = tiling.window - 2 * tiling.margin, tiling.margin, tiling.window
  rows, cols = math.ceil(h / core), math.ceil(w / core)
  padded = _pad(image, m, rows * core - h + m, m, cols * core - w + m)
  origins = [(i * core, j * core) for i in range(rows) for j in range(cols)]
  chunks = []
  for start in range(0, len(origins), tiling.tiles_per_call):
    batch = np.stack([padded[y:y + win, x:x + win] for y, x in origins[start:start + tiling.tiles_per_call]])
    chunks.append({k: np.asarray(v) for k, v in fn(batch).items()})
  result = {}
  for k in chunks[0]:
    v = np.concatenate([c[k] for c in chunks])
    if not _spatial(v, len(origins), win, win):
      result[k] = v
      continue
    canvas = np.zeros((rows * core, cols * core) + v.shape[3:], v.dtype)
    for t, (y, x) in enumerate(origins):
      canvas[y:y + core, x:x + core] = v[t, m:m + core, m:m + core]
    result[k] = canvas[:h, :w]
  return result
