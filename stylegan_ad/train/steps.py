"""Train state and pure step functions for the style GAN.

    g_step(state, batch, key) -> (state, metrics, fakes)   # both generators
    d_step(state, batch, fakes, key) -> (state, metrics)   # both discriminators
    train_step(state, batch) -> (state, metrics)           # G then D, one program

Unpaired mode (CycleGAN): G maps A->B ("ab"), F maps B->A ("ba"); D_B ("b") judges
domain B, D_A ("a") judges A; cycle and identity losses; a pool of past fakes.
Paired mode (pix2pix): one generator "ab" and a conditional D "b" on (x, y) pairs.

Randomness is `fold_in(key, step)`. A step whose loss or gradients are not finite
changes nothing but the `bad_steps` counter (the NaN guard).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from stylegan_ad import configs, losses
from stylegan_ad.models.generator import make_generator
from stylegan_ad.models.layers import apply_in
from stylegan_ad.registry import DISCRIMINATORS
from stylegan_ad.train import skeleton

PyTree = Any


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 scalar
  key: jax.Array           # uint32[2], the run's base key (raw key data)
  g_params: PyTree         # {"ab": ..., "ba": ...} (paired: {"ab": ...})
  d_params: PyTree         # {"b": ..., "a": ...}  (paired: {"b": ...})
  g_opt: PyTree
  d_opt: PyTree
  ema: PyTree              # EMA of g_params, for evaluation
  pool: PyTree             # {"a": [P,H,W,3], "b": [P,H,W,3]} past fakes
  pool_count: jax.Array    # int32, how many pool slots are filled
  bad_steps: jax.Array     # int32, consecutive non-finite steps (a record in the checkpoint; the
                           # stop is the skeleton's, from each step's `finite` flag)
  skipped: jax.Array       # int32, total non-finite steps skipped


@dataclasses.dataclass(frozen=True)
class Models:
  """Static parts: networks, optimizers and loss choices (not in the checkpoint)."""
  generator: Any
  discriminator: Any
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  paired: bool
  g_weights: tuple  # ((loss name, weight), ...), hashable so Models can be static
  adv_d: Callable
  adv_g: Callable
  r1: float
  ema_decay: float
  pool_size: int
  crop: int
  dtype: str = "float32"   # compute dtype of G and D (`model.dtype`; parameters stay float32)
  edge_promoting: bool = False   # `losses.edge_promoting`: D_b's fakes include edge-blurred style images
  restyle_noise: float = 0.0     # `losses.restyle_noise`: noise on the `restyle` term's input
  restyle_blur: float = 0.0      # `losses.restyle_blur`: its blur
  d_warmup: int = 0              # `train.d_warmup`: first steps in which only the discriminators learn
  diff_augment: tuple[str, ...] = ()  # `losses.diff_augment`: DiffAugment ops on every image D sees
  restyle_texture: float = 0.0   # `losses.restyle_texture`: photo texture on the `restyle` term's input
  restyle_fill: int = 0          # `losses.restyle_fill`: `losses.line_free`'s harmonic fill of the strokes


def make_models(config: ml_collections.ConfigDict) -> Models:
  m, t = config.model, config.train
  generator = make_generator(m.generator, ngf=m.ngf, n_blocks=m.n_blocks, depth=m.depth, upsample=m.upsample,
                             input_blur=float(m.get("input_blur", 0.0)))
  discriminator = DISCRIMINATORS.make(m.discriminator, ndf=m.ndf, n_layers=m.d_layers, num_scales=m.d_scales,
                                      spectral_norm=m.spectral_norm, highpass=m.d_highpass)
  # G's Adam counts its own updates, which begin after the D-only warm-up: its schedule
  # spans the GAN's steps; D's (counting every step) is flat through the warm-up, then G's
  warmup = int(t.get("d_warmup", 0))
  gan_steps = t.num_steps - warmup
  decay_start = int(gan_steps * t.decay_start)
  schedule = optax.join_schedules(
      [optax.constant_schedule(t.lr),
       optax.linear_schedule(t.lr, 0.0, max(gan_steps - decay_start, 1))], [decay_start])
  d_scale = float(t.get("d_lr_scale", 1.0))
  d_schedule = schedule if d_scale == 1.0 and not warmup else (
      lambda count: d_scale * schedule(jnp.maximum(count - warmup, 0)))
  adv_d, adv_g = losses.adversarial(config.losses.adversarial)
  return Models(generator, discriminator, optax.adam(schedule, b1=t.b1, b2=t.b2),
                optax.adam(d_schedule, b1=t.b1, b2=t.b2), t.mode == "paired",
                tuple(sorted((k, float(v)) for k, v in config.losses.generator.items())), adv_d, adv_g,
                float(config.losses.r1), float(t.ema_decay), int(t.pool_size),
                configs.train_crop(config), str(m.dtype), bool(config.losses.get("edge_promoting", False)),
                float(config.losses.get("restyle_noise", 0.0)), float(config.losses.get("restyle_blur", 0.0)),
                warmup, losses.diff_augment_policy(config.losses.get("diff_augment", "")),
                float(config.losses.get("restyle_texture", 0.0)), int(config.losses.get("restyle_fill", 0)))


def init_state(models: Models, key: jax.Array) -> TrainState:
  """Initial parameters and optimizer states (wrap in jit with out_shardings)."""
  c = models.crop
  image = jnp.zeros((1, c, c, 3), jnp.float32)
  d_input = jnp.zeros((1, c, c, 6), jnp.float32) if models.paired else image
  names_g = ("ab",) if models.paired else ("ab", "ba")
  names_d = ("b",) if models.paired else ("b", "a")
  keys = jax.random.split(key, 5)
  g_params = {n: models.generator.init(jax.random.fold_in(keys[0], i), image)["params"]
              for i, n in enumerate(names_g)}
  d_params = {n: models.discriminator.init(jax.random.fold_in(keys[1], i), d_input)["params"]
              for i, n in enumerate(names_d)}
  pool = {n: jnp.zeros((models.pool_size, c, c, 3), jnp.float32) for n in ("a", "b")}
  zero = jnp.zeros((), jnp.int32)
  return TrainState(step=zero, key=jax.random.key_data(keys[2]), g_params=g_params,
                    d_params=d_params, g_opt=models.g_tx.init(g_params), d_opt=models.d_tx.init(d_params),
                    ema=g_params, pool=pool, pool_count=zero, bad_steps=zero, skipped=zero)


def generate(models: Models, params: PyTree, x: jax.Array) -> jax.Array:
  return apply_in(models.generator, params, models.dtype, x)


def discriminate(models: Models, params: PyTree, y: jax.Array, x: jax.Array | None = None,
                 augment_key: jax.Array | None = None):
  """(logits list, features list); paired D is conditioned on the input x. With
  `augment_key` and `losses.diff_augment` set, D sees the (x, y) pair DiffAugmented."""
  inp = y if x is None else jnp.concatenate([x, y], axis=-1)
  if augment_key is not None and models.diff_augment:
    inp = losses.diff_augment(inp, augment_key, models.diff_augment)
  return apply_in(models.discriminator, params, models.dtype, inp)


def restyle_input(models: Models, real: jax.Array, key: jax.Array, photos: jax.Array | None = None) -> jax.Array:
  """The `restyle` term's input: style images without their lines (the strokes filled by
  `restyle_fill` rounds of `losses.line_free`'s harmonic fill), blurred by `restyle_blur`
  (a photo's soft gradients where the palette has steps), plus Gaussian noise of a
  standard deviation drawn per image up to `restyle_noise`, and plus the texture of the
  batch's photos (`photos`: each minus its 2 px Gaussian blur, the fine detail a photo has
  and a style image has not) scaled by a draw per image up to `restyle_texture`: G learns to
  leave that texture out while it draws the lines, so that it draws them on a photo's edges
  and not on its texture. The photos are unpaired with the style images (domain A's batch)."""
  free = losses.line_free(real, fill=models.restyle_fill)
  if models.restyle_blur:
    free = losses.gaussian_blur(free, models.restyle_blur)
  if models.restyle_texture and photos is not None:
    amp = jax.random.uniform(jax.random.fold_in(key, 7), (real.shape[0], 1, 1, 1), real.dtype, 0.0,
                             models.restyle_texture)
    free = jnp.clip(free + amp * (photos - losses.gaussian_blur(photos, 2.0)), -1.0, 1.0)
  if not models.restyle_noise:
    return free
  k_s, k_n = jax.random.split(key)
  sigma = jax.random.uniform(k_s, (real.shape[0], 1, 1, 1), real.dtype, 0.0, models.restyle_noise)
  return free + sigma * jax.random.normal(k_n, real.shape, real.dtype)


# the terms the reverse generator F (style -> photo) reads 0 on: it has no lines to draw
_STYLE_DIRECTION_ONLY = ("restyle", "restyle_l2")


def reverse_trained(models: Models) -> bool:
  """Whether F, the reverse generator, learns anything: unpaired mode with a term other than
  the style direction's own (`embedded.py:unpaired_lines` trains G alone; its F stays at
  its initialisation, and reports and scorers leave it out)."""
  return not models.paired and any(w for name, w in models.g_weights if name not in _STYLE_DIRECTION_ONLY)


def _unfiltered(models: Models) -> Models:
  """`models` with G's photo prefilter (`model.input_blur`) off: the `restyle` term's
  line-free style images are flat already, and the prefilter is there to make a photo look
  like them (its fine texture gone), not to blur them further (G would learn to sharpen
  its input back, and sharpen a photo's texture with it: docs/generator_ablation.md)."""
  if not getattr(models.generator, "input_blur", 0.0):
    return models
  return dataclasses.replace(models, generator=models.generator.clone(input_blur=0.0))


def _direction_context(models, g_params, d_params, x, real, gen, back, disc, target, key_needs, key=None):
  fake = generate(models, g_params[gen], x)
  cond = x if models.paired else None
  aug = (lambda i: None) if key is None else (lambda i: jax.random.fold_in(key, 1000 + i))
  fake_logits, fake_feats = discriminate(models, d_params[disc], fake, cond, aug(0))
  rec = generate(models, g_params[back], fake) if "rec" in key_needs else None
  idt = generate(models, g_params[gen], real) if "idt" in key_needs else None
  restyled = None
  if "restyled" in key_needs and gen == "ab":   # the style direction only
    restyled = generate(_unfiltered(models), g_params[gen], restyle_input(models, real, key, x))
  backtranslated = None
  if "backtranslated" in key_needs:
    backtranslated = generate(models, g_params[gen], jax.lax.stop_gradient(generate(models, g_params[back], real)))
  real_feats = None
  if "features" in key_needs:
    real_feats = discriminate(models, d_params[disc], real, cond, aug(1))[1]
  return losses.LossContext(x=x, real=real, fake=fake, fake_logits=fake_logits,
                            adversarial_g=models.adv_g, rec=rec, idt=idt, target=target,
                            fake_features=fake_feats, real_features=real_feats, restyled=restyled,
                            backtranslated=backtranslated, key=key)


def _needs(models: Models) -> set[str]:
  return {n for name, w in models.g_weights if w for n in losses.NEEDS[name]}


def g_step(models: Models, state: TrainState, batch: dict, key: jax.Array):
  """One generator update. batch: {"a", "b"} (unpaired) or {"a", "target", "b"} (paired).
  `key` draws the `restyle` term's noise and `patch_swd`'s projections only: without
  them the step is deterministic."""
  needs = _needs(models)

  def loss_fn(g_params):
    metrics = {}
    if models.paired:
      ctx = _direction_context(models, g_params, state.d_params, batch["a"], batch["b"], "ab",
                               None, "b", batch["target"], needs, key)
      total, terms = losses.generator_objective(dict(models.g_weights), ctx)
      metrics.update({f"g/{k}": v for k, v in terms.items()})
      fakes = {"b": ctx.fake}
    else:
      ab = _direction_context(models, g_params, state.d_params, batch["a"], batch["b"], "ab", "ba", "b",
                              batch.get("target"), needs, key)
      ba = _direction_context(models, g_params, state.d_params, batch["b"], batch["a"], "ba", "ab", "a",
                              None, needs, jax.random.fold_in(key, 1))
      t_ab, terms_ab = losses.generator_objective(dict(models.g_weights), ab)
      t_ba, terms_ba = losses.generator_objective(dict(models.g_weights), ba)
      total = t_ab + t_ba
      metrics.update({f"g_ab/{k}": v for k, v in terms_ab.items()})
      metrics.update({f"g_ba/{k}": v for k, v in terms_ba.items()})
      fakes = {"b": ab.fake, "a": ba.fake}
    return total, (metrics, fakes)

  (loss, (metrics, fakes)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g_params)
  ok = skeleton.all_finite(loss, grads)

  def update():
    updates, g_opt = models.g_tx.update(grads, state.g_opt, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    d = models.ema_decay
    ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, state.ema, g_params)
    return state.replace(g_params=g_params, g_opt=g_opt, ema=ema)

  new = skeleton.if_finite(ok, update, state)
  metrics.update({"g/loss": loss, "g/finite": ok.astype(jnp.float32)})
  return new, metrics, jax.tree.map(jax.lax.stop_gradient, fakes), ok


def _query_pool(pool: jax.Array, count: jax.Array, fakes: jax.Array, key: jax.Array):
  """CycleGAN's image pool, image by image: returns (images for D, pool, count)."""
  size = pool.shape[0]
  if size == 0:
    return fakes, pool, count

  def body(i, carry):
    pool, count, out = carry
    k = jax.random.fold_in(key, i)
    k_use, k_idx = jax.random.split(k)
    img = fakes[i]
    not_full = count < size
    use_old = jax.random.uniform(k_use) > 0.5
    slot = jnp.where(not_full, count, jax.random.randint(k_idx, (), 0, size))
    old = pool[slot]
    replace = not_full | use_old
    pool = jnp.where(replace, pool.at[slot].set(img), pool)
    chosen = jnp.where(~not_full & use_old, old, img)
    out = out.at[i].set(chosen)
    return pool, jnp.minimum(count + not_full.astype(count.dtype), size), out

  pool, count, out = jax.lax.fori_loop(0, fakes.shape[0], body, (pool, count, jnp.zeros_like(fakes)))
  return out, pool, count


def d_step(models: Models, state: TrainState, batch: dict, fakes: dict, key: jax.Array, use_pool: bool = True):
  """One discriminator update on real images and (pooled) fakes."""
  pool, count = dict(state.pool), state.pool_count
  used = {}
  for i, name in enumerate(sorted(fakes)):
    if not use_pool:
      used[name] = fakes[name]
      continue
    used[name], pool[name], count = _query_pool(pool[name], state.pool_count, fakes[name],
                                                jax.random.fold_in(key, i))

  def loss_fn(d_params):
    metrics, total = {}, 0.0
    pairs = ([("b", batch["target"], used["b"], batch["a"])] if models.paired else
             [("b", batch["b"], used["b"], None), ("a", batch["a"], used["a"], None)])
    for name, real, fake, cond in pairs:
      if name == "b" and models.edge_promoting and not models.paired:
        fake = jnp.concatenate([fake, losses.edge_smoothed(real)])   # CartoonGAN's edge-promoting term
      k_real, k_fake = jax.random.split(jax.random.fold_in(key, 100 + ord(name)))
      real_logits, _ = discriminate(models, d_params[name], real, cond, k_real)
      fake_logits, _ = discriminate(models, d_params[name], fake, cond, k_fake)
      loss = models.adv_d(real_logits, fake_logits)
      metrics[f"d_{name}/adversarial"] = loss
      if models.r1:
        fn = lambda y: discriminate(models, d_params[name], y, cond)[0]
        r1 = losses.r1_penalty(fn, real)
        metrics[f"d_{name}/r1"] = r1
        loss = loss + 0.5 * models.r1 * r1
      total = total + loss
    return total, metrics

  (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.d_params)
  ok = skeleton.all_finite(loss, grads)

  def update():
    updates, d_opt = models.d_tx.update(grads, state.d_opt, state.d_params)
    d_params = optax.apply_updates(state.d_params, updates)
    return state.replace(d_params=d_params, d_opt=d_opt, pool=pool, pool_count=count)

  new = skeleton.if_finite(ok, update, state)
  metrics.update({"d/loss": loss, "d/finite": ok.astype(jnp.float32)})
  return new, metrics, ok


def warmup_fakes(models: Models, batch: dict) -> dict:
  """The discriminators' fakes in the D-only warm-up (`train.d_warmup`): each domain's own
  images stand for the other's translation, so D_b learns to tell a photo from a style
  image (its ink and palette) before G's first step, and D_a the reverse; the image pool
  is left empty for G's outputs."""
  return {"b": batch["a"]} if models.paired else {"b": batch["a"], "a": batch["b"]}


def train_step(models: Models, state: TrainState, batch: dict, d_only: bool = False):
  """G step then D step, one compiled program; advances `step` (also on a skipped update).
  `d_only` (the first `train.d_warmup` steps; a program of its own: XLA:CPU ran a
  conditional of the two at nearly twice the GAN step's time): only D learns, its fakes
  `warmup_fakes`; G, its optimizer and its EMA stay as they are, and G's metrics read 0."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
  k_g, k_d = jax.random.split(key)

  def gan(state):
    state, g_metrics, fakes, g_ok = g_step(models, state, batch, k_g)
    state, d_metrics, d_ok = d_step(models, state, batch, fakes, k_d)
    return state, {**g_metrics, **d_metrics}, g_ok & d_ok

  if d_only:
    shapes = jax.eval_shape(gan, state)[1]
    state, d_metrics, ok = d_step(models, state, batch, warmup_fakes(models, batch), k_d, use_pool=False)
    metrics = {k: d_metrics.get(k, jnp.zeros(v.shape, v.dtype)) for k, v in shapes.items()}
  else:
    state, metrics, ok = gan(state)
  bad = jnp.where(ok, 0, state.bad_steps + 1)
  state = state.replace(step=state.step + 1, bad_steps=bad,
                        skipped=state.skipped + (~ok).astype(jnp.int32))
  return state, {**metrics, "bad_steps": bad, "finite": ok}
