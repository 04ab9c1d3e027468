"""Generators: ResNet (CycleGAN family) and U-Net. Images NHWC in [-1, 1].

Convolutions followed by instance norm have no bias: the norm removes it, so its
gradient is rounding noise that Adam would amplify into random updates.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylegan_ad import losses
from stylegan_ad.models.layers import Conv, UNetTrunk, Upsample, instance_norm
from stylegan_ad.registry import GENERATORS


class ResnetBlock(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.relu(instance_norm()(Conv(self.features, 3, use_bias=False)(x)))
    y = instance_norm()(Conv(self.features, 3, use_bias=False)(y))
    return x + y


@GENERATORS.register("resnet")
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


@GENERATORS.register("unet")
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


@GENERATORS.register("residual_unet")
class ResidualUNetGenerator(nn.Module):
  """G(x) = tanh(x + U-Net(x)): a norm-free U-Net that predicts a change of x.

  Made for photos of any size: no normalisation layer, so every output pixel depends
  only on a window of the input around it (the receptive field of `depth` poolings,
  about 2**depth * 10 pixels), not on statistics of the whole image. A crop, a tile
  or the whole photo give the same output away from their borders, and a style that
  is a local operator is learned as one (instance norm at 64 px made the pix2pix
  U-Net memorise its 7 train photos: docs/generator_ablation.md). Predicting the
  change from x keeps colours and detail that the style keeps.

  `input_blur` > 0: G sees x only through a fixed Gaussian of that sigma (reflected
  borders), the U-Net's input and the base of its change alike, so a photo's fine
  texture, which a flat style image lacks, does not reach it (the unpaired
  self-supervised recipe trains on line-free style images: docs/generator_ablation.md).
  """
  ngf: int = 32
  depth: int = 3
  out_channels: int = 3
  input_blur: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.input_blur:
      x = losses.gaussian_blur(x, self.input_blur)
    h, _ = UNetTrunk(self.ngf, self.depth)(x)
    # a per-pixel MLP: cheap (1x1 convs), and what a style's sharp tone curves
    # (palette quantisation: a staircase per channel) need more than more context
    h = nn.relu(nn.Conv(2 * self.ngf, (1, 1), name="head")(h))
    delta = nn.Conv(self.out_channels, (1, 1), name="to_rgb")(h)
    return jnp.tanh(x[..., :self.out_channels] + delta)


class _TransposeConv4x2(nn.Module):
  """PyTorch's `ConvTranspose2d(k=4, stride=2, padding=1)`: the input dilated by 2, padded
  2, and correlated with the kernel (HWIO; a PyTorch weight [in, out, kh, kw] maps to it
  transposed and flipped in space). Output sides twice the input's."""
  features: int
  use_bias: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.he_normal(), (4, 4, x.shape[-1], self.features))
    y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


@GENERATORS.register("reference_unet")
class ReferenceUNet(nn.Module):
  """The PyTorch pix2pix / CycleGAN reference's U-Net (`unet_128`: depth 7, `unet_256`:
  depth 8) layer for layer, for generator files made with it (`interop`): 4x4 stride-2
  convolutions (zero padding 1) down, 4x4 stride-2 transposed convolutions up, each
  level's leaky-ReLU'd input joined to its output (the reference's in-place LeakyReLU
  changes the tensor it then concatenates), and every norm over each image's own
  statistics with a scale and shift: an instance-norm file's are 1 and 0; a batch-norm
  file's are its affine weights, and the statistics the photo's own, as the reference's
  test script runs it (without --eval) on one photo at a time. Dropout is off. Input sides
  must be divisible by 2**depth."""
  ngf: int = 64
  depth: int = 8
  out_channels: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    feats = [self.ngf * min(2 ** i, 8) for i in range(self.depth)]
    norm = lambda name: nn.InstanceNorm(epsilon=1e-5, name=name)
    lrelu = lambda v: nn.leaky_relu(v, 0.2)
    down = lambda f, bias, name: Conv(f, 4, stride=2, padding="zero", pad=1, use_bias=bias, name=name)
    last = self.depth - 1
    inputs = []
    h = down(feats[0], True, "down_0")(x)
    for i in range(1, self.depth):
      inputs.append(lrelu(h))
      h = down(feats[i], i == last, f"down_{i}")(inputs[-1])
      if i < last:
        h = norm(f"down_norm_{i}")(h)
    for i in reversed(range(1, self.depth)):
      h = norm(f"up_norm_{i}")(_TransposeConv4x2(feats[i - 1], name=f"up_{i}")(nn.relu(h)))
      h = jnp.concatenate([inputs[i - 1], h], axis=-1)
    return jnp.tanh(_TransposeConv4x2(self.out_channels, use_bias=True, name="up_0")(nn.relu(h)))


def make_generator(arch: str = "resnet", **settings) -> nn.Module:
  """The generator registered as `arch`, with the settings it takes."""
  return GENERATORS.make(arch, **settings)
