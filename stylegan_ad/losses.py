"""Pure loss functions and a registry by name.

A generator loss is a function of a `LossContext` (the tensors of one translation
direction) returning a scalar; register it with one line and name it in the config:

    @register("my_loss")
    def my_loss(ctx: LossContext) -> jax.Array:
      return jnp.mean(jnp.abs(ctx.fake - ctx.x))

    config.losses.generator = {"adversarial": 1.0, "cycle": 10.0, "my_loss": 0.5}

Adversarial objectives (least-squares, non-saturating, hinge) are pairs of
(discriminator loss, generator loss) over lists of patch logits (one per scale).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from stylegan_ad import metrics
from stylegan_ad.errors import ConfigError

Logits = list  # list[jax.Array], one map per discriminator scale


# -- adversarial objectives -------------------------------------------------------

def _mean_over_scales(fn, *lists):
  return jnp.mean(jnp.stack([fn(*xs) for xs in zip(*lists)]))


def lsgan_d(real: Logits, fake: Logits) -> jax.Array:
  return _mean_over_scales(lambda r, f: 0.5 * (jnp.mean((r - 1.0) ** 2) + jnp.mean(f ** 2)), real, fake)


def lsgan_g(fake: Logits) -> jax.Array:
  return _mean_over_scales(lambda f: jnp.mean((f - 1.0) ** 2), fake)


def nsgan_d(real: Logits, fake: Logits) -> jax.Array:
  return _mean_over_scales(
      lambda r, f: 0.5 * (jnp.mean(jax.nn.softplus(-r)) + jnp.mean(jax.nn.softplus(f))), real, fake)


def nsgan_g(fake: Logits) -> jax.Array:
  return _mean_over_scales(lambda f: jnp.mean(jax.nn.softplus(-f)), fake)


def hinge_d(real: Logits, fake: Logits) -> jax.Array:
  return _mean_over_scales(
      lambda r, f: 0.5 * (jnp.mean(jax.nn.relu(1.0 - r)) + jnp.mean(jax.nn.relu(1.0 + f))), real, fake)


def hinge_g(fake: Logits) -> jax.Array:
  return _mean_over_scales(lambda f: -jnp.mean(f), fake)


ADVERSARIAL: dict[str, tuple[Callable, Callable]] = {
    "lsgan": (lsgan_d, lsgan_g),
    "nsgan": (nsgan_d, nsgan_g),
    "hinge": (hinge_d, hinge_g),
}


def adversarial(kind: str) -> tuple[Callable, Callable]:
  """(discriminator loss, generator loss) for `kind`."""
  if kind not in ADVERSARIAL:
    raise ConfigError(f"losses.adversarial must be one of {sorted(ADVERSARIAL)}, got {kind!r}")
  return ADVERSARIAL[kind]


def r1_penalty(d_fn: Callable[[jax.Array], Logits], real: jax.Array) -> jax.Array:
  """R1 = E ||grad_x D(x)||^2 on real images (Mescheder et al., 2018)."""
  grad = jax.grad(lambda x: sum(jnp.sum(l) for l in d_fn(x)))(real)
  return jnp.mean(jnp.sum(grad ** 2, axis=(1, 2, 3)))


DIFF_AUGMENT_OPS = ("translation", "cutout", "color")


def diff_augment_policy(spec: str) -> tuple[str, ...]:
  """`losses.diff_augment` ("translation,cutout", "" for none) as a tuple of op names."""
  ops = tuple(op.strip() for op in str(spec).split(",") if op.strip())
  unknown = [op for op in ops if op not in DIFF_AUGMENT_OPS]
  if unknown or len(set(ops)) < len(ops):
    raise ConfigError(f"config key losses.diff_augment: comma-separated ops of {list(DIFF_AUGMENT_OPS)}, "
                      f"each once, got {spec!r}")
  return ops


def diff_augment(images: jax.Array, key: jax.Array, policy: tuple[str, ...]) -> jax.Array:
  """DiffAugment (Zhao et al., 2020): random, differentiable augmentations applied to
  every image D sees, real and generated alike, in D's step and in G's, so that a
  discriminator fitted on a few photos cannot memorise them and G's gradient passes
  through the augmentation. Each image draws its own:
  - translation: a shift of up to 1/8 of the side, zero-filled;
  - cutout: a zeroed square of half the side, anywhere (partly outside allowed);
  - color: brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5).
  Images in [-1, 1], NHWC, RGB or RGB triplets (a paired D's [x, y] pair moves together)."""
  n, h, w, _ = images.shape
  out = images
  keys = dict(zip(DIFF_AUGMENT_OPS, jax.random.split(key, len(DIFF_AUGMENT_OPS))))
  rows = jnp.arange(h)[None, :, None]
  cols = jnp.arange(w)[None, None, :]
  if "color" in policy:
    kb, ks, kc = jax.random.split(keys["color"], 3)
    u = lambda k, lo, hi: jax.random.uniform(k, (n, 1, 1, 1), out.dtype, lo, hi)
    out = out + u(kb, -0.5, 0.5)
    rgb = out.reshape(*out.shape[:-1], -1, 3)   # a paired D's x and y: each its own grey
    mean = rgb.mean(axis=-1, keepdims=True)
    out = ((rgb - mean) * u(ks, 0.0, 2.0)[..., None] + mean).reshape(out.shape)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * u(kc, 0.5, 1.5) + mean
  if "translation" in policy:
    sy, sx = max(h // 8, 1), max(w // 8, 1)
    ky, kx = jax.random.split(keys["translation"])
    dy = jax.random.randint(ky, (n, 1, 1), -sy, sy + 1)
    dx = jax.random.randint(kx, (n, 1, 1), -sx, sx + 1)
    padded = jnp.pad(out, ((0, 0), (sy, sy), (sx, sx), (0, 0)))
    r = jnp.clip(rows - dy + sy, 0, h + 2 * sy - 1)
    c = jnp.clip(cols - dx + sx, 0, w + 2 * sx - 1)
    out = padded[jnp.arange(n)[:, None, None], r, c]
  if "cutout" in policy:
    ky, kx = jax.random.split(keys["cutout"])
    cy = jax.random.randint(ky, (n, 1, 1), 0, h + 1 - h % 2)
    cx = jax.random.randint(kx, (n, 1, 1), 0, w + 1 - w % 2)
    inside = ((rows >= cy - h // 4) & (rows < cy - h // 4 + h // 2) &
              (cols >= cx - w // 4) & (cols < cx - w // 4 + w // 2))
    out = jnp.where(inside[..., None], 0.0, out)
  return out


def gram(features: jax.Array) -> jax.Array:
  """Gram matrix per image, normalised by H*W*C."""
  n, h, w, c = features.shape
  f = features.reshape(n, h * w, c)
  return jnp.einsum("npc,npd->ncd", f, f) / (h * w * c)


# -- generator-side losses, by name ------------------------------------------------

@dataclasses.dataclass
class LossContext:
  """Tensors of one translation direction x -> fake (domain X -> domain Y)."""
  x: jax.Array                     # input batch (domain X)
  real: jax.Array                  # a real batch of domain Y (unpaired) / the style image
  fake: jax.Array                  # G(x)
  fake_logits: Logits              # D_Y(G(x))
  adversarial_g: Callable[[Logits], jax.Array]
  rec: jax.Array | None = None     # F(G(x)), unpaired mode
  idt: jax.Array | None = None     # G(real), identity mapping
  target: jax.Array | None = None  # the true or paired target of x
  fake_features: list | None = None
  real_features: list | None = None
  restyled: jax.Array | None = None   # G(line_free(real), + blur/noise): the style direction only (`restyle`)
  backtranslated: jax.Array | None = None   # G(stop_gradient(F(real))), unpaired mode (`backtranslate`)
  key: jax.Array | None = None     # the step's randomness (`patch_swd`'s projections)


GENERATOR_LOSSES: dict[str, Callable[[LossContext], jax.Array]] = {}
NEEDS: dict[str, tuple[str, ...]] = {}


def register(name: str, needs: tuple[str, ...] = ()):
  """Decorator adding a generator loss to the registry; `needs` names LossContext fields."""
  def wrap(fn):
    GENERATOR_LOSSES[name] = fn
    NEEDS[name] = needs
    return fn
  return wrap


@register("adversarial")
def adversarial_loss(ctx: LossContext) -> jax.Array:
  return ctx.adversarial_g(ctx.fake_logits)


@register("cycle", needs=("rec",))
def cycle_l1(ctx: LossContext) -> jax.Array:
  return jnp.mean(jnp.abs(ctx.rec - ctx.x))


@register("identity", needs=("idt",))
def identity_l1(ctx: LossContext) -> jax.Array:
  return jnp.mean(jnp.abs(ctx.idt - ctx.real))


@register("l1", needs=("target",))
def target_l1(ctx: LossContext) -> jax.Array:
  return jnp.mean(jnp.abs(ctx.fake - ctx.target))


@register("l2", needs=("target",))
def target_l2(ctx: LossContext) -> jax.Array:
  """Mean squared error to the true target: the mean, not the median, of what S can give
  (PSNR is a squared error; for a quantising style L1 settles between levels less well)."""
  return jnp.mean((ctx.fake - ctx.target) ** 2)


@register("ssim", needs=("target",))
def target_ssim(ctx: LossContext) -> jax.Array:
  """1 - SSIM to the true target (the metric's own 11x11 Gaussian windows): local means,
  contrasts and structure, which a squared error weighs by pixel count alone."""
  return 1.0 - jnp.mean(metrics.ssim(ctx.fake, ctx.target))


def _block_mean_hold(block: int) -> Callable[[LossContext], jax.Array]:
  def hold(ctx: LossContext) -> jax.Array:
    window = (1, block, block, 1)
    pool = lambda v: jax.lax.reduce_window(v, 0.0, jax.lax.add, window, window, "VALID") / block ** 2
    return jnp.mean(jnp.abs(pool(ctx.fake) - pool(ctx.x)))
  return hold


# |G(x) - x| of 4x4 (`lowpass`) or 16x16 (`lowpass16`) block means, no target needed: G
# keeps x's colours and layout at coarse scale and is free in the fine detail where a
# style lives (flat regions, ink edges), which the adversarial term shapes. For unpaired
# training, where the pixel-wise identity and cycle terms hold G to the photo's detail too.
register("lowpass")(_block_mean_hold(4))
register("lowpass16")(_block_mean_hold(16))


def _filter1d(v: jax.Array, taps, axis: int) -> jax.Array:
  """A 1-D filter along H (axis 1) or W (axis 2) of [N, H, W, C], reflected borders."""
  r, n = len(taps) // 2, v.shape[axis]
  widths = [(0, 0)] * 4
  widths[axis] = (r, r)
  p = jnp.pad(v, widths, mode="reflect")
  return sum(t * jax.lax.slice_in_dim(p, i, i + n, axis=axis) for i, t in enumerate(taps))


def gaussian_blur(images: jax.Array, sigma: float) -> jax.Array:
  """[N, H, W, C] blurred by a Gaussian of `sigma` pixels (taps to 2 sigma), reflected borders."""
  r = int(math.ceil(2 * sigma))
  taps = [math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-r, r + 1)]
  taps = tuple(t / sum(taps) for t in taps)
  return _filter1d(_filter1d(images, taps, 1), taps, 2)


def edge_smoothed(images: jax.Array, threshold: float = 1.0, dilate: int = 3, sigma: float = 1.5) -> jax.Array:
  """Style images [N, H, W, 3] in [-1, 1] with their edges blurred: where the Sobel
  magnitude of the luma (in [0, 1] units) exceeds `threshold`, dilated over `dilate` x
  `dilate` pixels, the pixels are replaced by a Gaussian blur (`sigma`) of the image.
  CartoonGAN's (Chen et al., 2018) extra negatives for D: a style image without its
  sharp edges is fake, so D's verdict turns on the ink lines, and G learns to draw them."""
  edge = (luma_edges(images) > threshold).astype(images.dtype)
  window = (1, dilate, dilate, 1)
  edge = jax.lax.reduce_window(edge, 0.0, jax.lax.max, window, (1, 1, 1, 1), "SAME")
  return edge * gaussian_blur(images, sigma) + (1.0 - edge) * images


def luma_edges(images: jax.Array) -> jax.Array:
  """[N, H, W, 1]: the Sobel magnitude of the luma of images in [-1, 1], in [0, 1] units
  (the styles' own edge measure: `data.styles._edges`), reflected borders."""
  unit = (images + 1.0) / 2.0
  luma = (unit @ jnp.asarray([0.299, 0.587, 0.114], unit.dtype))[..., None]
  gx = _filter1d(_filter1d(luma, (1.0, 2.0, 1.0), 1), (-1.0, 0.0, 1.0), 2)
  gy = _filter1d(_filter1d(luma, (1.0, 2.0, 1.0), 2), (-1.0, 0.0, 1.0), 1)
  return jnp.sqrt(gx * gx + gy * gy + 1e-12)


@register("edge_hold")
def edge_hold(ctx: LossContext) -> jax.Array:
  """G keeps x's strong edges: where the Sobel magnitude of x's luma (blurred by 1 px)
  exceeds 0.5, G(x)'s largest magnitude within 3x3 pixels must reach it (a hinge). No
  target needed. An unpaired G otherwise meets its discriminator by smoothing the
  photo's edges away; with them held, the way left to look like the style at a strong
  edge is what the style has there (an ink line darkens the edge, which keeps it)."""
  ex = luma_edges(gaussian_blur(ctx.x, 1.0))
  eg = jax.lax.reduce_window(luma_edges(ctx.fake), -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "SAME")
  return jnp.mean(jnp.where(ex > 0.5, jax.nn.relu(ex - eg), 0.0))


def line_free(images: jax.Array, size: int = 3, lift: float = 0.1, fill: int = 0) -> jax.Array:
  """Style images [N, H, W, 3] in [-1, 1] without their line work: a greyscale closing
  (max then min over `size` x `size` pixels, each channel) removes dark strokes thinner
  than `size` and keeps the edges between flat regions as steps; the pixels it lifts by
  more than `lift` (in any channel) take its value, the others stay as they are.

  With `fill` > 0 those stroke pixels are then filled from the others instead, by `fill`
  rounds of 3x3 means (a harmonic fill, reflect-padded): a ramp across where the stroke
  was, centred on it, as a photo's soft edge is centred on the line a style draws there
  (the closing leaves the step at one side of the stroke)."""
  window, strides = (1, size, size, 1), (1, 1, 1, 1)
  dilated = jax.lax.reduce_window(images, -jnp.inf, jax.lax.max, window, strides, "SAME")
  closed = jax.lax.reduce_window(dilated, jnp.inf, jax.lax.min, window, strides, "SAME")
  line = jnp.max(closed - images, axis=-1, keepdims=True) > lift
  free = jnp.where(line, closed, images)
  if not fill:
    return free

  def round_(_, v):
    padded = jnp.pad(v, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="symmetric")
    mean = jax.lax.reduce_window(padded, 0.0, jax.lax.add, (1, 3, 3, 1), strides, "VALID") / 9.0
    return jnp.where(line, mean, images)
  return jax.lax.fori_loop(0, fill, round_, free)


@register("restyle", needs=("restyled",))
def restyle(ctx: LossContext) -> jax.Array:
  """|G(line_free(y)) - y| on style images y: G learns to draw the style's lines on the
  edges of an image that has none, from the style domain alone (no pairs). The
  self-supervised cousin of CartoonGAN's edge-promoting term, which only tells D that
  an image without its lines is fake. Zero in the reverse direction of unpaired mode."""
  if ctx.restyled is None:
    return jnp.zeros((), ctx.fake.dtype)
  return jnp.mean(jnp.abs(ctx.restyled - ctx.real))


@register("restyle_l2", needs=("restyled",))
def restyle_l2(ctx: LossContext) -> jax.Array:
  """`restyle` as a squared error: the mean, not the median, of the lines G can place
  (they cover a few percent of a style image's pixels; an L1's median leaves them out)."""
  if ctx.restyled is None:
    return jnp.zeros((), ctx.fake.dtype)
  return jnp.mean((ctx.restyled - ctx.real) ** 2)


@register("backtranslate", needs=("backtranslated",))
def backtranslate(ctx: LossContext) -> jax.Array:
  """|G(F(y)) - y| with F(y) held fixed: each generator learns its direction from the
  pseudo-pairs (F(y), y) the other one makes (back-translation). CycleGAN's cycle term
  with the gradient into the second map only, so the first cannot hide in F(y) what G
  needs to rebuild y: F must make a real-looking photo (its adversarial term), and G
  must draw the style on it."""
  return jnp.mean(jnp.abs(ctx.backtranslated - ctx.real))


def sliced_wasserstein(a: jax.Array, b: jax.Array, key: jax.Array, patch: int = 5, projections: int = 32,
                       stride: int = 2, zero_mean: bool = False) -> jax.Array:
  """Sliced Wasserstein distance between the distributions of `patch`x`patch` patches of
  image batches `a` and `b` (Heitz et al. 2021): every patch (every `stride`-th position)
  is projected on `projections` random unit directions (a convolution), each projection's
  values sorted, and the sorted values of `a` and `b` compared (squared). `b` is held
  fixed (the style images). `zero_mean`: directions with no component along a channel's
  patch mean, so the distance sees the patches' structure (edges, lines, flat areas)
  and not their colour. (XLA's sort is the cost on a CPU: 5x5 patches of 4 crops of 64
  px, 64 directions at every position, 0.5 s a step with the gradient; at stride 2 with
  32 directions, 0.05 s.)"""
  c = a.shape[-1]
  w = jax.random.normal(key, (patch, patch, c, projections), a.dtype)
  if zero_mean:
    w = w - jnp.mean(w, axis=(0, 1), keepdims=True)
  w = w / jnp.sqrt(jnp.sum(w ** 2, axis=(0, 1, 2), keepdims=True))
  proj = lambda v: jax.lax.conv_general_dilated(v, w, (stride, stride), "VALID",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC")).reshape(-1, projections)
  pa, pb = jnp.sort(proj(a), axis=0), jnp.sort(jax.lax.stop_gradient(proj(b)), axis=0)
  if pa.shape[0] != pb.shape[0]:   # batches of other sizes: compare at the same quantiles
    pb = pb[jnp.round(jnp.linspace(0, pb.shape[0] - 1, pa.shape[0])).astype(jnp.int32)]
  return jnp.mean((pa - pb) ** 2)


@register("patch_swd", needs=("key",))
def patch_swd(ctx: LossContext) -> jax.Array:
  """The sliced Wasserstein distance between G(x)'s 5x5 patches and the style images'
  (`sliced_wasserstein`), fresh random projections each step: the unpaired style signal
  without a discriminator."""
  return sliced_wasserstein(ctx.fake, ctx.real, ctx.key)


@register("patch_swd_structure", needs=("key",))
def patch_swd_structure(ctx: LossContext) -> jax.Array:
  """`patch_swd` on the patches' structure only (`zero_mean` directions): colour is left
  to the other terms (a coarse hold keeps x's)."""
  return sliced_wasserstein(ctx.fake, ctx.real, ctx.key, zero_mean=True)


@register("style_mse", needs=("target",))
def style_mse(ctx: LossContext) -> jax.Array:
  """The seed design's L_style = E||G(x) - I_s||^2 + E||G(x) - I_t||^2 (paired data)."""
  return jnp.mean((ctx.fake - ctx.real) ** 2) + jnp.mean((ctx.fake - ctx.target) ** 2)


@register("gram_style", needs=("features",))
def gram_style(ctx: LossContext) -> jax.Array:
  """Gram-matrix style loss on discriminator features of G(x) vs. a real style batch."""
  terms = [jnp.mean((gram(f) - jnp.mean(gram(r), axis=0, keepdims=True)) ** 2)
           for f, r in zip(ctx.fake_features, ctx.real_features)]
  return sum(terms) / len(terms)


def check_weights(weights: dict[str, float], available: set[str]) -> None:
  """Fails with the offending loss named if it is unknown or cannot run in this mode."""
  for name, w in weights.items():
    if name not in GENERATOR_LOSSES:
      raise ConfigError(f"losses.generator: unknown loss {name!r}; known: {sorted(GENERATOR_LOSSES)}")
    if not isinstance(w, (int, float)) or not (w >= 0 and math.isfinite(w)):
      raise ConfigError(f"losses.generator.{name}: weight must be a finite number >= 0, got {w!r}")
    missing = [n for n in NEEDS[name] if n not in available]
    if w and missing:
      raise ConfigError(f"losses.generator.{name} needs {missing[0]!r}, which this training "
                        f"mode does not provide")


def generator_objective(weights: dict[str, float], ctx: LossContext) -> tuple[jax.Array, dict[str, Any]]:
  """Weighted sum of the named losses, and each term for logging."""
  terms = {name: GENERATOR_LOSSES[name](ctx) for name, w in weights.items() if w}
  total = sum(weights[n] * v for n, v in terms.items())
  return total, terms


# -- detection and restoration -------------------------------------------------------

def focal_bce(logits: jax.Array, labels: jax.Array, gamma: float = 2.0) -> jax.Array:
  """Mean focal binary cross-entropy (Lin et al. 2017); gamma=0 is plain BCE."""
  p = jax.nn.sigmoid(logits)
  ce = jax.nn.softplus(logits) - logits * labels
  p_t = p * labels + (1 - p) * (1 - labels)
  return jnp.mean((1 - p_t) ** gamma * ce)


def dice_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """1 - soft Dice per image (smoothed by 1, so an empty mask predicted empty scores 0)."""
  p = jax.nn.sigmoid(logits).reshape(logits.shape[0], -1)
  y = labels.reshape(labels.shape[0], -1)
  return jnp.mean(1.0 - (2.0 * jnp.sum(p * y, -1) + 1.0) / (jnp.sum(p, -1) + jnp.sum(y, -1) + 1.0))


def detection_loss(out: dict, mask: jax.Array, is_anomalous: jax.Array, kind: jax.Array,
                   dice_weight: float = 1.0, typed: jax.Array | None = None) -> tuple[jax.Array, dict]:
  """Pixel focal BCE + Dice, image BCE, and type cross-entropy on the rows `typed`
  (default: the anomalous ones; a real failure has no artifact type)."""
  typed = is_anomalous if typed is None else typed
  pixel = focal_bce(out["pixel"], mask) * 10.0 + dice_weight * dice_loss(out["pixel"], mask)
  image = jnp.mean(jax.nn.softplus(out["image"]) - out["image"] * is_anomalous)
  ce = -jnp.take_along_axis(jax.nn.log_softmax(out["type"]), kind[:, None], axis=-1)[:, 0]
  types = jnp.sum(ce * typed) / jnp.maximum(jnp.sum(typed), 1.0)
  total = pixel + image + 0.2 * types
  return total, {"pixel": pixel, "image": image, "type": types}


def restoration_loss(pred: jax.Array, clean: jax.Array, ssim_weight: float = 0.2) -> tuple[jax.Array, dict]:
  """The seed design's reconstruction MSE, plus L1 and (1 - SSIM)."""
  from stylegan_ad import metrics
  mse = jnp.mean((pred - clean) ** 2)
  l1 = jnp.mean(jnp.abs(pred - clean))
  dssim = 1.0 - jnp.mean(metrics.ssim(pred, clean))
  return mse + l1 + ssim_weight * dssim, {"mse": mse, "l1": l1, "dssim": dssim}
