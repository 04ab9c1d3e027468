"""The restorer: repairs a stylized image inside the detector's map, keeping the style.

Input: the image and a soft anomaly map in [0, 1]. The network predicts a repaired
image (a bounded residual on the input), and the output is blended by the map:
`out = m * repaired + (1 - m) * x`, and exactly `x` wherever `m == 0`, so a
repair never touches clean regions.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylegan_ad.models.layers import UNetTrunk


def blend(x: jax.Array, repaired: jax.Array, soft_map: jax.Array) -> jax.Array:
  m = soft_map[..., None]
  return jnp.where(m > 0, m * repaired + (1.0 - m) * x, x)


class Restorer(nn.Module):
  features: int = 32
  depth: int = 3

  @nn.compact
  def __call__(self, x: jax.Array, soft_map: jax.Array) -> jax.Array:
    h, pooled = UNetTrunk(self.features, self.depth)(jnp.concatenate([x, soft_map[..., None]], -1))
    # global context (e.g. the true palette under a colour cast) as a per-channel shift
    h = h + nn.Dense(h.shape[-1])(pooled)[:, None, None, :]
    # zero-initialised head: training starts from the identity, with gradients flowing
    delta = nn.Conv(3, (1, 1), kernel_init=nn.initializers.zeros)(h)
    repaired = jnp.clip(x + 2.0 * jnp.tanh(delta), -1.0, 1.0)
    return blend(x, repaired, soft_map)
