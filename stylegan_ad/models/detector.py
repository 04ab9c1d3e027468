"""The learned artifact detector: a small U-Net segmentation network.

Its input is the output y; [x, y] (6 channels) for a detector that sees the photo x
the output was made from; and, for one that sees G's test-time disagreement, one more
channel: the per-pixel spread of y and G's alternate view of x (`detect.tta_alternates`:
G on x turned half a turn, turned back), where G is unsure of itself. Outputs per image: pixel logits (H, W) for "this pixel is an artifact", an image
logit, and artifact-type logits. No normalisation layers: instance or group norm
would erase exactly the global colour statistics a colour cast changes.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylegan_ad.models.layers import UNetTrunk
from stylegan_ad.registry import DETECTORS


@DETECTORS.register("unet")
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


TTA_SCALE = 5.0   # the spread (about 0-0.2 in [-1, 1] units) brought to the range of a pixel


def tta_spread(y: jax.Array, alts: jax.Array) -> jax.Array:
  """[N, H, W, 1]: the per-pixel spread (std over views, channel mean) of y and the
  alternate views `alts` ([N, H, W, 3k]), scaled by TTA_SCALE."""
  views = jnp.stack([y] + jnp.split(alts, alts.shape[-1] // 3, axis=-1))
  return TTA_SCALE * views.std(axis=0).mean(axis=-1, keepdims=True)


def detector_input(y: jax.Array, x: jax.Array | None = None, alts: jax.Array | None = None) -> jax.Array:
  """What the detector sees: [x (if given), y, the TTA spread (if `alts` given)]."""
  parts = ([] if x is None else [x]) + [y] + ([] if alts is None else [tta_spread(y, alts)])
  return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else y


def input_channels(sees_input: bool, sees_tta: bool) -> int:
  return 3 + 3 * bool(sees_input) + bool(sees_tta)


# identity, mirror; then half turns (4 views: the flips of the square); then quarter turns
SYMMETRIES = tuple((turns, flip) for turns in (0, 2, 1, 3) for flip in (False, True))


def spread_score(y: jax.Array, alts: jax.Array) -> jax.Array:
  """[N]: log of G's mean test-time spread over the image (`tta_spread`, unscaled): how
  unsure of itself G is on this photo as a whole."""
  return jnp.log(tta_spread(y, alts).mean(axis=(1, 2, 3)) / TTA_SCALE + 1e-6)


def predict(detector: Detector, params, y: jax.Array, views: int = 1, skip: int = 0,
            x: jax.Array | None = None, alts: jax.Array | None = None, spread_weight: float = 0.0
            ) -> tuple[jax.Array, jax.Array]:
  """(image logit [N], pixel probability [N, H, W]) averaged over the first `views` of
  the 8 symmetries of the square (test-time augmentation; 1 = the image as it is),
  leaving out the first `skip` of them (for a caller that has those already).
  With `x` (a detector that sees the input: `detect.sees_input`), it judges the
  output y together with the photo x it was made from, as 6 channels [x, y]; with
  `alts` (`detect.sees_tta`), it also sees the spread of y and G's alternate views, and
  the image score adds `spread_weight` times `spread_score` (the same in every view).

  Views of the same shape go through the detector as one batch (it has no
  batch-coupled layers): one call for a square image, two for an oblong one."""
  n = y.shape[0]
  extra = spread_weight * spread_score(y, alts) if alts is not None and spread_weight else 0.0
  y = detector_input(y, x, alts)
  order = SYMMETRIES[skip:views]
  groups: dict[tuple, list] = {}
  for turns, flip in order:
    v = jnp.rot90(y, turns, axes=(1, 2))
    groups.setdefault(v.shape, []).append((turns, flip, v[:, :, ::-1] if flip else v))
  scores, maps = {}, {}
  for group in groups.values():
    out = detector.apply({"params": params}, jnp.concatenate([v for _, _, v in group]))
    probs = jax.nn.sigmoid(out["pixel"])
    for i, (turns, flip, _) in enumerate(group):
      m = probs[i * n:(i + 1) * n]
      m = m[:, :, ::-1] if flip else m
      scores[turns, flip] = out["image"][i * n:(i + 1) * n]
      maps[turns, flip] = jnp.rot90(m, -turns, axes=(1, 2))
  return sum(scores[s] for s in order) / len(order) + extra, sum(maps[s] for s in order) / len(order)
