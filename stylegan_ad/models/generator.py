"""Generators: ResNet (CycleGAN family) and U-Net. Images NHWC in [-1, 1].

Convolutions followed by instance norm have no bias: the norm removes it, so its
gradient is rounding noise that Adam would amplify into random updates.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylegan_ad.models.layers import Conv, UNetTrunk, Upsample, instance_norm


class ResnetBlock(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.relu(instance_norm()(Conv(self.features, 3, use_bias=False)(x)))
    y = instance_norm()(Conv(self.features, 3, use_bias=False)(y))
    return x + y


class ResnetGenerator(nn.Module):
  """c7s1-ngf, two stride-2 downsamplings, `n_blocks` residual blocks, two upsamplings.

  The reference CycleGAN generator is ngf=64, n_blocks=9 (ResNet-9).
  """
  ngf: int = 64
  n_blocks: int = 9
  upsample: str = "resize_conv"
  out_channels: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.relu(instance_norm()(Conv(self.ngf, 7, use_bias=False)(x)))
    for mult in (2, 4):
      h = nn.relu(instance_norm()(Conv(self.ngf * mult, 3, stride=2, padding="zero", use_bias=False)(h)))
    for _ in range(self.n_blocks):
      h = ResnetBlock(self.ngf * 4)(h)
    for mult in (2, 1):
      h = nn.relu(instance_norm()(Upsample(self.ngf * mult, self.upsample, use_bias=False)(h)))
    return jnp.tanh(Conv(self.out_channels, 7)(h))


class UNetGenerator(nn.Module):
  """U-Net with skip connections (pix2pix family); input side divisible by 2**depth."""
  ngf: int = 64
  depth: int = 5
  upsample: str = "resize_conv"
  out_channels: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    skips = []
    h = x
    for i in range(self.depth):
      feats = self.ngf * min(2 ** i, 8)
      h = Conv(feats, 4, stride=2, padding="zero", pad=1, use_bias=i == 0)(h)
      if i:
        h = instance_norm()(h)
      h = nn.leaky_relu(h, 0.2)
      skips.append(h)
    for i in reversed(range(self.depth - 1)):
      feats = self.ngf * min(2 ** i, 8)
      h = nn.relu(instance_norm()(Upsample(feats, self.upsample, use_bias=False)(h)))
      h = jnp.concatenate([h, skips[i]], axis=-1)
    h = Upsample(self.ngf, self.upsample)(h)
    return jnp.tanh(Conv(self.out_channels, 3)(nn.relu(h)))


class ResidualUNetGenerator(nn.Module):
  """G(x) = tanh(x + U-Net(x)): a norm-free U-Net that predicts a change of x.

  Made for photos of any size: no normalisation layer, so every output pixel depends
  only on a window of the input around it (the receptive field of `depth` poolings,
  about 2**depth * 10 pixels), not on statistics of the whole image. A crop, a tile
  or the whole photo give the same output away from their borders, and a style that
  is a local operator is learned as one (instance norm at 64 px made the pix2pix
  U-Net memorise its 7 train photos: docs/generator_ablation.md). Predicting the
  change from x keeps colours and detail that the style keeps.
  """
  ngf: int = 32
  depth: int = 3
  out_channels: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h, _ = UNetTrunk(self.ngf, self.depth)(x)
    # a per-pixel MLP: cheap (1x1 convs), and what a style's sharp tone curves
    # (palette quantisation: a staircase per channel) need more than more context
    h = nn.relu(nn.Conv(2 * self.ngf, (1, 1), name="head")(h))
    delta = nn.Conv(self.out_channels, (1, 1), name="to_rgb")(h)
    return jnp.tanh(x[..., :self.out_channels] + delta)


GENERATORS = {"resnet": ResnetGenerator, "unet": UNetGenerator, "residual_unet": ResidualUNetGenerator}


def make_generator(arch: str = "resnet", **kwargs) -> nn.Module:
  """The generator registered as `arch` in GENERATORS, given the arguments it takes."""
  if arch not in GENERATORS:
    raise ValueError(f"model.generator must be one of {sorted(GENERATORS)}, got {arch!r}")
  cls = GENERATORS[arch]
  fields = {f.name for f in dataclasses.fields(cls)}
  return cls(**{k: v for k, v in kwargs.items() if k in fields})
