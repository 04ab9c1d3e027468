"""Where the identity's error against the cartoon style lies: S taken apart, no network.

  python scripts/style_parts.py

On the embedded test crops, PSNR to the true S(x) of: the identity x; S's bilateral
smoothing alone; smoothing and palette (no ink); x with S's ink lines alone; x inked by
S's rule on its own unsmoothed luma; smoothing with the ink (no palette); and x's block
means with S's detail above them (what a generator held to x at coarse scale could
reach at best) over 4, 8 and 16 px blocks. Then, on the train style crops (domain B): the
line-free images of `losses.restyle`, and the same inked again by S's rule; and the share
of ink-stroke pixels in the style crops and in the test crops' S(x).

  python scripts/style_parts.py --d_row=unpaired_lowpass16 --out=runs/ablation

also asks an unpaired ablation row's style discriminator D_b (the row of
`scripts/ablate_generator.py` in OUT, trained there first if it is not) which of these it
takes for a style image: its mean logit (LSGAN: 1 real, 0 fake) on the train style
crops, the test crops x, their true S(x), and x with S's ink or palette alone; and how far
the row's reverse generator F moves the style crops (PSNR of F(y) to y).

  python scripts/style_parts.py --fit_d=3000 --fit_d_ndf=32
  python scripts/style_parts.py --fit_d=2000 --fit_d_row=unpaired_shuffled_convnet_lowpass16

trains a row's style discriminator alone (`unpaired_shuffled_d1_lowpass16`'s unless
--fit_d_row names another) for that many steps (the warm-up's step of `train.d_warmup`:
no G, the photos its fakes) and asks it the same of the test crops: their mean logits,
how many it classes right (threshold halfway between the two targets) and how often it
ranks S(x) above x. Then whether its gradient points to the style: the test crops
themselves are optimised as G's would be (Adam on the pixels, `--ascent` steps, by the
row's generator objective: its terms that need only x and D, the adversarial term and
the holds), and the PSNR to S(x) and the cosine
of the change with S(x) - x are reported (what a G could reach whose only style signal is
D's gradient). Writes the figures to --fit_d_json if given.

  python scripts/style_parts.py --ink_row=unpaired_shuffled_restyle_l2_1000_texture2_noadv --out=runs/ablation

splits a row's error (trained first if it is not) at S's ink: the squared error of G(x)
and of x to S(x) on the pixels S inks and on the rest, how far each darkens x there, and
the output with S's ink added (what it would score if only the lines were missing).

  python scripts/style_parts.py --nn_patches=5

a patch analogy with no network and no D (about 5 minutes on 2 cores): every test pixel's 5x5 patch
is replaced by the style patch (of the shuffled split's domain B, every train S(x), at a
stride of 4) nearest to it by a key, and the overlapping patches averaged: the key is the
style patch itself, or its `losses.line_free` version with x and it both blurred by 1 px
(a photo has no ink lines and soft edges). The nearest style patch is what "move x as
little as the style allows" asks for; its PSNR to S(x) says whether that places the ink,
and the same output inked by S's rule on its own luma whether it keeps the edges ink needs.
"""
from __future__ import annotations

import os
import sys

import jax.numpy as jnp
import numpy as np
from absl import app, flags
from scipy import ndimage

from stylegan_ad import losses, metrics
from stylegan_ad.data import sources, styles

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ablate_generator  # noqa: E402  (its --out and --style flags name the row's folder)

_D_ROW = flags.DEFINE_string("d_row", None, "an unpaired row of scripts/ablate_generator.py whose D_b to ask")
_FIT_D = flags.DEFINE_integer("fit_d", 0, "steps of a style discriminator fitted alone (no G: the photos are its fakes)")
_FIT_D_NDF = flags.DEFINE_integer("fit_d_ndf", None, "its width (model.ndf; default the row's)")
_FIT_D_ROW = flags.DEFINE_string("fit_d_row", "unpaired_shuffled_d1_lowpass16", "the unpaired row whose D to fit")
_ASCENT = flags.DEFINE_integer("ascent", 300, "Adam steps on the test crops' pixels against the fitted D")
_FIT_D_JSON = flags.DEFINE_string("fit_d_json", None, "write the fitted D's figures here (JSON)")
_INK_ROW = flags.DEFINE_string("ink_row", None, "a row of scripts/ablate_generator.py whose G's error to split at S's ink")
_NN_PATCHES = flags.DEFINE_integer("nn_patches", 0, "side of the patches of the nearest-style-patch analogy (0: off)")


def _smooth(x):
  return styles._bilateral(styles._bilateral(x))


def _ink_raw(x):
  """S's ink rule on x's own luma, unsmoothed: what a local operator could draw from x alone."""
  return np.clip((styles._edges(styles._luma(x)) - 0.6) / 0.4, 0.0, 1.0)[..., None]


def _ink(x):
  return _ink_raw(_smooth(x))


def _inked(x, ink):
  """x darkened by an ink strength map as S darkens (styles.cartoon: by 0.85 at full ink)."""
  return x * (1 - 0.85 * ink)


def _palette(x):
  s = _smooth(x)
  return 0.75 * np.round(s * 5) / 5 + 0.25 * s


def _coarse_x_fine_s(block: int):
  def part(x):
    t = styles.cartoon(np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)).astype(np.float32) / 255
    mean = lambda a: ndimage.uniform_filter(a, (block, block, 1))
    return mean(x) + t - mean(t)
  return part


PARTS = {
    "identity": lambda x: x,
    "smoothing alone": _smooth,
    "smoothing and palette, no ink": _palette,
    "x with S's ink alone": lambda x: _inked(x, _ink(x)),
    "x inked at its own luma edges (S's rule without the smoothing)": lambda x: _inked(x, _ink_raw(x)),
    "smoothing and ink, no palette": lambda x: _inked(_smooth(x), _ink(x)),
    **{f"x's {b}x{b} block means + S's detail": _coarse_x_fine_s(b) for b in (4, 8, 16)},
}


def main(argv):
  del argv
  ds = sources.load("embedded:cartoon", crop_size=64)
  test = ds.test_a
  xs = [np.asarray(x, np.float32) / 255 for x in test.images]
  t = np.stack([np.asarray(v, np.float32) / 255 for v in test.targets]) * 2 - 1
  print("| part of S | PSNR to S(x), test crops (dB) |\n|---|---|")
  for name, fn in PARTS.items():
    y = np.stack([fn(x) for x in xs]) * 2 - 1
    print(f"| {name} | {float(np.mean(metrics.psnr_np(y, t))):.2f} |")
  # the style domain's own images without their lines (what `losses.restyle` asks G to redraw)
  ys = np.stack([np.asarray(v, np.float32) / 255 for v in ds.train_b.images]) * 2 - 1
  free = np.asarray(losses.line_free(jnp.asarray(ys)))
  inked = np.stack([_inked(u, _ink_raw(u)) for u in (free + 1) / 2]) * 2 - 1
  print("\n| train style crops y | PSNR to y (dB) |\n|---|---|")
  print(f"| line_free(y) | {float(np.mean(metrics.psnr_np(free, ys))):.2f} |")
  print(f"| line_free(y) inked by S's rule on its own luma | {float(np.mean(metrics.psnr_np(inked, ys))):.2f} |")
  lifted = lambda v: float(np.mean(np.any(np.asarray(losses.line_free(jnp.asarray(v))) != v, axis=-1)))
  print(f"\nshare of pixels that are ink strokes (`losses.line_free` lifts them): "
        f"train style crops {lifted(ys):.1%}, test crops' S(x) {lifted(t):.1%}")
  if _D_ROW.value:
    _ask_discriminator(_D_ROW.value, ys, np.stack(xs) * 2 - 1, t)
  if _FIT_D.value:
    _fit_discriminator(ds, np.stack(xs) * 2 - 1, t)
  if _INK_ROW.value:
    _ink_split(_INK_ROW.value, np.stack(xs) * 2 - 1, t)
  if _NN_PATCHES.value:
    _nearest_style_patches(ds, np.stack(xs), (t + 1) / 2, _NN_PATCHES.value)


def _patches(images: np.ndarray, p: int, stride: int = 1) -> np.ndarray:
  n, h, w, c = images.shape
  out = [images[:, i:h - p + 1 + i:stride, j:w - p + 1 + j:stride] for i in range(p) for j in range(p)]
  return np.stack(out, -2).reshape(n, (h - p) // stride + 1, (w - p) // stride + 1, p * p * c)


def _nearest_style_patches(ds, xs: np.ndarray, t: np.ndarray, p: int, stride: int = 4, dims: int = 24) -> None:
  """x rebuilt from the style domain's patches nearest to its own ([0, 1] images)."""
  import jax
  style = np.stack([np.asarray(v, np.float32) / 255 for v in ds.train_pairs.targets])
  pad = p // 2
  xp = np.pad(xs, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
  values = _patches(style, p, stride).reshape(-1, p * p * 3)
  blur = lambda a: ndimage.gaussian_filter(a, (0, 1, 1, 0))
  free = (np.asarray(losses.line_free(jnp.asarray(style * 2 - 1))) + 1) / 2
  print(f"\n| {p}x{p} patches of x replaced by the nearest of {len(values)} style patches, by | "
        f"PSNR to S(x), test crops (dB) | mean error R/G/B | the same inked by S's rule on its own luma (dB) |"
        f"\n|---|---|---|---|")
  for name, keys, queries in (("the style patch itself", values, xp),
                              ("its line-free version, both blurred by 1 px",
                               _patches(blur(free), p, stride).reshape(-1, p * p * 3), blur(xp))):
    mean = keys.mean(0)
    basis = np.linalg.svd(keys[::7] - mean, full_matrices=False)[2][:dims].T   # PCA: 24 of 75 dimensions
    k = jnp.asarray((keys - mean) @ basis)
    nearest = jax.jit(lambda q: jnp.argmin(jnp.sum(k * k, -1)[None] - 2 * q @ k.T, axis=-1))
    q = (_patches(queries, p).reshape(-1, p * p * 3) - mean) @ basis
    idx = np.concatenate([np.asarray(nearest(jnp.asarray(q[i:i + 1024], jnp.float32)))
                          for i in range(0, len(q), 1024)])
    pieces = values[idx].reshape(*xs.shape[:3], p, p, 3)
    acc, count = np.zeros(xp.shape), np.zeros(xp.shape[:3] + (1,))
    for i in range(p):
      for j in range(p):
        acc[:, i:i + xs.shape[1], j:j + xs.shape[2]] += pieces[:, :, :, i, j]
        count[:, i:i + xs.shape[1], j:j + xs.shape[2]] += 1
    y = (acc / count)[:, pad:pad + xs.shape[1], pad:pad + xs.shape[2]]
    drift = " / ".join(f"{v:+.3f}" for v in 2 * (y - t).mean(axis=(0, 1, 2)))
    inked = np.stack([_inked(u, _ink_raw(u)) for u in y.astype(np.float32)])
    psnr = lambda v: float(np.mean(metrics.psnr_np(v * 2 - 1, t * 2 - 1)))
    print(f"| {name} | {psnr(y):.2f} | {drift} | {psnr(inked):.2f} |")


def _fit_discriminator(ds, xs: np.ndarray, t: np.ndarray) -> None:
  """A row's style discriminator trained by the warm-up's own step (`train.d_warmup`:
  the photos its fakes, DiffAugment as the row sets it) on that row's data for --fit_d
  steps: does it tell the unseen test crops from their S(x), and does its gradient, the
  only style signal an unpaired G gets, point from x toward S(x)?"""
  import json

  import jax
  import optax
  from stylegan_ad.train import loop, steps
  row = _FIT_D_ROW.value
  c = ablate_generator._config(row, "cartoon")
  if c.train.mode == "paired":
    raise app.UsageError(f"--fit_d_row={row}: a paired row's D is conditioned on x; name an unpaired row")
  if _FIT_D_NDF.value:
    c.model.ndf = _FIT_D_NDF.value
  c.train.d_warmup, c.train.num_steps = _FIT_D.value, _FIT_D.value + 1
  m = steps.make_models(c)
  state = steps.init_state(m, jax.random.key(c.seed))
  pipe = loop.make_pipeline(c, ds)
  step = jax.jit(lambda s, b: steps.train_step(m, s, b, d_only=True)[0])
  for _ in range(_FIT_D.value):
    state = step(state, {k: jnp.asarray(v) for k, v in pipe.next_local().items()})
  d = jax.jit(lambda v: jnp.mean(jnp.stack([l.mean(axis=(1, 2, 3)) for l in
                                            steps.discriminate(m, state.d_params["b"], v)[0]]), axis=0))
  part = lambda name: np.stack([PARTS[name](u) for u in (xs + 1) / 2]) * 2 - 1
  mid = 0.5 if c.losses.adversarial == "lsgan" else 0.0   # LSGAN's targets 1 and 0; the others' sign
  print(f"\n| test crops, to `{row}`'s D_b (width {c.model.ndf}) after {_FIT_D.value} warm-up steps "
        f"| mean logit (above {mid:g}: style image) |\n|---|---|")
  out = {"row": row, "ndf": c.model.ndf, "steps": _FIT_D.value, "mean_logit": {}}
  for name, v in {"x": xs, "S(x)": t, "x with S's ink alone": part("x with S's ink alone"),
                  "x smoothed and quantised, no ink": part("smoothing and palette, no ink")}.items():
    out["mean_logit"][name] = float(jnp.mean(d(jnp.asarray(v, jnp.float32))))
    print(f"| {name} | {out['mean_logit'][name]:+.3f} |")
  lx, lt = np.asarray(d(jnp.asarray(xs, jnp.float32))), np.asarray(d(jnp.asarray(t, jnp.float32)))
  out["accuracy"] = float(((lx < mid).mean() + (lt > mid).mean()) / 2)
  out["s_ranked_above_x"] = float((lt > lx).mean())
  print(f"\nclassed right: {out['accuracy']:.0%} of the test crops and their S(x); "
        f"S(x) ranked above x: {out['s_ranked_above_x']:.0%}")
  # G's view: the test crops' pixels optimised by the row's own generator objective, its
  # terms that judge an output by x and D alone (the adversarial term and the holds)
  x0, target = jnp.asarray(xs, jnp.float32), jnp.asarray(t, jnp.float32)
  weights = {k: float(w) for k, w in c.losses.generator.items() if w and set(losses.NEEDS[k]) <= {"key"}}

  def objective(v, key):   # D sees v DiffAugmented where the row sets it, as G's output would be
    logits = steps.discriminate(m, state.d_params["b"], v, augment_key=key)[0]
    ctx = losses.LossContext(x=x0, real=x0, fake=v, fake_logits=logits, adversarial_g=m.adv_g, key=key)
    return losses.generator_objective(weights, ctx)[0]

  grad = jax.jit(jax.grad(objective))
  tx = optax.adam(0.01)
  v, opt = x0, tx.init(x0)
  for i in range(_ASCENT.value):
    updates, opt = tx.update(grad(v, jax.random.key(i)), opt, v)
    v = jnp.clip(optax.apply_updates(v, updates), -1.0, 1.0)
  change, wanted = np.asarray(v - x0).ravel(), np.asarray(target - x0).ravel()
  out["ascent"] = {"steps": _ASCENT.value, "objective": weights,
                   "psnr_before": float(np.mean(metrics.psnr_np(np.asarray(x0), t))),
                   "psnr_after": float(np.mean(metrics.psnr_np(np.asarray(v), t))),
                   "cosine_with_s_minus_x": float(change @ wanted / (np.linalg.norm(change) * np.linalg.norm(wanted) + 1e-12)),
                   "mean_logit_after": float(jnp.mean(d(v)))}
  a = out["ascent"]
  print(f"test crops optimised against D_b for {a['steps']} steps ({weights}): PSNR to S(x) "
        f"{a['psnr_before']:.2f} -> {a['psnr_after']:.2f} dB, cosine of the change with S(x) - x "
        f"{a['cosine_with_s_minus_x']:+.3f}, mean logit {a['mean_logit_after']:+.3f}")
  if _FIT_D_JSON.value:
    with open(_FIT_D_JSON.value, "w") as f:
      json.dump(out, f, indent=2)


def _ask_discriminator(row: str, ys: np.ndarray, xs: np.ndarray, t: np.ndarray) -> None:
  from stylegan_ad.train import loop, steps
  style = ablate_generator._STYLE.value
  run = loop.train(ablate_generator._config(row, style), os.path.join(ablate_generator._OUT.value, style, row))
  if run.models.paired:
    raise app.UsageError(f"--d_row={row}: a paired row's D is conditioned on x; name an unpaired row")
  part = lambda name: np.stack([PARTS[name](u) for u in (xs + 1) / 2]) * 2 - 1
  sets = {"train style crops y (domain B)": ys, "test crops x": xs, "their S(x)": t,
          "x with S's ink alone": part("x with S's ink alone"),
          "x smoothed and quantised, no ink": part("smoothing and palette, no ink"),
          "G(x), the row's generator": loop.stylize(run.models, run.state.ema["ab"], xs)}
  back = loop.stylize(run.models, run.state.ema["ba"], ys)
  print(f"\nthe row's reverse generator F on the train style crops: F(y) is "
        f"{float(np.mean(metrics.psnr_np(back, ys))):.2f} dB from y")
  print(f"\n| images, to D_b of `{row}` | mean logit (1: style image, 0: G's output) |\n|---|---|")
  for name, v in sets.items():
    logits = steps.discriminate(run.models, run.state.d_params["b"], jnp.asarray(v, jnp.float32))[0]
    print(f"| {name} | {np.mean([float(jnp.mean(l)) for l in logits]):+.3f} |")


def _ink_split(row: str, xs: np.ndarray, t: np.ndarray) -> None:
  """Where a row's G gains and loses against the identity: its squared error to S(x) on the
  pixels S inks (its own rule's strength > 0.5) and on the rest, how far it darkens each,
  and its output with S's ink added (what it would score if only the lines were missing)."""
  from stylegan_ad.train import loop
  style = ablate_generator._STYLE.value
  run = loop.train(ablate_generator._config(row, style), os.path.join(ablate_generator._OUT.value, style, row))
  ink = np.stack([_ink(u) for u in (xs + 1) / 2])
  lines = ink[..., 0] > 0.5
  print(f"\n| test crops, S's ink pixels {lines.mean():.1%} | PSNR to S(x) (dB) | squared error: on ink / "
        f"elsewhere | share of it on ink | darkening of x: on ink / elsewhere | with S's ink added (dB) |"
        f"\n|---|---|---|---|---|---|")
  for name, y in (("identity x", xs), (f"G(x), `{row}`", loop.stylize(run.models, run.state.ema["ab"], xs))):
    se = np.mean((y - t) ** 2, axis=-1)
    dark = np.mean(xs - y, axis=-1)
    inked = _inked((y + 1) / 2, ink) * 2 - 1
    print(f"| {name} | {float(np.mean(metrics.psnr_np(y, t))):.2f} | {se[lines].mean():.4f} / "
          f"{se[~lines].mean():.4f} | {se[lines].sum() / se.sum():.1%} | {dark[lines].mean():+.3f} / "
          f"{dark[~lines].mean():+.3f} | {float(np.mean(metrics.psnr_np(inked, t))):.2f} |")
  dark = np.mean(xs - t, axis=-1)
  print(f"| the true S(x) | | | | {dark[lines].mean():+.3f} / {dark[~lines].mean():+.3f} | |")


if __name__ == "__main__":
  app.run(main)
