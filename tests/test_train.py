import dataclasses
import functools
import json
import os

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import embedded as embedded_config
from param_compare import assert_layouts_agree
from stylegan_ad import configs, losses, parallel
from stylegan_ad.errors import ConfigError
from stylegan_ad.train import aux_trainer, loop, skeleton, steps


def tiny_config(data_dir, **overrides):
  c = embedded_config.get_config("tiny")
  c.data.data_dir = data_dir
  for k, v in overrides.items():
    node = c
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return c


def _run_steps(config, dataset, mesh, n):
  models = steps.make_models(config)
  rep = parallel.replicated(mesh)
  state = skeleton.run_init(functools.partial(steps.init_state, models), jax.random.key(config.seed), rep)
  step = jax.jit(functools.partial(steps.train_step, models),
                 in_shardings=(rep, parallel.data_sharding(mesh)), out_shardings=(rep, rep))
  pipe = loop.make_pipeline(config, dataset)
  for _ in range(n):
    state, _ = step(state, pipe.next_global(mesh))
  return jax.device_get(state)


def test_one_device_and_four_devices_agree(data_dir, dataset):
  config = tiny_config(data_dir)
  one = _run_steps(config, dataset, parallel.make_mesh(jax.devices()[:1]), 2)
  four = _run_steps(config, dataset, parallel.make_mesh(jax.devices()[:4]), 2)
  for name in ("g_params", "d_params"):
    assert_layouts_agree(jax.tree.leaves(getattr(one, name)), jax.tree.leaves(getattr(four, name)),
                         lr=config.train.lr, steps=2)
  assert int(one.step) == 2 and int(one.pool_count) == 4


def test_nan_batch_is_skipped(data_dir, dataset):
  config = tiny_config(data_dir)
  models = steps.make_models(config)
  state = skeleton.run_init(functools.partial(steps.init_state, models), jax.random.key(0), None)
  pipe = loop.make_pipeline(config, dataset)
  batch = {k: jnp.asarray(v) for k, v in pipe.next_local().items()}
  batch["a"] = batch["a"].at[0, 0, 0, 0].set(jnp.nan)
  new, m = jax.jit(functools.partial(steps.train_step, models))(state, batch)
  assert int(new.step) == 1 and int(new.bad_steps) == 1 and int(new.skipped) == 1
  for a, b in zip(jax.tree.leaves((state.g_params, state.d_params, state.g_opt, state.d_opt, state.pool)),
                  jax.tree.leaves((new.g_params, new.d_params, new.g_opt, new.d_opt, new.pool))):
    np.testing.assert_array_equal(a, b)
  good = {k: jnp.asarray(v) for k, v in pipe.next_local().items()}
  newer, _ = jax.jit(functools.partial(steps.train_step, models))(new, good)
  assert int(newer.bad_steps) == 0 and int(newer.skipped) == 1


def test_edge_promoting_adds_edge_blurred_style_images_to_the_discriminators_fakes(data_dir, dataset):
  config = tiny_config(data_dir, **{"losses.edge_promoting": True, "train.pool_size": 0})
  models = steps.make_models(config)
  state = skeleton.run_init(functools.partial(steps.init_state, models), jax.random.key(0), None)
  batch = {k: jnp.asarray(v) for k, v in loop.make_pipeline(config, dataset).next_local().items()}
  _, _, fakes, _ = steps.g_step(models, state, batch, jax.random.key(1))
  _, m, _ = steps.d_step(models, state, batch, fakes, jax.random.key(2))
  d = lambda y: steps.discriminate(models, state.d_params["b"], y)[0]
  expected = models.adv_d(d(batch["b"]), d(jnp.concatenate([fakes["b"], losses.edge_smoothed(batch["b"])])))
  np.testing.assert_allclose(m["d_b/adversarial"], expected, rtol=1e-5)
  plain = steps.make_models(tiny_config(data_dir, **{"train.pool_size": 0}))
  _, m0, _ = steps.d_step(plain, state, batch, fakes, jax.random.key(2))
  np.testing.assert_allclose(m0["d_b/adversarial"], models.adv_d(d(batch["b"]), d(fakes["b"])), rtol=1e-5)
  np.testing.assert_allclose(m0["d_a/adversarial"], m["d_a/adversarial"], rtol=1e-6)   # D_a: unchanged


def test_diff_augment_shows_the_discriminators_augmented_images_in_both_steps(data_dir, dataset):
  config = tiny_config(data_dir, **{"losses.diff_augment": "translation,cutout", "train.pool_size": 0})
  models = steps.make_models(config)
  assert models.diff_augment == ("translation", "cutout")
  plain = steps.make_models(tiny_config(data_dir, **{"train.pool_size": 0}))
  state = skeleton.run_init(functools.partial(steps.init_state, models), jax.random.key(0), None)
  batch = {k: jnp.asarray(v) for k, v in loop.make_pipeline(config, dataset).next_local().items()}
  key = jax.random.key(1)
  _, m, fakes, _ = steps.g_step(models, state, batch, key)
  _, m0, fakes0, _ = steps.g_step(plain, state, batch, key)
  np.testing.assert_array_equal(fakes["b"], fakes0["b"])      # G's output itself is not augmented
  # G's adversarial term: D_b on its fakes, each drawn its own shift and cutout
  d = lambda y: steps.discriminate(models, state.d_params["b"], y)[0]
  seen = losses.diff_augment(fakes["b"], jax.random.fold_in(key, 1000), models.diff_augment)
  np.testing.assert_allclose(m["g_ab/adversarial"], models.adv_g(d(seen)), rtol=1e-5)
  assert abs(float(m["g_ab/adversarial"]) - float(m0["g_ab/adversarial"])) > 1e-6
  # D's step: reals and fakes augmented with keys of their own
  _, md, _ = steps.d_step(models, state, batch, fakes, jax.random.key(2))
  k_real, k_fake = jax.random.split(jax.random.fold_in(jax.random.key(2), 100 + ord("b")))
  expected = models.adv_d(d(losses.diff_augment(batch["b"], k_real, models.diff_augment)),
                          d(losses.diff_augment(fakes["b"], k_fake, models.diff_augment)))
  np.testing.assert_allclose(md["d_b/adversarial"], expected, rtol=1e-5)
  _, md0, _ = steps.d_step(plain, state, batch, fakes, jax.random.key(2))
  np.testing.assert_allclose(md0["d_b/adversarial"], plain.adv_d(d(batch["b"]), d(fakes["b"])), rtol=1e-5)


def test_restyle_term_runs_the_style_generator_on_line_free_style_images(data_dir, dataset):
  config = tiny_config(data_dir, **{"losses.generator": {"adversarial": 1.0, "restyle": 10.0}})
  models = steps.make_models(config)
  state = skeleton.run_init(functools.partial(steps.init_state, models), jax.random.key(0), None)
  batch = {k: jnp.asarray(v) for k, v in loop.make_pipeline(config, dataset).next_local().items()}
  _, m, _, _ = steps.g_step(models, state, batch, jax.random.key(1))
  restyled = steps.generate(models, state.g_params["ab"], losses.line_free(batch["b"]))
  np.testing.assert_allclose(m["g_ab/restyle"], jnp.mean(jnp.abs(restyled - batch["b"])), rtol=1e-5)
  assert float(m["g_ba/restyle"]) == 0.0         # F (style -> photo) has no lines to draw
  blurred = steps.make_models(tiny_config(data_dir, **{"losses.restyle_blur": 1.0}))
  np.testing.assert_allclose(steps.restyle_input(blurred, batch["b"], jax.random.key(0)),
                             losses.gaussian_blur(losses.line_free(batch["b"]), 1.0))
  filled = steps.make_models(tiny_config(data_dir, **{"losses.restyle_fill": 10}))
  got_filled = np.asarray(steps.restyle_input(filled, batch["b"], jax.random.key(0)))
  np.testing.assert_allclose(got_filled, losses.line_free(batch["b"], fill=10))
  assert np.abs(got_filled - np.asarray(losses.line_free(batch["b"]))).max() > 0.05   # not the closing's
  noisy = steps.make_models(tiny_config(data_dir, **{"losses.restyle_noise": 0.1}))
  noise = np.asarray(steps.restyle_input(noisy, batch["b"], jax.random.key(0)) - losses.line_free(batch["b"]))
  sd = noise.reshape(len(noise), -1).std(axis=1)
  assert np.all(sd < 0.11) and sd.max() > 2 * sd.min()   # each image its own noise level, at most 0.1
  # the photos' texture (each minus its 2 px blur), each style image its own share of it, up to 2
  textured = steps.make_models(tiny_config(data_dir, **{"losses.restyle_texture": 2.0}))
  free, photos = losses.line_free(batch["b"]), batch["a"]
  texture = np.asarray(photos - losses.gaussian_blur(photos, 2.0))
  got = np.asarray(steps.restyle_input(textured, batch["b"], jax.random.key(0), photos))
  inside = np.abs(np.asarray(free) + 2.0 * texture) < 0.99   # pixels the clip to [-1, 1] cannot touch
  amp = [np.sum(((g - f) * t)[m]) / np.sum((t * t)[m]) for g, f, t, m in zip(got, np.asarray(free), texture, inside)]
  np.testing.assert_allclose(got, np.clip(np.asarray(free) + np.reshape(amp, (-1, 1, 1, 1)) * texture, -1, 1),
                             atol=1e-5)
  assert all(0 <= a <= 2 for a in amp) and max(amp) - min(amp) > 0.1
  # and the style generator's term sees that input: the photo batch of the step is the texture's source
  config_t = tiny_config(data_dir, **{"losses.generator": {"restyle_l2": 10.0}, "losses.restyle_texture": 2.0})
  models_t = steps.make_models(config_t)
  _, mt, _, _ = steps.g_step(models_t, state, batch, jax.random.key(1))
  restyled_t = steps.generate(models_t, state.g_params["ab"], steps.restyle_input(models_t, batch["b"],
                                                                                   jax.random.key(1), batch["a"]))
  np.testing.assert_allclose(mt["g_ab/restyle_l2"], jnp.mean((restyled_t - batch["b"]) ** 2), rtol=1e-4)
  # G's photo prefilter (`model.input_blur`) is for photos: the line-free style images reach G unblurred
  config_p = tiny_config(data_dir, **{"model.generator": "residual_unet", "model.depth": 2, "model.input_blur": 1.0,
                                      "losses.generator": {"restyle_l2": 10.0}})
  models_p = steps.make_models(config_p)
  state_p = skeleton.run_init(functools.partial(steps.init_state, models_p), jax.random.key(0), None)
  _, mp, _, _ = steps.g_step(models_p, state_p, batch, jax.random.key(1))
  free, params_p = losses.line_free(batch["b"]), state_p.g_params["ab"]
  sharp = dataclasses.replace(models_p, generator=models_p.generator.clone(input_blur=0.0))
  unblurred = float(jnp.mean((steps.generate(sharp, params_p, free) - batch["b"]) ** 2))
  np.testing.assert_allclose(mp["g_ab/restyle_l2"], unblurred, rtol=1e-4)
  blurred = float(jnp.mean((steps.generate(models_p, params_p, free) - batch["b"]) ** 2))
  assert abs(blurred - unblurred) > 0.01 * unblurred


def test_backtranslate_trains_each_generator_on_the_other_ones_pseudo_pairs(data_dir, dataset):
  config = tiny_config(data_dir, **{"losses.generator": {"backtranslate": 1.0}})
  models = steps.make_models(config)
  state = skeleton.run_init(functools.partial(steps.init_state, models), jax.random.key(0), None)
  batch = {k: jnp.asarray(v) for k, v in loop.make_pipeline(config, dataset).next_local().items()}
  _, m, _, _ = steps.g_step(models, state, batch, jax.random.key(1))
  g = lambda name, v: steps.generate(models, state.g_params[name], v)
  np.testing.assert_allclose(m["g_ab/backtranslate"], jnp.mean(jnp.abs(g("ab", g("ba", batch["b"])) - batch["b"])),
                             rtol=1e-5)
  np.testing.assert_allclose(m["g_ba/backtranslate"], jnp.mean(jnp.abs(g("ba", g("ab", batch["a"])) - batch["a"])),
                             rtol=1e-5)
  # the gradient reaches the second map only: G's through |G(F(y)) - y|, not F's through F(y)
  # (a cycle term would train both)
  term = lambda p: losses.backtranslate(steps._direction_context(
      models, p, state.d_params, batch["a"], batch["b"], "ab", "ba", "b", None, {"backtranslated"}))
  grads = jax.grad(term)(state.g_params)
  assert all(float(jnp.abs(v).max()) == 0 for v in jax.tree.leaves(grads["ba"]))
  assert any(float(jnp.abs(v).max()) > 0 for v in jax.tree.leaves(grads["ab"]))


@pytest.mark.parametrize("every", [1, 100])
def test_diverging_run_stops_with_clear_message(data_dir, tmp_path, monkeypatch, every):
  """every=1: each step is read before its checkpoint; every=100: a step's skip counter is
  read once the next step is dispatched (no sync per step), and the same step is named."""
  config = tiny_config(data_dir, **{"train.max_bad_steps": 2, "checkpoint.every": every, "log.every": every})
  real = loop.make_pipeline

  def poisoned(config, dataset):
    pipe = real(config, dataset)
    orig = pipe.local_arrays
    pipe.local_arrays = lambda step: {k: (v * np.nan if step >= 2 else v) for k, v in orig(step).items()}
    return pipe

  monkeypatch.setattr(loop, "make_pipeline", poisoned)
  with pytest.raises(skeleton.TrainingDiverged, match="stopped at step 4: 2 consecutive non-finite steps"):
    loop.train(config, str(tmp_path / "run"))
  if every > 1:
    return
  ckpts = sorted(int(d) for d in os.listdir(tmp_path / "run" / "checkpoints") if d.isdigit())
  assert ckpts[-1] == 3  # step 3 was skipped but saved unchanged; step 4 stopped the run


def test_auxiliary_stage_skips_non_finite_steps_and_stops_on_the_same_skeleton(tmp_path):
  """The detector's and restorer's loop is the GAN's: a non-finite step changes nothing,
  a good one resets the count, and train.max_bad_steps in a row stop the stage with its
  last good checkpoint intact."""
  import flax.linen as nn
  import optax
  rows = np.ones((8, 4), np.float32)

  def loss_fn(params, b, key):
    del key
    return jnp.mean((b["x"] @ params["kernel"] - 1.0) ** 2 * b["scale"][:, None]), {}

  def fit(workdir, scale, num_steps, max_bad_steps=2):
    return aux_trainer.fit("probe", str(workdir), model=nn.Dense(1), init_inputs=(jnp.zeros((1, 4)),),
                           tx=optax.sgd(0.1), loss_fn=loss_fn, arrays={"x": rows, "scale": scale}, batch=4,
                           num_steps=num_steps, seed=0, mesh=parallel.make_mesh(), log_every=1,
                           checkpoint_every=1, max_bad_steps=max_bad_steps)

  good = fit(tmp_path / "good", np.ones(8, np.float32), 3)
  # one row of eight poisoned: most batches draw it (skipped), a few do not (trained)
  mixed = np.ones(8, np.float32)
  mixed[0] = np.nan
  with pytest.raises(skeleton.TrainingDiverged, match=r"probe training stopped at step \d+: 2 consecutive"):
    fit(tmp_path / "bad", np.full(8, np.nan, np.float32), 10)
  saved = sorted(int(d) for d in os.listdir(tmp_path / "bad" / "checkpoints") if d.isdigit())
  assert saved[-1] == 1   # step 1 was skipped but saved unchanged; step 2 stopped the stage
  records = [json.loads(line) for line in open(tmp_path / "bad" / "metrics.jsonl")]
  assert [r["finite"] for r in records] == [0.0]   # step 2 stopped before its log line
  assert np.all(np.isfinite(jax.tree.leaves(good)[0]))
  # far from the limit a skipped step is only skipped: the run ends, and its params stay finite
  params = fit(tmp_path / "mixed", mixed, 6, max_bad_steps=100)
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))


def test_save_restore_continue_is_bit_identical(data_dir, tmp_path):
  config = tiny_config(data_dir)
  whole = loop.train(config, str(tmp_path / "whole"))
  part = loop.train(config, str(tmp_path / "part"), stop_after=3)
  assert int(jax.device_get(part.state.step)) == 3
  assert not os.path.exists(tmp_path / "part" / "eval.json")
  resumed = loop.train(config, str(tmp_path / "part"))
  a, b = jax.device_get(whole.state), jax.device_get(resumed.state)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert whole.pipeline.position == resumed.pipeline.position == 6
  # one train-step program per process, recorded on every log line (no recompilation)
  assert whole.train_step_compiles == part.train_step_compiles == resumed.train_step_compiles == 1
  logged = [json.loads(line) for line in open(tmp_path / "whole" / "metrics.jsonl")]
  assert len(logged) >= 3 and all(r["train_step_compiles"] == 1 for r in logged)


def test_paired_mode_trains(data_dir, tmp_path):
  config = tiny_config(data_dir, **{"train.mode": "paired", "train.num_steps": 2})
  config.losses.generator = {"adversarial": 1.0, "l1": 100.0, "style_mse": 1.0}
  run = loop.train(config, str(tmp_path / "run"))
  assert set(run.state.g_params) == {"ab"} and int(jax.device_get(run.state.step)) == 2


def test_train_crop_trains_on_smaller_crops_and_leaves_the_test_crops_alone(data_dir, tmp_path):
  config = tiny_config(data_dir, **{"train.num_steps": 2, "data.train_crop": 32})
  run = loop.train(config, str(tmp_path / "run"))
  assert run.pipeline.next_global(run.mesh)["a"].shape == (4, 32, 32, 3)
  assert run.state.pool["b"].shape[1:] == (32, 32, 3)   # the image pool holds G's training outputs
  assert run.dataset.test_a.images[0].shape == (64, 64, 3)
  evaluated = json.load(open(tmp_path / "run" / "eval.json"))
  assert evaluated["num_images"] == len(run.dataset.test_a) and np.isfinite(evaluated["psnr"])


@pytest.mark.parametrize("change,match", [
    (lambda c: c.train.__setitem__("nonexistent", 1), "unknown config key 'train.nonexistent'"),
    (lambda c: c.data.__setitem__("crop_size", "big"), "data.crop_size: expected int"),
    (lambda c: c.train.__setitem__("lr", -1.0), "train.lr: must be a finite number > 0"),
    (lambda c: c.train.__setitem__("lr", float("nan")), "train.lr: must be a finite number > 0, got nan"),
    (lambda c: c.train.__setitem__("lr", float("inf")), "train.lr: must be a finite number > 0, got inf"),
    (lambda c: c.__setitem__("seed", -1), r"seed: must be in \[0, 2\*\*32\), got -1"),
    (lambda c: c.train.__setitem__("b1", 1.0), r"train.b1: Adam's decay must be in \[0, 1\)"),
    (lambda c: c.train.__setitem__("b2", float("nan")), r"train.b2: Adam's decay must be in \[0, 1\)"),
    (lambda c: c.correct.__setitem__("attempts", -1), "correct.attempts: must be >= 0"),
    (lambda c: c.losses.generator.__setitem__("cycle", float("inf")), "losses.generator.cycle: weight must be a finite"),
    (lambda c: c.losses.__setitem__("restyle_noise", -0.1), "losses.restyle_noise: must be a finite number >= 0"),
    (lambda c: c.losses.__setitem__("r1", float("nan")), "losses.r1: must be a finite number >= 0, got nan"),
    (lambda c: c.losses.__setitem__("restyle_fill", -1), "losses.restyle_fill: must be an integer >= 0, got -1"),
    (lambda c: c.model.__setitem__("input_blur", float("nan")), "model.input_blur: must be a finite number >= 0"),
    (lambda c: c.model.__setitem__("input_blur", 1.0), "model.input_blur: only the residual_unet generator takes it"),
    (lambda c: c.losses.__setitem__("diff_augment", "translation,mirror"), "losses.diff_augment: comma-separated ops"),
    (lambda c: c.model.__setitem__("discriminator", "resnet"), "model.discriminator"),
    (lambda c: c.model.__setitem__("d_layers", 5), r"model.d_layers: a 5-layer discriminator at 1 scale\(s\) needs "
                                                    r"crops larger than data.crop_size=64 \(its patch maps would be \[0\]"),
    (lambda c: c.data.__setitem__("train_crop", 8), r"model.d_layers: a 2-layer discriminator at 1 scale\(s\) needs "
                                                     r"crops larger than data.train_crop=8"),
    (lambda c: c.data.__setitem__("train_crop", 30), "data.train_crop: must be a multiple of 4 for this generator"),
    (lambda c: c.data.__setitem__("train_crop", 80), r"data.train_crop: must be in \[0, data.crop_size=64\]"),
    (lambda c: c.data.__setitem__("batch_size", 3), "data.batch_size: 3 is not divisible by the 4 devices"),
    (lambda c: c.model.__setitem__("upsample", "bilinear"), "model.upsample: must be one of"),
    (lambda c: c.detect.__setitem__("screen_rate", 1.0), r"detect.screen_rate: must be in \[0, 1\)"),
    (lambda c: c.detect.__setitem__("spread_weight", -1.0), "detect.spread_weight: must be >= 0"),
    (lambda c: c.detect.__setitem__("fuse_synthetic_auroc", 1.5), r"detect.fuse_synthetic_auroc: must be in \[0, 1\]"),
])
def test_config_validation_names_the_key(data_dir, change, match):
  # type_safe=False: validation must catch what a hand-built or loosely typed config holds
  c = ml_collections.ConfigDict(tiny_config(data_dir).to_dict(), type_safe=False)
  change(c)
  with pytest.raises(ConfigError, match=match):
    configs.validate(c, device_count=4)


def test_every_embedded_config_validates_and_unpaired_lines_blurs_photos_only():
  for arg in embedded_config.ARGS:
    configs.validate(embedded_config.get_config(arg))
  models = steps.make_models(embedded_config.get_config("unpaired_lines"))
  assert not models.paired and models.g_weights == (("restyle_l2", 1000.0),) and models.restyle_fill == 10
  assert models.generator.input_blur == 1.0 and steps._unfiltered(models).generator.input_blur == 0.0


def test_the_reverse_generator_is_left_out_where_nothing_trains_it(data_dir, dataset):
  """`embedded.py:unpaired_lines` trains G alone: F stays at its initialisation, so the
  sample grid has no F(G(x)) column and the report's caption none either."""
  from stylegan_ad import report
  assert not steps.reverse_trained(steps.make_models(embedded_config.get_config("unpaired_lines")))
  assert not steps.reverse_trained(steps.make_models(embedded_config.get_config("")))   # paired
  cyc = steps.make_models(tiny_config(data_dir))
  alone = steps.make_models(tiny_config(data_dir, **{"losses.generator": {"restyle_l2": 10.0}}))
  assert steps.reverse_trained(cyc) and not steps.reverse_trained(alone)
  state = skeleton.run_init(functools.partial(steps.init_state, cyc), jax.random.key(0), None)
  with_f, without_f = loop.sample_grid(cyc, state, dataset, 2), loop.sample_grid(alone, state, dataset, 2)
  assert with_f.shape[0] == without_f.shape[0] and with_f.shape[1] > without_f.shape[1]
  np.testing.assert_array_equal(without_f, loop.grid([[row[0], row[1], row[3]] for row in _grid_cells(with_f, 2, 4)]))
  caption = lambda **kw: report._sample_caption({"stylize": {"psnr": 20.0}, "mode": "unpaired", **kw})
  assert caption(reverse_generator=False) == "Columns: input x | G(x) | true S(x); one test crop per row."
  assert "F(G(x))" in caption(reverse_generator=True) and "F(G(x))" in caption()   # runs from before the key


def _grid_cells(image, rows, cols):
  """The rows x cols equal tiles of `loop.grid`'s image."""
  h, w = image.shape[0] // rows, image.shape[1] // cols
  return [[image[r * h:(r + 1) * h, c * w:(c + 1) * w] for c in range(cols)] for r in range(rows)]


def test_crop_larger_than_images_is_refused(data_dir):
  c = tiny_config(data_dir)
  with pytest.raises(ConfigError, match="crop_size: 128 is larger than"):
    c.data.crop_size = 128
    configs.validate(c, image_size=72)


TINY = "--config=experiments/configs/embedded.py:tiny"


@pytest.mark.parametrize("args,message", [
    ([TINY, "--config.train.nonexistent=1"], "error: unknown config key --config.train.nonexistent"),
    ([TINY, "--config.train.nm_steps=1"],
     "error: unknown config key --config.train.nm_steps (did you mean --config.train.num_steps?)"),
    ([TINY, "--config.trian.num_steps=1"],
     "error: unknown config key --config.trian.num_steps (did you mean --config.train.num_steps?)"),
    ([TINY, "--config.train.lr=abc"], "error: flag --config.train.lr=abc: could not convert string to float"),
    ([TINY, "--config.data.source=nope:x"], "error: unknown data source 'nope:x'"),
    ([TINY, "--config.seed=-1"], "error: config key seed: must be in [0, 2**32), got -1"),
    (["--config=experiments/configs/embedded.py:bogus"],
     "error: --config: unknown argument 'bogus' of embedded.py; known: '', 'unpaired', 'unpaired_lines', 'ink_wash', 'tiny'"),
])
def test_entry_point_bad_settings_are_one_line_errors(tmp_path, args, message):
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-m", "experiments.train_stylegan", f"--workdir={tmp_path / 'w'}",
                         *args], cwd=root, capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": root})
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(message)
  assert "Traceback" not in proc.stderr


def test_console_gets_about_ten_progress_lines_per_stage_and_every_step_is_logged(tmp_path, capsys):
  from stylegan_ad.train.logger import RunLogger
  log = RunLogger(str(tmp_path / "detector"), 1000)
  for step in range(50, 1001, 50):
    log.scalars(step, {"loss": 1.0})
  log.close()
  lines = [line for line in capsys.readouterr().err.splitlines() if "detector step" in line]
  assert 8 <= len(lines) <= 11, lines
  assert "detector step 50/1000" in lines[0] and "detector step 1000/1000" in lines[-1]
  assert [json.loads(l)["step"] for l in open(tmp_path / "detector" / "metrics.jsonl")] == list(range(50, 1001, 50))


def test_init_program_values_match_default_optimisation():
  """skeleton.run_init compiles the init at -O1 for speed: the draws must be the same
  bits as the default (-O2) program's, for every initialiser the models use (normal(0.02),
  He and LeCun truncated normals, zeros) and Adam's state."""
  import flax.linen as nn
  import optax
  from stylegan_ad.models import layers

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.Conv(8, (3, 3), kernel_init=layers.default_init)(x)
      x = nn.Conv(8, (3, 3), kernel_init=nn.initializers.he_normal())(x)
      x = nn.Conv(8, (1, 1), kernel_init=nn.initializers.zeros)(x)
      return nn.Dense(4)(x.mean((1, 2)))

  net, tx = Net(), optax.adam(1e-3)

  def init(key):
    params = net.init(key, jnp.zeros((1, 8, 8, 3)))["params"]
    return params, tx.init(params)

  key = jax.random.key(3)
  fast, default = skeleton.run_init(init, key, None), jax.jit(init)(key)
  assert any(np.asarray(a).std() > 0 for a in jax.tree.leaves(default))
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(default), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
