"""The learned artifact detector: a small U-Net segmentation network.

Outputs per image: pixel logits (H, W) for "this pixel is an artifact", an image
logit, and artifact-type logits. No normalisation layers: instance or group norm
would erase exactly the global colour statistics a colour cast changes.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylegan_ad.models.layers import UNetTrunk


class Detector(nn.Module):
  features: int = 32
  depth: int = 3
  num_types: int = 10

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    h, pooled = UNetTrunk(self.features, self.depth)(x)
    pixel = nn.Conv(1, (1, 1))(h)[..., 0]
    # The image logit sees the bottleneck and the strongest pixel evidence.
    top = jax.lax.top_k(pixel.reshape(pixel.shape[0], -1), 16)[0].mean(axis=-1, keepdims=True)
    image = nn.Dense(1)(jnp.concatenate([nn.relu(nn.Dense(64)(pooled)), top], axis=-1))[..., 0]
    types = nn.Dense(self.num_types)(nn.relu(nn.Dense(64)(pooled)))
    return {"pixel": pixel, "image": image, "type": types}
