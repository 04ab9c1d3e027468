"""Shared layers: reflect-padded conv with optional spectral norm, instance norm, upsampling.

Every convolution goes through `conv2d`, which picks, by shape, the formulation that
XLA:CPU runs fastest (profiled on the train step): a native convolution for wide layers, patches then
one matmul when there are few input channels (an RGB input), and one matmul to every
tap then shifted sums when there are few outputs (an RGB output). Upsampling layers
are computed on the low-resolution grid, one small convolution per output phase: a
nearest-neighbour x2 resize then 3x3 conv ("resize_conv") is 2.25x fewer FLOPs that
way, and a stride-2 transposed conv avoids XLA:CPU's slow `conv_transpose` gradient.
All are exact rewrites (equal to float rounding; tests/test_models_losses.py checks each
against the plain layer). The few-channel matmul rewrites apply on the CPU backend only
(`cpu_rewrites`); on GPU and TPU `conv2d` is the native convolution.
"""
from __future__ import annotations

import os
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylegan_ad.errors import ConfigError

# CycleGAN initialises conv weights from N(0, 0.02).
default_init = nn.initializers.normal(0.02)

UPSAMPLE_MODES = ("resize_conv", "subpixel", "transpose")


_DN = ("NHWC", "HWIO", "NHWC")
_FEW = 4  # channels at or below which a conv is rewritten as matmuls
REWRITES_ENV = "STYLEGAN_AD_CONV_REWRITES"


def cpu_rewrites() -> bool:
  """Whether `conv2d` rewrites few-channel convolutions as matmuls (read when a function
  is traced). They are what XLA:CPU runs fastest; on GPU and TPU the native convolution
  is, so by default ("auto") they apply on the CPU backend only. STYLEGAN_AD_CONV_REWRITES
  = on | off | auto overrides (parameters and results are the same either way). The
  upsampling on the input grid and the pooling below are cheaper on every backend."""
  flag = os.environ.get(REWRITES_ENV, "auto")
  if flag not in ("auto", "on", "off"):
    raise ConfigError(f"{REWRITES_ENV} must be auto, on or off, got {flag!r}")
  return flag == "on" or (flag == "auto" and jax.default_backend() == "cpu")


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1,
           padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))) -> jax.Array:
  """Zero-padded NHWC x HWIO convolution in the form XLA:CPU runs fastest for its shape."""
  kh, kw, cin, cout = kernel.shape
  few_in = cin <= _FEW and stride == 1  # (a strided RGB conv is fast as it is)
  few_out = cout <= _FEW < cin
  if (kh, kw) == (1, 1) or not (few_in or few_out) or not cpu_rewrites():
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_DN)
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  n, hp, wp, _ = x.shape
  h, w = (hp - kh) // stride + 1, (wp - kw) // stride + 1
  window = lambda a, i, j: a[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (w - 1) + 1:stride]
  if few_in:  # few inputs: gather the k*k*cin patch of each pixel, then one matmul
    patches = jnp.concatenate([window(x, i, j) for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.einsum("nhwq,qo->nhwo", patches, kernel.reshape(kh * kw * cin, cout))
  # few outputs: one matmul gives every tap's contribution at every pixel; sum shifted copies
  # (split, not indexing: its gradient is one concatenate instead of k*k full-size pads)
  taps = jnp.einsum("nhwc,cq->nhwq", x, kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout))
  taps = jax.lax.split(taps, (cout,) * (kh * kw), axis=3)
  return sum(window(taps[i * kw + j], i, j) for i in range(kh) for j in range(kw))


def max_pool2x2(x: jax.Array) -> jax.Array:
  """2x2 max pooling, stride 2, of NHWC with even H and W, as a reshape and a max: the
  same values as `nn.max_pool`, and a gradient XLA:CPU computes with a compare and a
  select, where reduce_window's (select-and-gather over packed pairs) took a sixth of a
  U-Net train step."""
  n, h, w, c = x.shape
  return jnp.max(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def spectral_normalize(kernel: jax.Array, iterations: int = 3) -> jax.Array:
  """W / sigma_max(W), sigma from power iteration started at a fixed vector.

  Stateless (no `u` buffer to carry), so `apply` stays a pure function of the
  parameters; the singular vectors are treated as constants in the gradient, as in
  Miyato et al. (2018).
  """
  w = kernel.reshape(-1, kernel.shape[-1])
  v = jnp.ones((w.shape[1],), w.dtype) / jnp.sqrt(w.shape[1])
  for _ in range(iterations):
    u = w @ v
    u = u / (jnp.linalg.norm(u) + 1e-12)
    v = w.T @ u
    v = v / (jnp.linalg.norm(v) + 1e-12)
  u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
  sigma = u @ w @ v
  return kernel / sigma


class Conv(nn.Module):
  """2-D convolution, NHWC, with explicit padding mode and optional spectral norm."""
  features: int
  kernel: int = 3
  stride: int = 1
  padding: str = "reflect"  # "reflect", "zero" or "valid"
  pad: int | None = None    # default: kernel // 2
  spectral_norm: bool = False
  use_bias: bool = True
  kernel_init: Callable = default_init

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pad = self.kernel // 2 if self.pad is None else self.pad
    if self.padding == "reflect" and pad:
      x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    conv_pad = ((pad, pad),) * 2 if self.padding == "zero" else ((0, 0),) * 2
    kernel = self.param("kernel", self.kernel_init, (self.kernel, self.kernel, x.shape[-1], self.features))
    if self.spectral_norm:
      kernel = spectral_normalize(kernel)
    y = conv2d(x, kernel.astype(x.dtype), self.stride, conv_pad)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


COMPUTE_DTYPES = ("float32", "bfloat16")


def apply_in(module: nn.Module, params, dtype: str, *inputs):
  """`module.apply` computing in `dtype` (`model.dtype`): with "bfloat16", the parameters
  and floating inputs are cast to it for the computation (the parameters themselves, their
  gradients and the optimizer's state stay float32: the cast is differentiated through)
  and floating outputs come back as float32; with "float32", exactly `module.apply`."""
  if dtype == "float32":
    return module.apply({"params": params}, *inputs)
  low = jnp.dtype(dtype)
  cast = lambda tree, to: jax.tree.map(lambda a: a.astype(to) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)
  out = module.apply({"params": cast(params, low)}, *cast(inputs, low))
  return cast(out, jnp.float32)


def instance_norm(name: str | None = None) -> nn.Module:
  """Instance norm without affine parameters, as the reference CycleGAN (affine=False)."""
  return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, name=name)


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
  n, h, w, c = x.shape
  x = x.reshape(n, h, w, block, block, c // (block * block))
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * block, w * block, c // (block * block))


def _interleave(phases: list[list[jax.Array]]) -> jax.Array:
  """phases[r1][r2]: [n, h, w, c] -> [n, 2h, 2w, c] with out[2q + r1, 2p + r2] = phases[r1][r2][q, p]."""
  y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # n, h, 2, w, 2, c
  n, h, _, w, _, c = y.shape
  return y.reshape(n, 2 * h, 2 * w, c)


# resize_conv: output phase r of a 3x3 conv over the reflect-padded x2 image sees input
# offsets (r - 1, r) of the edge-padded input; row a of _RESIZE_TAPS[r] sums the 3x3 taps
# that land on offset a.
_RESIZE_TAPS = np.array([[[1., 0., 0.], [0., 1., 1.]], [[1., 1., 0.], [0., 0., 1.]]], np.float32)


def resize_conv(x: jax.Array, kernel: jax.Array, zero_pad: bool = False) -> jax.Array:
  """Nearest-neighbour x2 resize, pad 1 (reflect, or zeros), 3x3 conv: one 2x2 conv on the input grid."""
  assert kernel.shape[:2] == (3, 3), kernel.shape
  n, h, w, _ = x.shape
  cout = kernel.shape[-1]
  # the reflect-padded x2 image is the x2 image of the edge-padded input (the zero-padded
  # one, of the zero-padded input): the phase kernels reach one input pixel beyond the edge
  xe = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="constant" if zero_pad else "edge")
  phase_kernels = jnp.einsum("rat,sbu,tuco->abcrso", _RESIZE_TAPS, _RESIZE_TAPS, kernel).astype(x.dtype)
  y = conv2d(xe, phase_kernels.reshape(2, 2, x.shape[-1], 4 * cout))  # n, h+1, w+1, (r, s, c)
  y = y.reshape(n, h + 1, w + 1, 2, 2, cout)
  return _interleave([[y[:, r:r + h, s:s + w, r, s] for s in range(2)] for r in range(2)])


def conv_transpose2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`jax.lax.conv_transpose(x, kernel, (2, 2), "SAME")` (flax ConvTranspose), one conv per phase.

  The transposed conv is a conv over the x2 zero-dilated input; output phase r only
  meets the taps t with t + r - pad even, at input offsets (t + r - pad) / 2.
  """
  k = kernel.shape[0]
  pad = k - 1 if k < 3 else -(-k // 2)  # lax's SAME padding before the dilated input, stride 2
  phases = []
  for r1 in range(2):
    row = []
    for r2 in range(2):
      t1 = [t for t in range(k) if (t + r1 - pad) % 2 == 0]
      t2 = [t for t in range(k) if (t + r2 - pad) % 2 == 0]
      d1, d2 = (t1[0] + r1 - pad) // 2, (t2[0] + r2 - pad) // 2
      sub = kernel[t1[0]::2, t2[0]::2].astype(x.dtype)
      row.append(conv2d(x, sub, 1, ((-d1, d1 + sub.shape[0] - 1), (-d2, d2 + sub.shape[1] - 1))))
    phases.append(row)
  return _interleave(phases)


def torch_conv_transpose2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The reference CycleGAN's upsampling, PyTorch `ConvTranspose2d(k=3, stride=2, padding=1,
  output_padding=1)`: `lax.conv_transpose` padded (1, 2) on each axis, where flax's SAME
  pads (2, 1): the same layer one output pixel later, computed by `conv_transpose2x` on
  the input with one more (zero) row and column. The kernel is HWIO, applied without a
  flip (a PyTorch weight [in, out, kh, kw] maps to it transposed and flipped in space)."""
  h, w = x.shape[1:3]
  y = conv_transpose2x(jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0))), kernel)
  return y[:, 1:2 * h + 1, 1:2 * w + 1]


class _Weights(nn.Module):
  """A conv kernel (HWIO) and optional bias, for layers that compute with them themselves."""
  shape: tuple
  use_bias: bool = True
  kernel_init: Callable = default_init

  @nn.compact
  def __call__(self):
    kernel = self.param("kernel", self.kernel_init, self.shape)
    bias = self.param("bias", nn.initializers.zeros, (self.shape[-1],)) if self.use_bias else None
    return kernel, bias


class Upsample(nn.Module):
  """x2 upsampling + conv. `resize_conv` (default) and `subpixel` avoid checkerboards;
  `transpose` is the reference CycleGAN's layer (`torch_conv_transpose2x`)."""
  features: int
  mode: str = "resize_conv"
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.mode == "subpixel":
      return depth_to_space(Conv(self.features * 4, 3, use_bias=self.use_bias)(x), 2)
    if self.mode not in UPSAMPLE_MODES:
      raise ValueError(f"model.upsample must be one of {UPSAMPLE_MODES}, got {self.mode!r}")
    # parameter names as the plain layers (Conv / flax ConvTranspose) would give them
    name = "Conv_0" if self.mode == "resize_conv" else "ConvTranspose_0"
    kernel, bias = _Weights((3, 3, x.shape[-1], self.features), self.use_bias, name=name)()
    y = resize_conv(x, kernel) if self.mode == "resize_conv" else torch_conv_transpose2x(x, kernel)
    return y if bias is None else y + bias.astype(y.dtype)


class _ConvBlock(nn.Module):
  """Two 3x3 convs + ReLU (zero padding). With `skip` (a U-Net decoder block), the first
  conv sees [x2 nearest-upsampled x, skip], computed as a phase conv of x on its own grid
  (`resize_conv`, 2.25x fewer FLOPs) plus a conv of skip; parameters as the plain layer's."""
  features: int

  @nn.compact
  def __call__(self, x, skip=None):
    init = nn.initializers.he_normal()
    if skip is None:
      x = nn.Conv(self.features, (3, 3), kernel_init=init, name="Conv_0")(x)
    else:
      c = x.shape[-1]
      kernel, bias = _Weights((3, 3, c + skip.shape[-1], self.features), kernel_init=init, name="Conv_0")()
      x = resize_conv(x, kernel[:, :, :c], zero_pad=True) + conv2d(skip, kernel[:, :, c:], 1, ((1, 1), (1, 1))) + bias
    return nn.relu(nn.Conv(self.features, (3, 3), kernel_init=init, name="Conv_1")(nn.relu(x)))


class UNetTrunk(nn.Module):
  """Encoder-decoder with skips and no normalisation (keeps global colour statistics).

  Returns (decoded full-resolution features, pooled bottleneck features).
  """
  features: int = 32
  depth: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    skips = []
    h = x
    for i in range(self.depth):
      h = _ConvBlock(self.features * 2 ** i)(h)
      skips.append(h)
      h = max_pool2x2(h)
    h = _ConvBlock(self.features * 2 ** self.depth)(h)
    pooled = jnp.concatenate([h.mean(axis=(1, 2)), h.max(axis=(1, 2))], axis=-1)
    for i in reversed(range(self.depth)):  # x2 nearest upsampling, concatenated with the skip
      h = _ConvBlock(self.features * 2 ** i)(h, skips[i])
    return h, pooled
