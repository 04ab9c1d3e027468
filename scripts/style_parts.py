"""Where the identity's error against the cartoon style lies: S taken apart, no network.

  python scripts/style_parts.py

On the embedded test crops, PSNR to the true S(x) of: the identity x; S's bilateral
smoothing alone; smoothing and palette (no ink); x with S's ink lines alone; x inked by
S's rule on its own unsmoothed luma; smoothing with the ink (no palette); and x's block
means with S's detail above them (what a generator held to x at coarse scale could
reach at best) over 4, 8 and 16 px blocks. Then, on the train style crops (domain B): the
line-free images of `losses.restyle`, and the same inked again by S's rule.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from absl import app
from scipy import ndimage

from stylegan_ad import losses, metrics
from stylegan_ad.data import sources, styles


def _smooth(x):
  return styles._bilateral(styles._bilateral(x))


def _ink_raw(x):
  """S's ink rule on x's own luma, unsmoothed: what a local operator could draw from x alone."""
  return np.clip((styles._edges(styles._luma(x)) - 0.6) / 0.4, 0.0, 1.0)[..., None]


def _ink(x):
  return _ink_raw(_smooth(x))


def _palette(x):
  s = _smooth(x)
  return 0.75 * np.round(s * 5) / 5 + 0.25 * s


def _coarse_x_fine_s(block: int):
  def part(x):
    t = styles.cartoon(np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)).astype(np.float32) / 255
    mean = lambda a: ndimage.uniform_filter(a, (block, block, 1))
    return mean(x) + t - mean(t)
  return part


PARTS = {
    "identity": lambda x: x,
    "smoothing alone": _smooth,
    "smoothing and palette, no ink": _palette,
    "x with S's ink alone": lambda x: x * (1 - 0.85 * _ink(x)),
    "x inked at its own luma edges (S's rule without the smoothing)": lambda x: x * (1 - 0.85 * _ink_raw(x)),
    "smoothing and ink, no palette": lambda x: _smooth(x) * (1 - 0.85 * _ink(x)),
    **{f"x's {b}x{b} block means + S's detail": _coarse_x_fine_s(b) for b in (4, 8, 16)},
}


def main(argv):
  del argv
  ds = sources.load("embedded:cartoon", crop_size=64)
  test = ds.test_a
  xs = [np.asarray(x, np.float32) / 255 for x in test.images]
  t = np.stack([np.asarray(v, np.float32) / 255 for v in test.targets]) * 2 - 1
  print("| part of S | PSNR to S(x), test crops (dB) |\n|---|---|")
  for name, fn in PARTS.items():
    y = np.stack([fn(x) for x in xs]) * 2 - 1
    print(f"| {name} | {float(np.mean(metrics.psnr_np(y, t))):.2f} |")
  # the style domain's own images without their lines (what `losses.restyle` asks G to redraw)
  ys = np.stack([np.asarray(v, np.float32) / 255 for v in ds.train_b.images]) * 2 - 1
  free = np.asarray(losses.line_free(jnp.asarray(ys)))
  inked = np.stack([(u * (1 - 0.85 * _ink_raw(u))) for u in (free + 1) / 2]) * 2 - 1
  print("\n| train style crops y | PSNR to y (dB) |\n|---|---|")
  print(f"| line_free(y) | {float(np.mean(metrics.psnr_np(free, ys))):.2f} |")
  print(f"| line_free(y) inked by S's rule on its own luma | {float(np.mean(metrics.psnr_np(inked, ys))):.2f} |")


if __name__ == "__main__":
  app.run(main)
