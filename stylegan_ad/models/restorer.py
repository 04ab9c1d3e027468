"""The restorer: repairs a stylized image inside the detector's map, keeping the style.

Input: the stylized image y, a soft anomaly map in [0, 1], and the generator input
x (the content to re-stylize under the map; the rest of y shows the style). The
network predicts a repaired image (a bounded residual on y), and the output is
blended by the map: `out = m * repaired + (1 - m) * y`, and exactly `y` wherever
`m == 0`, so a repair never touches clean regions.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylegan_ad.models.layers import UNetTrunk
from stylegan_ad.registry import RESTORERS


def blend(x: jax.Array, repaired: jax.Array, soft_map: jax.Array) -> jax.Array:
  m = soft_map[..., None]
  return jnp.where(m > 0, m * repaired + (1.0 - m) * x, x)


@RESTORERS.register("unet")
class Restorer(nn.Module):
  features: int = 32
  depth: int = 3

  @nn.compact
  def __call__(self, y: jax.Array, soft_map: jax.Array, x: jax.Array) -> jax.Array:
    h, pooled = UNetTrunk(self.features, self.depth)(jnp.concatenate([y, soft_map[..., None], x], -1))
    # global context (e.g. the true palette under a colour cast) as a per-channel shift
    h = h + nn.Dense(h.shape[-1])(pooled)[:, None, None, :]
    # zero-initialised head: training starts from the identity, with gradients flowing
    delta = nn.Conv(3, (1, 1), kernel_init=nn.initializers.zeros)(h)
    repaired = jnp.clip(y + 2.0 * jnp.tanh(delta), -1.0, 1.0)
    return blend(y, repaired, soft_map)
