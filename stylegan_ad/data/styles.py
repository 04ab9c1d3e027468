"""Deterministic style operators S: uint8 RGB photo -> uint8 RGB stylized image.

Each operator is local (a fixed, small receptive field) and deterministic, so a
fully-convolutional generator can learn it and every test photo x has an exact
true target S(x): stylization quality and the true artifact map |G(x) - S(x)|
are measured with no pretrained network.
"""
from __future__ import annotations

import concurrent.futures
import os
from typing import Callable

import numpy as np
from scipy import ndimage

from stylegan_ad.errors import ConfigError


def _check(image: np.ndarray) -> np.ndarray:
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"style operators take HxWx3 uint8 images, got {image.dtype} {image.shape}")
  return image.astype(np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _bilateral(x: np.ndarray, radius: int = 2, sigma_s: float = 2.0,
               sigma_r: float = 0.12) -> np.ndarray:
  """Edge-preserving smoothing: a bilateral filter over a (2r+1)^2 window.

  Every pixel's value depends on its window alone, so bands of rows are filtered apart,
  on a thread per core (NumPy releases the GIL in its loops), with the same operations
  in the same order and dtypes as one pass over the image (so the same bits:
  tests/test_data.py::test_bilateral_bands_match_one_pass)."""
  h = x.shape[0]
  pad = np.pad(x, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
  cuts = list(range(0, h, _BAND_ROWS)) + [h]
  band = lambda i: _bilateral_rows(pad, x, radius, sigma_s, sigma_r, cuts[i], cuts[i + 1])
  if len(cuts) == 2:
    return band(0)
  # a pool per call: one kept between calls would not survive a fork (its threads do not)
  with concurrent.futures.ThreadPoolExecutor(min(os.cpu_count() or 1, 8)) as pool:
    return np.concatenate(list(pool.map(band, range(len(cuts) - 1))), axis=0)


_BAND_ROWS = 32


def _bilateral_rows(pad: np.ndarray, x: np.ndarray, radius: int, sigma_s: float, sigma_r: float,
                    lo: int, hi: int) -> np.ndarray:
  """`_bilateral` of rows lo:hi of x (`pad`: x reflect-padded by `radius`). The weights
  are float64 (a NumPy float64 spatial factor times the float32 range factor), the sums
  float32, as NumPy's promotion makes them in the plain expression
  `num += spatial * exp(-|shifted - x|^2 / (2 sigma_r^2)) * shifted`; the buffers are
  reused across the window's offsets."""
  w = x.shape[1]
  xs = x[lo:hi]
  num, den = np.zeros_like(xs), np.zeros((hi - lo, w, 1), np.float32)
  d, t = np.empty_like(xs), np.empty((hi - lo, w, 1), np.float32)
  weight, term = np.empty((hi - lo, w, 1), np.float64), np.empty((hi - lo, w, 3), np.float64)
  for dy in range(-radius, radius + 1):
    for dx in range(-radius, radius + 1):
      shifted = pad[lo + radius + dy:hi + radius + dy, radius + dx:radius + dx + w]
      spatial = np.exp(-(dy * dy + dx * dx) / (2 * sigma_s ** 2))   # a NumPy float64
      np.subtract(shifted, xs, out=d)
      np.multiply(d, d, out=d)
      np.add(d[..., 0:1], d[..., 1:2], out=t)   # the channel sum in NumPy's order: (r + g) + b
      np.add(t, d[..., 2:3], out=t)
      np.negative(t, out=t)
      np.divide(t, 2 * sigma_r ** 2, out=t)
      np.exp(t, out=t)
      np.multiply(spatial, t, out=weight)
      np.multiply(weight, shifted, out=term)
      np.add(num, term, out=num)
      np.add(den, weight, out=den)
  return (num / den).astype(np.float32)


def _luma(x: np.ndarray) -> np.ndarray:
  return x @ np.array([0.299, 0.587, 0.114], np.float32)


def _edges(gray: np.ndarray) -> np.ndarray:
  gx = ndimage.sobel(gray, axis=1, mode="reflect")
  gy = ndimage.sobel(gray, axis=0, mode="reflect")
  return np.hypot(gx, gy)


def cartoon(image: np.ndarray) -> np.ndarray:
  """Cartoon style: bilateral smoothing, palette quantisation, ink edges."""
  x = _check(image)
  smooth = _bilateral(_bilateral(x))
  levels = 6
  quant = np.round(smooth * (levels - 1)) / (levels - 1)
  # Soften the quantisation a little so the operator stays learnable.
  flat = 0.75 * quant + 0.25 * smooth
  edge = np.clip((_edges(_luma(smooth)) - 0.6) / 0.4, 0.0, 1.0)[..., None]
  return _to_uint8(flat * (1.0 - 0.85 * edge))


_PAPER: np.ndarray | None = None


def paper_texture() -> np.ndarray:
  """A 512x512 paper grain in [0, 1], from scikit-image's bundled gravel texture."""
  global _PAPER
  if _PAPER is None:
    from skimage import data as skdata
    g = ndimage.gaussian_filter(skdata.gravel().astype(np.float32), 1.0)
    _PAPER = ((g - g.min()) / (g.max() - g.min())).astype(np.float32)
  return _PAPER


def ink_wash(image: np.ndarray) -> np.ndarray:
  """Ink-wash style: soft tonal ink layers and dark strokes on grainy paper."""
  x = _check(image)
  gray = ndimage.gaussian_filter(_luma(x), 1.2, mode="reflect")
  ink = 1.0 - gray
  levels = 4
  ink_q = np.round(ink * (levels - 1)) / (levels - 1)
  ink = 0.6 * ink_q + 0.4 * ink
  stroke = np.clip((_edges(gray) - 0.45) / 0.4, 0.0, 1.0)
  ink = np.clip(ink + 0.5 * stroke, 0.0, 1.0)[..., None]
  h, w = gray.shape
  paper = np.resize(paper_texture(), (h, w)) if (h > 512 or w > 512) else paper_texture()[:h, :w]
  paper_rgb = np.array([0.96, 0.93, 0.85], np.float32) * (0.92 + 0.08 * paper[..., None])
  ink_rgb = np.array([0.10, 0.11, 0.16], np.float32)
  return _to_uint8(paper_rgb * (1.0 - 0.9 * ink) + ink_rgb * 0.9 * ink)


STYLES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "cartoon": cartoon,
    "ink_wash": ink_wash,
}


def get_style(name: str) -> Callable[[np.ndarray], np.ndarray]:
  """Returns the style operator called `name`, or raises a one-line ConfigError."""
  try:
    return STYLES[name]
  except KeyError:
    raise ConfigError(f"unknown style {name!r}; known styles: {', '.join(sorted(STYLES))}") from None
