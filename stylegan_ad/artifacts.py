"""Synthetic artifact library: (image, key, severity) -> (image, mask, type).

Pure JAX, jit- and vmap-able, deterministic per key. Images are HxWx3 float32 in
[-1, 1]. Each artifact corrupts a whole copy of the image, and the result is taken
only inside a random mask (ellipse, smooth noise blob, rectangle or the whole
image), so pixels outside the mask are unchanged bit for bit. The returned mask is
the part of the region where the image visibly changed (max channel change > 2/255),
the honest pixel ground truth.

A type is a function (image, key, severity in [0, 1], content, other) -> corrupted
image, registered by name (`@ARTIFACTS.register("name")` above it: `registry`); its id
is its place among the registered types, and `detect.artifact_types` names the types a
detector trains on.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from stylegan_ad.registry import ARTIFACTS

MASK_SHAPES: tuple[str, ...] = ("ellipse", "blob", "rectangle", "whole")
VISIBLE = 2.0 / 255.0 * 2.0  # 2 grey levels in [-1, 1] units


def names() -> tuple[str, ...]:
  """The registered artifact types, in order (a type's id is its position)."""
  return tuple(ARTIFACTS)


def type_id(name: str) -> int:
  ARTIFACTS[name]   # one line naming the unknown type
  return names().index(name)


def type_ids(type_names: Sequence[str]) -> tuple[int, ...]:
  return tuple(type_id(n) for n in type_names)


# -- masks ---------------------------------------------------------------------------

def _grid(h: int, w: int):
  return jnp.meshgrid(jnp.linspace(0.0, 1.0, h), jnp.linspace(0.0, 1.0, w), indexing="ij")


def _smooth_noise(key: jax.Array, h: int, w: int, cells: int = 4) -> jax.Array:
  """Smooth random field in about [-1, 1]: bilinear upsampling of a coarse grid."""
  coarse = jax.random.normal(key, (cells + 1, cells + 1))
  return jax.image.resize(coarse, (h, w), "cubic")


def _ellipse(key, h, w):
  k1, k2, k3 = jax.random.split(key, 3)
  cy, cx = jax.random.uniform(k1, (2,), minval=0.2, maxval=0.8)
  ry, rx = jax.random.uniform(k2, (2,), minval=0.12, maxval=0.35)
  theta = jax.random.uniform(k3, (), maxval=jnp.pi)
  yy, xx = _grid(h, w)
  dy, dx = yy - cy, xx - cx
  u = dx * jnp.cos(theta) + dy * jnp.sin(theta)
  v = -dx * jnp.sin(theta) + dy * jnp.cos(theta)
  return ((u / rx) ** 2 + (v / ry) ** 2 <= 1.0).astype(jnp.float32)


def _blob(key, h, w):
  k1, k2 = jax.random.split(key)
  field = _smooth_noise(k1, h, w)
  level = jax.random.uniform(k2, (), minval=0.6, maxval=1.2)
  return (field > level).astype(jnp.float32)


def _rectangle(key, h, w):
  k1, k2 = jax.random.split(key)
  y0, x0 = jax.random.uniform(k1, (2,), minval=0.0, maxval=0.6)
  sy, sx = jax.random.uniform(k2, (2,), minval=0.2, maxval=0.4)
  yy, xx = _grid(h, w)
  return ((yy >= y0) & (yy <= y0 + sy) & (xx >= x0) & (xx <= x0 + sx)).astype(jnp.float32)


def _whole(key, h, w):
  del key
  return jnp.ones((h, w), jnp.float32)


def random_mask(key: jax.Array, h: int, w: int, shape: jax.Array | int) -> jax.Array:
  """A binary HxW mask of the given shape index (see MASK_SHAPES)."""
  fns = [lambda k, f=f: f(k, h, w) for f in (_ellipse, _blob, _rectangle, _whole)]
  m = jax.lax.switch(shape, fns, key)
  # A blob can come out empty; fall back to an ellipse so every artifact has a region.
  return jnp.where(m.sum() < 16, _ellipse(key, h, w), m)


# -- corruptions (whole image; the mask selects the region) --------------------------

def _blur_image(x, sigma):
  r = jnp.arange(-6, 7, dtype=jnp.float32)
  k = jnp.exp(-(r ** 2) / (2 * sigma ** 2))
  k = k / k.sum()
  pad = jnp.pad(x, ((6, 6), (6, 6), (0, 0)), mode="reflect")
  y = sum(k[i] * pad[i:i + x.shape[0], 6:6 + x.shape[1]] for i in range(13))
  ypad = jnp.pad(y, ((0, 0), (6, 6), (0, 0)), mode="reflect")
  return sum(k[i] * ypad[:, i:i + x.shape[1]] for i in range(13))


@ARTIFACTS.register("noise")
def _noise(x, key, s, content, other):
  return x + (0.15 + 0.45 * s) * jax.random.normal(key, x.shape)


@ARTIFACTS.register("blur")
def _blur(x, key, s, content, other):
  return _blur_image(x, 1.0 + 2.5 * s)


@ARTIFACTS.register("color_cast")
def _color_cast(x, key, s, content, other):
  k1, k2 = jax.random.split(key)
  direction = jax.random.normal(k1, (3,))
  direction = direction / (jnp.linalg.norm(direction) + 1e-6)
  angle = jax.random.uniform(k2, (), minval=0.5, maxval=1.5) * (0.5 + s)
  # hue rotation about the grey axis (Rodrigues), plus a cast along `direction`
  axis = jnp.ones(3) / jnp.sqrt(3.0)
  kx = jnp.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  rot = jnp.eye(3) + jnp.sin(angle) * kx + (1 - jnp.cos(angle)) * kx @ kx
  return x @ rot.T + (0.2 + 0.3 * s) * direction


@ARTIFACTS.register("checkerboard")
def _checkerboard(x, key, s, content, other):
  h, w, _ = x.shape
  yy, xx = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
  period = jax.random.choice(key, jnp.array([2, 4]))
  pattern = jnp.where(((yy // (period // 2)) + (xx // (period // 2))) % 2 == 0, 1.0, -1.0)
  color = 0.6 + 0.4 * jax.random.uniform(jax.random.fold_in(key, 1), (3,))
  return x + (0.15 + 0.35 * s) * pattern[..., None] * color


@ARTIFACTS.register("blotch")
def _blotch(x, key, s, content, other):
  """A droplet: a smooth, saturated blob, as in StyleGAN's characteristic artifact."""
  k1, k2 = jax.random.split(key)
  h, w, _ = x.shape
  field = jnp.clip(_smooth_noise(k1, h, w, cells=3) * 0.5 + 0.8, 0.0, 1.0)
  color = jax.random.uniform(k2, (3,), minval=-1.0, maxval=1.0)
  alpha = (0.6 + 0.4 * s) * field[..., None]
  return (1 - alpha) * x + alpha * color


@ARTIFACTS.register("warp")
def _warp(x, key, s, content, other):
  h, w, _ = x.shape
  k1, k2 = jax.random.split(key)
  amp = (2.0 + 6.0 * s)
  dy = amp * _smooth_noise(k1, h, w, cells=3)
  dx = amp * _smooth_noise(k2, h, w, cells=3)
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  coords = [jnp.clip(yy + dy, 0, h - 1), jnp.clip(xx + dx, 0, w - 1)]
  return jnp.stack([jax.scipy.ndimage.map_coordinates(x[..., c], coords, order=1) for c in range(3)], -1)


@ARTIFACTS.register("impure_style")
def _impure_style(x, key, s, content, other):
  """The unstylized content showing through."""
  alpha = 0.6 + 0.4 * s
  return (1 - alpha) * x + alpha * content


@ARTIFACTS.register("banding")
def _banding(x, key, s, content, other):
  levels = jnp.round(6 - 4 * s)
  return jnp.round((x + 1) / 2 * (levels - 1)) / (levels - 1) * 2 - 1


@ARTIFACTS.register("blocks")
def _blocks(x, key, s, content, other):
  """8x8 block artifacts: each block flattened towards its mean (coarse JPEG-like)."""
  h, w, c = x.shape
  b = 8
  xb = x[: h // b * b, : w // b * b].reshape(h // b, b, w // b, b, c)
  mean = xb.mean(axis=(1, 3), keepdims=True)
  keep = 0.3 * (1 - s)
  out = (mean + keep * (xb - mean)).reshape(h // b * b, w // b * b, c)
  return x.at[: h // b * b, : w // b * b].set(out)


@ARTIFACTS.register("texture_patch")
def _texture_patch(x, key, s, content, other):
  """A patch of another image pasted in (shifted so it is not aligned)."""
  k1, k2 = jax.random.split(key)
  shift = jax.random.randint(k1, (2,), 8, x.shape[0] - 8)
  src = jnp.roll(other, shift, axis=(0, 1))
  return jnp.where(jax.random.uniform(k2) < 0.5, src, src[:, ::-1])




def apply(image: jax.Array, key: jax.Array, severity: jax.Array | float, kind: jax.Array | int,
          mask_shape: jax.Array | int, content: jax.Array | None = None,
          other: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Applies artifact `kind` inside a mask of `mask_shape`; returns (image, mask).

  `content` (the unstylized input, for impure_style) and `other` (another image,
  for texture_patch) default to the image itself flipped, which still changes it.
  """
  h, w, _ = image.shape
  content = image[::-1] if content is None else content
  other = image[:, ::-1] if other is None else other
  k_mask, k_art = jax.random.split(key)
  severity = jnp.clip(jnp.asarray(severity, jnp.float32), 0.0, 1.0)
  corrupted = jax.lax.switch(kind, [lambda *a, f=ARTIFACTS[n]: f(*a) for n in ARTIFACTS],
                             image, k_art, severity, content, other)
  corrupted = jnp.clip(corrupted, -1.0, 1.0)
  region = random_mask(k_mask, h, w, mask_shape)
  out = jnp.where(region[..., None] > 0, corrupted, image)
  visible = (jnp.max(jnp.abs(out - image), axis=-1) > VISIBLE).astype(jnp.float32)
  return out, region * visible


def random_artifact(image: jax.Array, key: jax.Array, types: Sequence[int] | None = None,
                    content: jax.Array | None = None, other: jax.Array | None = None,
                    whole_prob: float = 0.15) -> tuple[jax.Array, jax.Array, jax.Array]:
  """A random artifact among `types` (ids; default: every type), severity U(0.3, 1);
  returns (image, mask, type)."""
  types = tuple(range(len(ARTIFACTS))) if types is None else types
  k_type, k_sev, k_shape, k_whole, k_apply = jax.random.split(key, 5)
  kind = jnp.asarray(types, jnp.int32)[jax.random.randint(k_type, (), 0, len(types))]
  severity = jax.random.uniform(k_sev, (), minval=0.3, maxval=1.0)
  shape = jnp.where(jax.random.uniform(k_whole) < whole_prob, 3,
                    jax.random.randint(k_shape, (), 0, 3))
  out, mask = apply(image, k_apply, severity, kind, shape, content, other)
  return out, mask, kind


def artifact(name: str):
  """The artifact `name` as a function (image, key, severity, content=None, other=None)
  -> (image, mask, type); the mask shape is drawn from the key."""
  kind = type_id(name)

  def fn(image, key, severity, content=None, other=None):
    k_shape, k_apply = jax.random.split(key)
    shape = jax.random.randint(k_shape, (), 0, len(MASK_SHAPES))
    out, mask = apply(image, k_apply, severity, kind, shape, content, other)
    return out, mask, jnp.int32(kind)

  return fn
