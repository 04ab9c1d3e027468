"""Shared layers: reflect-padded conv with optional spectral norm, instance norm, upsampling."""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

# CycleGAN initialises conv weights from N(0, 0.02).
default_init = nn.initializers.normal(0.02)

UPSAMPLE_MODES = ("resize_conv", "subpixel", "transpose")


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

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pad = self.kernel // 2 if self.pad is None else self.pad
    if self.padding == "reflect" and pad:
      x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    conv_pad = [(pad, pad)] * 2 if self.padding == "zero" else "VALID"
    kernel = self.param("kernel", default_init, (self.kernel, self.kernel, x.shape[-1], self.features))
    if self.spectral_norm:
      kernel = spectral_normalize(kernel)
    y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (self.stride, self.stride), conv_pad,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


def instance_norm(name: str | None = None) -> nn.Module:
  """Instance norm without affine parameters, as the reference CycleGAN (affine=False)."""
  return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, name=name)


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
  n, h, w, c = x.shape
  x = x.reshape(n, h, w, block, block, c // (block * block))
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * block, w * block, c // (block * block))


class Upsample(nn.Module):
  """x2 upsampling + conv. `resize_conv` (default) and `subpixel` avoid checkerboards."""
  features: int
  mode: str = "resize_conv"
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.mode == "resize_conv":
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      return Conv(self.features, 3, use_bias=self.use_bias)(x)
    if self.mode == "subpixel":
      return depth_to_space(Conv(self.features * 4, 3, use_bias=self.use_bias)(x), 2)
    if self.mode == "transpose":
      return nn.ConvTranspose(self.features, (3, 3), strides=(2, 2), padding="SAME",
                              use_bias=self.use_bias, kernel_init=default_init)(x)
    raise ValueError(f"model.upsample must be one of {UPSAMPLE_MODES}, got {self.mode!r}")


class _ConvBlock(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    init = nn.initializers.he_normal()
    x = nn.relu(nn.Conv(self.features, (3, 3), kernel_init=init)(x))
    return nn.relu(nn.Conv(self.features, (3, 3), kernel_init=init)(x))


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
      h = nn.max_pool(h, (2, 2), (2, 2))
    h = _ConvBlock(self.features * 2 ** self.depth)(h)
    pooled = jnp.concatenate([h.mean(axis=(1, 2)), h.max(axis=(1, 2))], axis=-1)
    for i in reversed(range(self.depth)):
      h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
      h = _ConvBlock(self.features * 2 ** i)(jnp.concatenate([h, skips[i]], axis=-1))
    return h, pooled
