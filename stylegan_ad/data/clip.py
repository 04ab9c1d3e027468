"""The embedded test clip: a test photo seen through a known camera path, with exact truth.

Frame t is the photo resampled through the affine camera `M_t` (pan, zoom, a small
rotation): frame pixel p shows photo point M_t [p; 1]. So the backward flow from frame t
to frame t-1 is known exactly (p -> M_{t-1}^-1 M_t p), and so is the true target of every
frame, S(clean frame t). Some input frames are degraded as real footage is (an exposure
flash, a noise burst over two frames, motion blur, a duplicated frame); their targets
stay S of the clean frame: the stylized video of the scene, not of the capture defect.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from stylegan_ad.data import embedded

PHOTO = "flower"          # a test photo (never seen in training or calibration)
SIZE = (256, 192)         # frame width, height
FRAMES = 48
FPS = 24
DEGRADATIONS = {10: "flash", 20: "noise", 21: "noise", 30: "motion_blur", 38: "duplicate"}


@dataclasses.dataclass
class Clip:
  frames: np.ndarray          # [T, H, W, 3] uint8, the input (degraded where `degraded` says)
  clean: np.ndarray           # [T, H, W, 3] uint8, the scene without capture defects
  flow: np.ndarray            # [T, H, W, 2] float32: frame t pixel (x, y) shows what frame t-1 shows at
                              # (x, y) + flow[t] (flow[0] = 0)
  degraded: dict[int, str]    # frame index -> degradation
  fps: int = FPS


def _camera(t: float, frames: int, photo_hw: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
  """The 2x3 affine M_t: frame pixel (x, y) -> photo point (continuous t: motion blur)."""
  h, w = photo_hw
  fw, fh = size
  u = t / max(frames - 1, 1)
  zoom = 1.0 - 0.15 * u                  # photo pixels per frame pixel: the camera zooms in
  angle = np.deg2rad(4.0 * np.sin(np.pi * u))
  cx = fw * 0.6 + (w - fw * 1.2) * u     # the view's centre pans left to right, a little down
  cy = h * 0.5 + 0.08 * h * np.sin(2 * np.pi * u)
  c, s = np.cos(angle) * zoom, np.sin(angle) * zoom
  a = np.array([[c, -s], [s, c]])
  offset = np.array([cx, cy]) - a @ np.array([(fw - 1) / 2, (fh - 1) / 2])
  return np.concatenate([a, offset[:, None]], axis=1)


def _render(photo: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  return cv2.warpAffine(photo, m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REFLECT)


def _flow(m_now: np.ndarray, m_prev: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  fw, fh = size
  xs, ys = np.meshgrid(np.arange(fw, dtype=np.float64), np.arange(fh, dtype=np.float64))
  p = np.stack([xs, ys, np.ones_like(xs)], -1)
  q = p @ m_now.T                                   # photo points
  a, b = m_prev[:, :2], m_prev[:, 2]
  prev = (q - b) @ np.linalg.inv(a).T              # where frame t-1 shows them
  return (prev - p[..., :2]).astype(np.float32)


def make(frames: int = FRAMES, size: tuple[int, int] = SIZE, degraded: dict[int, str] | None = None,
         photo: str = PHOTO) -> Clip:
  """The clip (deterministic). `degraded` defaults to `DEGRADATIONS` (those inside the clip)."""
  source = next(p for p in embedded.PHOTOS if p.name == photo)
  image = source.load()
  hw = image.shape[:2]
  degraded = {t: d for t, d in (DEGRADATIONS if degraded is None else degraded).items() if 0 < t < frames}
  cams = [_camera(t, frames, hw, size) for t in range(frames)]
  clean = np.stack([_render(image, m, size) for m in cams])
  flow = np.stack([np.zeros((size[1], size[0], 2), np.float32)]
                  + [_flow(cams[t], cams[t - 1], size) for t in range(1, frames)])
  out = clean.copy()
  rng = np.random.default_rng(0)
  for t, kind in sorted(degraded.items()):
    f = clean[t].astype(np.float32)
    if kind == "flash":
      f = f * 1.6 + 60
    elif kind == "noise":
      f = f + rng.normal(0, 24, f.shape)
    elif kind == "motion_blur":   # the shutter open from t - 1 to t
      f = np.mean([_render(image, _camera(t - 1 + k / 8, frames, hw, size), size).astype(np.float32)
                   for k in range(9)], axis=0)
    elif kind == "duplicate":
      f = out[t - 1].astype(np.float32)
    else:
      raise ValueError(f"unknown degradation {kind!r}")
    out[t] = np.clip(np.rint(f), 0, 255).astype(np.uint8)
  return Clip(out, clean, flow, degraded)
