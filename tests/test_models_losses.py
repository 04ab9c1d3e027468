import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylegan_ad import losses, metrics
from stylegan_ad.errors import ConfigError
from stylegan_ad.models import discriminator as disc
from stylegan_ad.models import generator as gen
from stylegan_ad.models import layers
import torch_reference


@pytest.mark.parametrize("upsample", layers.UPSAMPLE_MODES)
def test_resnet_generator_shapes(upsample):
  g = gen.ResnetGenerator(ngf=4, n_blocks=2, upsample=upsample)
  x = jnp.zeros((2, 32, 32, 3))
  params = g.init(jax.random.key(0), x)
  y = g.apply(params, x + 0.3)
  assert y.shape == (2, 32, 32, 3)
  assert float(jnp.max(jnp.abs(y))) <= 1.0


def test_unet_generator_shapes():
  g = gen.make_generator("unet", ngf=4, depth=5)
  x = jnp.ones((1, 64, 64, 3))
  y = g.apply(g.init(jax.random.key(0), x), x)
  assert y.shape == (1, 64, 64, 3)


def test_reference_generator_is_resnet9_ngf64():
  g = gen.ResnetGenerator()
  params = jax.eval_shape(g.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
  assert sum(k.startswith("ResnetBlock") for k in params) == 9
  n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  assert 11.3e6 < n < 11.4e6  # the reference ResNet-9: 11.378M parameters, less the biases before norms


def test_patchgan_shapes_and_receptive_field():
  assert disc.receptive_field(3) == 70
  d = disc.Discriminator(ndf=8, n_layers=3, num_scales=2)
  x = jnp.zeros((2, 64, 64, 3))
  logits, feats = d.apply(d.init(jax.random.key(0), x), x)
  assert [l.shape for l in logits] == [(2, 6, 6, 1), (2, 2, 2, 1)]
  assert len(feats) == 8 and feats[0].shape == (2, 32, 32, 8)
  assert disc.image_score(logits).shape == (2,)


def test_patchgan_receptive_field_is_70_empirically():
  # without instance norm (whose statistics are global), so spectral norm instead
  d = disc.PatchGAN(ndf=4, n_layers=3, spectral_norm=True)
  x = jnp.zeros((1, 128, 128, 3))
  params = d.init(jax.random.key(0), x)
  grad = jax.grad(lambda x: d.apply(params, x)[0][0, 7, 7, 0])(x)
  ys, xs = np.nonzero(np.abs(np.asarray(grad[0])).sum(-1))
  assert ys.max() - ys.min() + 1 == 70 and xs.max() - xs.min() + 1 == 70



@pytest.mark.parametrize("name", ["patchgan", "convnet"])
@pytest.mark.parametrize("crop,n_layers,scales", [(64, 3, 2), (48, 1, 1), (40, 2, 3)])
def test_discriminator_patch_maps_have_the_sizes_the_config_checks(name, crop, n_layers, scales):
  from stylegan_ad import configs
  from stylegan_ad.registry import DISCRIMINATORS
  d = DISCRIMINATORS.make(name, ndf=4, n_layers=n_layers, num_scales=scales, spectral_norm=False, highpass=0)
  x = jnp.zeros((1, crop, crop, 3))
  logits, _ = jax.eval_shape(lambda x: d.apply(d.init(jax.random.key(0), x), x), x)
  assert [l.shape[1] for l in logits] == configs.patch_sizes(crop, n_layers, scales, name)


def test_convnet_receptive_field_is_31_and_it_has_no_norm():
  d = disc.ConvNet(ndf=4, n_layers=3)
  x = jnp.zeros((1, 96, 96, 3))
  params = d.init(jax.random.key(0), x)
  grad = jax.grad(lambda x: d.apply(params, x)[0][0, 6, 6, 0])(x)
  ys, xs = np.nonzero(np.abs(np.asarray(grad[0])).sum(-1))
  assert ys.max() - ys.min() + 1 == 31 and xs.max() - xs.min() + 1 == 31
  # no per-image statistics: a crop's logits do not depend on the rest of the batch, and
  # a crop's contrast and brightness move them (instance norm would cancel both)
  r = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1, maxval=1)
  alone = d.apply(params, r[:1])[0]
  np.testing.assert_allclose(d.apply(params, r)[0][:1], alone, rtol=1e-5, atol=1e-6)
  moved = d.apply(params, 0.5 * r[:1] + 0.3)[0]
  assert float(jnp.abs(moved - alone).mean()) > 0.3 * float(jnp.abs(alone).mean())


_DN = ("NHWC", "HWIO", "NHWC")


def _plain_conv(x, w, stride, pad):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=_DN)


@pytest.mark.parametrize("cin,cout,k,stride,pad", [
    (3, 16, 7, 1, 0),   # RGB in: patches then one matmul
    (16, 3, 7, 1, 3),   # RGB out: one matmul to every tap, shifted sums
    (24, 1, 4, 1, 1),   # PatchGAN's last layer
    (12, 2, 3, 2, 1),   # few outputs, strided
    (3, 8, 4, 2, 1),    # strided RGB in: the native conv
    (8, 8, 3, 1, 1),    # wide: the native conv
])
def test_conv2d_equals_plain_conv_values_and_gradients(cin, cout, k, stride, pad):
  kx, kw, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (2, 13, 11, cin))
  w = jax.random.normal(kw, (k, k, cin, cout)) * 0.1
  pads = ((pad, pad), (pad, pad))
  want = _plain_conv(x, w, stride, pad)
  got = layers.conv2d(x, w, stride, pads)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  g = jax.random.normal(kg, want.shape)
  grad = lambda f: jax.grad(lambda x, w: jnp.sum(f(x, w) * g), argnums=(0, 1))(x, w)
  for a, b in zip(grad(lambda x, w: layers.conv2d(x, w, stride, pads)),
                  grad(lambda x, w: _plain_conv(x, w, stride, pad))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv_rewrites_apply_on_cpu_only_unless_set(monkeypatch):
  x = jax.random.normal(jax.random.key(0), (1, 9, 9, 3))
  w = jax.random.normal(jax.random.key(1), (3, 3, 3, 8))
  ops = lambda: str(jax.make_jaxpr(lambda a, b: layers.conv2d(a, b, 1, ((1, 1), (1, 1))))(x, w))
  assert jax.default_backend() == "cpu" and layers.cpu_rewrites() and "dot_general" in ops()
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")   # what a GPU host traces
  assert not layers.cpu_rewrites() and "dot_general" not in ops() and "conv_general_dilated" in ops()
  np.testing.assert_array_equal(layers.conv2d(x, w, 1, ((1, 1), (1, 1))), _plain_conv(x, w, 1, 1))
  monkeypatch.setenv(layers.REWRITES_ENV, "on")
  assert layers.cpu_rewrites() and "dot_general" in ops()
  monkeypatch.setenv(layers.REWRITES_ENV, "sometimes")
  with pytest.raises(ConfigError, match="STYLEGAN_AD_CONV_REWRITES must be auto, on or off, got 'sometimes'"):
    layers.cpu_rewrites()


def _plain_resize_conv(x, w):
  up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return _plain_conv(jnp.pad(up, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect"), w, 1, 0)


def _plain_transpose(x, w):
  return jax.lax.conv_transpose(x, w, (2, 2), "SAME", dimension_numbers=_DN)


@pytest.mark.parametrize("fast,plain", [(layers.resize_conv, _plain_resize_conv),
                                        (layers.conv_transpose2x, _plain_transpose)])
def test_upsampling_on_the_input_grid_equals_the_plain_layer(fast, plain):
  kx, kw, kg = jax.random.split(jax.random.key(1), 3)
  x = jax.random.normal(kx, (2, 5, 7, 6))
  w = jax.random.normal(kw, (3, 3, 6, 4)) * 0.2
  want = plain(x, w)
  assert want.shape == (2, 10, 14, 4)
  np.testing.assert_allclose(fast(x, w), want, rtol=1e-5, atol=1e-5)
  g = jax.random.normal(kg, want.shape)
  grad = lambda f: jax.grad(lambda x, w: jnp.sum(f(x, w) * g), argnums=(0, 1))(x, w)
  for a, b in zip(grad(fast), grad(plain)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_transpose_upsample_is_the_reference_cyclegans_layer():
  import flax.linen as nn
  x = jax.random.normal(jax.random.key(2), (1, 6, 7, 5))
  ours = layers.Upsample(4, "transpose", use_bias=False)
  params = ours.init(jax.random.key(3), x)
  flax_layer = nn.ConvTranspose(4, (3, 3), strides=(2, 2), padding="SAME", use_bias=False)
  shapes = lambda tree: jax.tree.map(jnp.shape, tree)
  assert shapes(params["params"]) == {"ConvTranspose_0": shapes(flax_layer.init(jax.random.key(3), x)["params"])}
  kernel = np.asarray(params["params"]["ConvTranspose_0"]["kernel"])
  weight = kernel[::-1, ::-1].transpose(2, 3, 0, 1)  # as PyTorch stores it: [in, out, kh, kw]
  want = torch_reference.conv_transpose(np.asarray(x).transpose(0, 3, 1, 2), weight, np.zeros(4))
  np.testing.assert_allclose(ours.apply(params, x), want.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_unet_decoder_block_is_the_plain_layer_with_the_same_parameters():
  # the decoder's first conv over [x2 nearest(h), skip], as resize_conv(h) + conv(skip)
  h, skip = jax.random.normal(jax.random.key(4), (2, 4, 6, 8)), jax.random.normal(jax.random.key(5), (2, 8, 12, 3))
  block = layers._ConvBlock(5)
  params = block.init(jax.random.key(6), h, skip)["params"]
  assert jax.tree.map(jnp.shape, params) == {"Conv_0": {"kernel": (3, 3, 11, 5), "bias": (5,)},
                                             "Conv_1": {"kernel": (3, 3, 5, 5), "bias": (5,)}}
  def plain(params, h, skip):
    x = jnp.concatenate([jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2), skip], axis=-1)
    for name in ("Conv_0", "Conv_1"):
      x = jax.nn.relu(_plain_conv(x, params[name]["kernel"], 1, 1) + params[name]["bias"])
    return x
  ours = lambda params, h, skip: block.apply({"params": params}, h, skip)
  np.testing.assert_allclose(ours(params, h, skip), plain(params, h, skip), rtol=1e-5, atol=1e-5)
  loss = lambda f: jax.grad(lambda *a: jnp.sum(jnp.sin(f(*a))), argnums=(0, 1, 2))(params, h, skip)
  for a, b in zip(jax.tree.leaves(loss(ours)), jax.tree.leaves(loss(plain))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_spectral_norm_gives_unit_sigma():
  k = jax.random.normal(jax.random.key(1), (4, 4, 3, 8))
  w = layers.spectral_normalize(k, iterations=30).reshape(-1, 8)
  assert abs(np.linalg.svd(np.asarray(w), compute_uv=False)[0] - 1.0) < 1e-3
  d = disc.Discriminator(ndf=4, spectral_norm=True)
  x = jnp.zeros((1, 64, 64, 3))
  assert d.apply(d.init(jax.random.key(0), x), x)[0][0].shape == (1, 6, 6, 1)


def test_adversarial_losses_hand_computed():
  r, f = [jnp.full((2, 3, 3, 1), 2.0)], [jnp.full((2, 3, 3, 1), 0.5)]
  assert np.isclose(losses.lsgan_d(r, f), 0.5 * (1.0 + 0.25))
  assert np.isclose(losses.lsgan_g(f), 0.25)
  sp = lambda v: np.log1p(np.exp(v))
  assert np.isclose(losses.nsgan_d(r, f), 0.5 * (sp(-2.0) + sp(0.5)), atol=1e-6)
  assert np.isclose(losses.nsgan_g(f), sp(-0.5), atol=1e-6)
  assert np.isclose(losses.hinge_d([jnp.full((1, 2, 2, 1), 0.5)], [jnp.full((1, 2, 2, 1), -0.5)]), 0.5)
  assert np.isclose(losses.hinge_g(f), -0.5)
  # two scales are averaged
  assert np.isclose(losses.lsgan_g([jnp.zeros((1, 2, 2, 1)), jnp.ones((1, 1, 1, 1))]), 0.5)


def _ctx(**kw):
  base = dict(x=jnp.zeros((1, 2, 2, 3)), real=jnp.ones((1, 2, 2, 3)), fake=jnp.full((1, 2, 2, 3), 0.5),
              fake_logits=[jnp.zeros((1, 1, 1, 1))], adversarial_g=losses.lsgan_g)
  base.update(kw)
  return losses.LossContext(**base)


def test_generator_losses_hand_computed():
  ctx = _ctx(rec=jnp.full((1, 2, 2, 3), 0.25), idt=jnp.full((1, 2, 2, 3), 0.5),
             target=jnp.full((1, 2, 2, 3), -0.5))
  assert np.isclose(losses.GENERATOR_LOSSES["adversarial"](ctx), 1.0)
  assert np.isclose(losses.cycle_l1(ctx), 0.25)
  assert np.isclose(losses.identity_l1(ctx), 0.5)
  assert np.isclose(losses.target_l1(ctx), 1.0)
  # L_style = E||G(x) - I_s||^2 + E||G(x) - I_t||^2 = 0.25 + 1.0
  assert np.isclose(losses.style_mse(ctx), 1.25)
  total, terms = losses.generator_objective({"cycle": 10.0, "identity": 5.0, "adversarial": 0.0}, ctx)
  assert np.isclose(total, 10 * 0.25 + 5 * 0.5) and set(terms) == {"cycle", "identity"}


def test_lowpass_losses_see_coarse_colour_and_not_fine_detail():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-0.5, 0.5, (2, 32, 48, 3)), jnp.float32)
  checker = jnp.asarray(np.indices((32, 48)).sum(0) % 2 * 2 - 1, jnp.float32)[None, :, :, None]
  for name, block in (("lowpass", 4), ("lowpass16", 16)):
    loss = losses.GENERATOR_LOSSES[name]
    assert np.isclose(loss(_ctx(x=x, fake=x + 0.3 * checker)), 0.0, atol=1e-6)  # zero-mean detail
    assert np.isclose(loss(_ctx(x=x, fake=x + 0.2)), 0.2)   # a colour shift: its size
    fake = x.at[:, :block, :block, 0].add(0.48)   # one block of one channel: 0.48 over 2 x blocks x 3 channels
    blocks = (32 // block) * (48 // block)
    assert np.isclose(loss(_ctx(x=x, fake=fake)), 0.48 / (2 * blocks * 3) * 2, rtol=1e-4)


def test_edge_hold_keeps_strong_edges_and_lets_ink_darken_them():
  # a vertical step of 0.5 in [0, 1] units (a strong edge) in a 32x32 image
  x = jnp.asarray(np.where(np.arange(32) < 16, -0.5, 0.5)[None, None, :, None].repeat(32, 1).repeat(3, 3),
                  jnp.float32)
  hold = lambda fake: float(losses.edge_hold(_ctx(x=x, fake=fake)))
  assert hold(x) == 0.0 and hold(losses.gaussian_blur(x, 1.0)) == 0.0   # the edge kept
  assert hold(losses.gaussian_blur(x, 3.0)) > 0.01 and hold(jnp.zeros_like(x)) > hold(losses.gaussian_blur(x, 3.0))
  inked = x.at[:, :, 15:17].set(-0.9)   # a 2-px dark line on the edge: still an edge
  assert hold(inked) == 0.0
  assert hold(x.at[:, 8:24].set(0.0)) > 0.0   # half the edge flattened
  flat = jnp.zeros_like(x) + 0.2   # no strong edge in x: nothing held
  assert float(losses.edge_hold(_ctx(x=flat, fake=flat + 0.1 * jnp.sin(jnp.arange(32.0))[None, :, None, None]))) == 0.0
  # edge_smoothed (the edge-promoting negatives) blurs exactly where the same measure is strong
  assert np.array_equal(np.asarray(losses.edge_smoothed(flat)), np.asarray(flat))


def test_patch_sliced_wasserstein_compares_patch_distributions():
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.uniform(-0.5, 0.5, (2, 24, 24, 3)), jnp.float32)
  key = jax.random.key(3)
  swd = lambda u, v, **kw: float(losses.sliced_wasserstein(u, v, key, **kw))
  assert swd(a, a) == 0.0
  assert swd(a, a[::-1]) == 0.0   # a distribution: the images' order is free
  assert 0 < swd(a, a[:1]) < swd(a, a + 0.5)   # batches of other sizes: compared at the same quantiles
  # every projection of a constant shift c (unit directions w) moves by c * sum(w)
  w = jax.random.normal(key, (5, 5, 3, 32))
  w = w / jnp.sqrt(jnp.sum(w ** 2, axis=(0, 1, 2), keepdims=True))
  assert np.isclose(swd(a + 0.2, a), float(jnp.mean((0.2 * w.sum(axis=(0, 1, 2))) ** 2)), rtol=1e-4)
  # zero-mean directions see structure, not colour: blind to a shift, not to a line
  assert swd(a + jnp.asarray([0.3, -0.2, 0.1]), a, zero_mean=True) < 1e-10
  assert swd(a.at[:, :, 12].add(-0.8), a, zero_mean=True) > 1e-3
  g = jax.grad(lambda u: losses.sliced_wasserstein(u, a, key))(a + 0.1)
  assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) > 0
  ctx = _ctx(x=a, fake=a + 0.2, real=a, key=key)
  assert np.isclose(float(losses.GENERATOR_LOSSES["patch_swd"](ctx)), swd(a + 0.2, a))
  assert float(losses.GENERATOR_LOSSES["patch_swd_structure"](ctx)) < 1e-10


def test_a_highpass_discriminator_is_blind_to_colour_and_sees_detail():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-0.5, 0.5, (2, 32, 32, 3)), jnp.float32)
  shift = jnp.asarray([0.3, -0.2, 0.1], jnp.float32)
  for highpass, blind in ((7, True), (0, False)):
    d = disc.Discriminator(ndf=8, n_layers=2, highpass=highpass)
    params = d.init(jax.random.key(0), x)
    logits = lambda v: np.asarray(d.apply(params, v)[0][0])
    assert np.allclose(logits(x), logits(x + shift), atol=1e-4) == blind   # a colour shift
    assert not np.allclose(logits(x), logits(x.at[:, 8:24, 16].add(-0.8)), atol=1e-3)   # an ink line


def test_edge_smoothing_blurs_ink_lines_and_keeps_flat_regions():
  flat = jnp.full((1, 32, 32, 3), 0.4, jnp.float32)
  np.testing.assert_allclose(losses.edge_smoothed(flat), flat, atol=1e-6)   # no edge: unchanged
  inked = flat.at[:, :, 15:17].set(-0.9)   # a dark ink line, two pixels wide
  out = np.asarray(losses.edge_smoothed(inked))
  assert out[0, 10, 15, 0] > -0.5             # the line is blurred toward the paper
  assert out[0, 10, 13, 0] < 0.35             # and the paper beside it darkened
  np.testing.assert_array_equal(out[:, :, :12], np.asarray(inked)[:, :, :12])   # beyond the dilated edge: untouched
  np.testing.assert_array_equal(out[:, :, 20:], np.asarray(inked)[:, :, 20:])
  soft = flat.at[:, :, 16:].add(0.1)          # a faint step (Sobel magnitude 0.2 in [0, 1] units): not an edge
  np.testing.assert_allclose(losses.edge_smoothed(soft), soft, atol=1e-6)


def test_line_free_removes_thin_dark_strokes_and_keeps_steps():
  flat = jnp.full((1, 32, 32, 3), 0.4, jnp.float32)
  step = flat.at[:, :, 16:].set(-0.2)            # two flat regions: a step edge
  np.testing.assert_allclose(losses.line_free(step), step)   # a step is kept as it is
  inked = step.at[:, :, 15:17].set(-0.9)         # the same step with an ink line on it, 2 px wide
  out = np.asarray(losses.line_free(inked))
  assert out.min() == np.float32(-0.2)           # the line is gone
  np.testing.assert_array_equal(out[:, :, :15], np.asarray(step)[:, :, :15])   # both sides as they were
  np.testing.assert_array_equal(out[:, :, 17:], np.asarray(step)[:, :, 17:])
  levels = {np.float32(0.4).item(), np.float32(-0.2).item()}
  assert {float(v) for v in out[0, :, 15:17, 0].ravel()} <= levels   # a step where the line was
  dot = flat.at[:, 10:14, 10:14].set(-0.9)       # a dark region wider than the window: kept
  np.testing.assert_allclose(losses.line_free(dot), dot)
  # filled: a ramp between the two sides across the stroke, centred on it (0.2 and 0.0 between 0.4
  # and -0.2 in the limit), every other pixel as it was
  filled = np.asarray(losses.line_free(inked, fill=10))
  np.testing.assert_array_equal(filled[:, :, :15], np.asarray(step)[:, :, :15])
  np.testing.assert_array_equal(filled[:, :, 17:], np.asarray(step)[:, :, 17:])
  np.testing.assert_allclose(filled[:, :, 15], 0.2, atol=0.01)
  np.testing.assert_allclose(filled[:, :, 16], 0.0, atol=0.01)
  np.testing.assert_allclose(losses.line_free(dot, fill=10), dot)   # nothing lifted: nothing filled


def test_gaussian_blur_keeps_flat_images_and_spreads_an_impulse_symmetrically():
  flat = jnp.full((1, 9, 9, 3), 0.3, jnp.float32)
  np.testing.assert_allclose(losses.gaussian_blur(flat, 1.0), flat, rtol=1e-6)
  out = np.asarray(losses.gaussian_blur(jnp.zeros((1, 9, 9, 1)).at[0, 4, 4, 0].set(1.0), 1.0))[0, :, :, 0]
  assert np.isclose(out.sum(), 1.0, rtol=1e-5) and out[4, 4] == out.max()
  np.testing.assert_allclose(out, out.T, atol=1e-7)
  np.testing.assert_allclose(out, out[::-1, ::-1], atol=1e-7)
  assert np.isclose(out[4, 5] / out[4, 4], np.exp(-0.5), rtol=1e-5)   # sigma 1 pixel


def test_restyle_is_the_l1_of_the_line_free_input_restyled_and_zero_without_it():
  real = jnp.full((2, 8, 8, 3), 0.5, jnp.float32)
  ctx = _ctx(real=real, fake=real)
  assert float(losses.restyle(ctx)) == 0.0        # the reverse direction: no term
  assert float(losses.restyle_l2(ctx)) == 0.0
  ctx.restyled = real - 0.25
  assert np.isclose(losses.restyle(ctx), 0.25) and np.isclose(losses.restyle_l2(ctx), 0.0625)


def test_ssim_loss_is_one_minus_the_metric():
  rng = np.random.default_rng(0)
  t = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
  assert np.isclose(losses.target_ssim(_ctx(fake=t, target=t)), 0.0, atol=1e-6)
  y = t + 0.3 * jnp.asarray(rng.normal(size=t.shape), jnp.float32)
  expected = 1 - float(np.mean(np.asarray(metrics.ssim(y, t))))
  assert expected > 0.1 and np.isclose(losses.target_ssim(_ctx(fake=y, target=t)), expected)
  # the gradient (the filter's own transpose) equals autodiff of the plain grouped conv
  w1 = jnp.asarray(metrics._WINDOW)

  def plain_ssim(a, b):
    a, b = (a + 1) / 2, (b + 1) / 2
    kh, kw = jnp.tile(w1.reshape(11, 1, 1, 1), (1, 1, 1, 3)), jnp.tile(w1.reshape(1, 11, 1, 1), (1, 1, 1, 3))
    conv = lambda v, k: jax.lax.conv_general_dilated(v, k, (1, 1), "VALID", dimension_numbers=_DN,
                                                     feature_group_count=3)
    f = lambda v: conv(conv(v, kh), kw)
    mx, my = f(a), f(b)
    sxx, syy, sxy = f(a * a) - mx ** 2, f(b * b) - my ** 2, f(a * b) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return jnp.mean(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2)))

  assert np.isclose(plain_ssim(y, t), 1 - expected, atol=1e-5)
  g = jax.grad(lambda f: losses.target_ssim(_ctx(fake=f, target=t)))(y)
  np.testing.assert_allclose(g, jax.grad(lambda f: 1 - plain_ssim(f, t))(y), rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(g).max()) > 0


def test_max_pool2x2_is_flax_max_pool_in_values_and_gradients():
  import flax.linen as nn
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 12, 5)), jnp.float32)  # no ties
  np.testing.assert_array_equal(layers.max_pool2x2(x), nn.max_pool(x, (2, 2), (2, 2)))
  w = jnp.asarray(np.random.default_rng(2).normal(size=(2, 4, 6, 5)), jnp.float32)
  grad = lambda pool: jax.grad(lambda v: jnp.sum(pool(v) * w))(x)
  np.testing.assert_array_equal(grad(layers.max_pool2x2), grad(lambda v: nn.max_pool(v, (2, 2), (2, 2))))


def test_gram_style_hand_computed():
  f = jnp.ones((1, 1, 2, 2))          # N=1, H=1, W=2, C=2
  r = jnp.zeros((1, 1, 2, 2))
  # gram(f) = f^T f / (1*2*2) = 2/4 = 0.5 everywhere; gram(r) = 0 -> mean sq diff = 0.25
  np.testing.assert_allclose(losses.gram(f), np.full((1, 2, 2), 0.5))
  assert np.isclose(losses.gram_style(_ctx(fake_features=[f], real_features=[r])), 0.25)


def test_r1_penalty_hand_computed():
  w = jnp.arange(12.0).reshape(1, 2, 2, 3)
  d_fn = lambda x: [jnp.sum(w * x, axis=(1, 2, 3), keepdims=True)]
  assert np.isclose(losses.r1_penalty(d_fn, jnp.zeros((2, 2, 2, 3))), float(jnp.sum(w ** 2)))


def test_registry_one_function_one_line_and_validation():
  @losses.register("test_mean_abs")
  def mean_abs(ctx):
    return jnp.mean(jnp.abs(ctx.fake - ctx.x))
  total, _ = losses.generator_objective({"test_mean_abs": 2.0}, _ctx())
  assert np.isclose(total, 1.0)
  with pytest.raises(ConfigError, match="unknown loss 'nope'"):
    losses.check_weights({"nope": 1.0}, set())
  with pytest.raises(ConfigError, match="cycle needs 'rec'"):
    losses.check_weights({"cycle": 1.0}, {"target"})
  with pytest.raises(ConfigError, match="adversarial must be one of"):
    losses.adversarial("wgan")
  from experiments.configs import embedded
  from stylegan_ad import configs
  paired = embedded.get_config("")
  paired.losses.generator = {"adversarial": 1.0, "backtranslate": 10.0}   # no reverse generator
  with pytest.raises(ConfigError, match="backtranslate needs 'backtranslated'"):
    configs.validate(paired)


def test_import_opts_out_of_ynnpack_convolutions_unless_the_user_chose():
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  show = "import os, stylegan_ad; print(os.environ['XLA_FLAGS'])"
  run = lambda flags: subprocess.run([sys.executable, "-c", show], cwd=root, capture_output=True, text=True, check=True,
                                     env={**os.environ, "XLA_FLAGS": flags}).stdout.split()
  assert run("--xla_force_host_platform_device_count=2") == [
      "--xla_force_host_platform_device_count=2", "--xla_cpu_experimental_ynn_fusion_type="]
  chosen = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
  assert run(chosen) == [chosen]


def test_d_lr_scale_scales_only_the_discriminators_steps():
  """`train.d_lr_scale`: D's Adam steps are that many times G's, along the whole schedule;
  at 1 both use the one schedule."""
  from experiments.configs import embedded
  from stylegan_ad import configs
  from stylegan_ad.train import steps
  c = embedded.get_config("tiny")
  c.train.num_steps, c.train.decay_start = 10, 0.5
  c.train.d_lr_scale = 4.0
  configs.validate(c)
  m = steps.make_models(c)
  params = {"w": jnp.zeros(3)}
  grads = {"w": jnp.array([1.0, -2.0, 0.5])}
  g_state, d_state = m.g_tx.init(params), m.d_tx.init(params)
  for _ in range(8):  # past the decay's start
    g_up, g_state = m.g_tx.update(grads, g_state, params)
    d_up, d_state = m.d_tx.update(grads, d_state, params)
    np.testing.assert_allclose(d_up["w"], 4.0 * g_up["w"], rtol=1e-6)
    assert float(jnp.abs(g_up["w"]).max()) > 0
  c.train.d_lr_scale = 1.0
  m1 = steps.make_models(c)
  s = m1.d_tx.init(params)
  np.testing.assert_array_equal(m1.d_tx.update(grads, s, params)[0]["w"], m1.g_tx.update(grads, s, params)[0]["w"])
  c.train.d_lr_scale = 0.0
  with pytest.raises(ConfigError, match="train.d_lr_scale: must be a finite number > 0"):
    configs.validate(c)


def test_d_warmup_trains_only_the_discriminators_first(tmp_path):
  """`train.d_warmup`: in its steps D learns (each domain's own images its fakes, the pool
  left empty), G, G's optimizer and the EMA stay as initialised and G's metrics read 0;
  then G learns at its full rate (its schedule spans the GAN's steps). The GAN step's
  metrics keep their names throughout, and the loop runs the warm-up's program for
  exactly the first d_warmup steps (through a resume)."""
  import json
  from experiments.configs import embedded
  from stylegan_ad import configs
  from stylegan_ad.train import loop, steps
  c = embedded.get_config("tiny")
  c.train.num_steps, c.train.d_warmup = 6, 3
  configs.validate(c)
  m = steps.make_models(c)
  state = steps.init_state(m, jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {k: jnp.asarray(rng.uniform(-1, 1, (4, m.crop, m.crop, 3)), jnp.float32) for k in ("a", "b")}
  warm = jax.jit(lambda s, b: steps.train_step(m, s, b, d_only=True))
  same = lambda x, y: all(bool(jnp.array_equal(u, v)) for u, v in zip(jax.tree.leaves(x), jax.tree.leaves(y)))
  s1, m1 = warm(state, batch)
  s2, _ = warm(s1, batch)
  for s_ in (s1, s2):
    assert same(s_.g_params, state.g_params) and same(s_.ema, state.ema) and same(s_.g_opt, state.g_opt)
    assert int(s_.pool_count) == 0
  assert not same(s1.d_params, state.d_params) and not same(s2.d_params, s1.d_params)
  assert int(s2.step) == 2 and float(m1["g/loss"]) == 0.0 and float(m1["d/loss"]) > 0
  s3, m3 = jax.jit(lambda s, b: steps.train_step(m, s, b))(s2, batch)
  assert not same(s3.g_params, s2.g_params) and int(s3.pool_count) == 4
  assert set(m1) == set(m3) and float(m3["g/loss"]) > 0
  # G's first update is at the full learning rate, not one decayed by the warm-up's steps
  one = m.g_tx.update({"w": jnp.ones(1)}, m.g_tx.init({"w": jnp.zeros(1)}))[0]["w"][0]
  assert float(one) == pytest.approx(-c.train.lr, rel=1e-4)
  # the loop: steps 1-3 D only (G's loss 0 on their log lines), then the GAN's
  # program (step 4 on), also when a resume lands inside the warm-up
  c.log.every, c.checkpoint.every, c.log.sample_every = 1, 2, 100
  loop.train(c, str(tmp_path), stop_after=2)
  run = loop.train(c, str(tmp_path), stop_after=4)
  lines = {r["step"]: r for r in map(json.loads, open(tmp_path / "metrics.jsonl"))}
  assert [lines[k]["g/loss"] == 0.0 for k in (1, 2, 3, 4)] == [True, True, True, False]
  assert lines[4]["train_step_compiles"] == 2
  assert int(run.state.pool_count) == 4   # the one GAN step (step 4) put its 4 fakes in the pool
  c.train.d_warmup = 6
  with pytest.raises(ConfigError, match="train.d_warmup: must be >= 0 and below train.num_steps"):
    configs.validate(c)


def test_bfloat16_compute_keeps_float32_parameters():
  """`model.dtype="bfloat16"`: G and D compute in bfloat16 (the compiled program's
  convolutions are bf16), outputs, parameters, gradients and the optimizer's state stay
  float32, and the result tracks float32's; "float32" is exactly the plain apply."""
  from experiments.configs import embedded
  from stylegan_ad import configs
  from stylegan_ad.train import skeleton, steps
  c32 = embedded.get_config("tiny")
  c16 = embedded.get_config("tiny")
  c16.model.dtype = "bfloat16"
  configs.validate(c16)
  m32, m16 = steps.make_models(c32), steps.make_models(c16)
  state = skeleton.run_init(lambda k: steps.init_state(m32, k), jax.random.key(0), None)
  rng = np.random.default_rng(0)
  batch = {k: jnp.asarray(rng.uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)) for k in ("a", "b")}
  g = state.g_params["ab"]
  y32 = steps.generate(m32, g, batch["a"])
  assert np.array_equal(y32, m32.generator.apply({"params": g}, batch["a"]))
  y16 = steps.generate(m16, g, batch["a"])
  assert y16.dtype == jnp.float32 and 0 < float(jnp.abs(y16 - y32).max()) < 0.1
  hlo = jax.jit(lambda p, x: steps.generate(m16, p, x)).lower(g, batch["a"]).as_text()
  assert "convolution" in hlo and "bf16" in hlo
  new16, metrics16 = jax.jit(lambda s, b: steps.train_step(m16, s, b))(state, batch)
  new32, metrics32 = jax.jit(lambda s, b: steps.train_step(m32, s, b))(state, batch)
  for tree in (new16.g_params, new16.d_params, new16.g_opt, new16.d_opt, new16.ema):
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating))
  assert int(metrics16["bad_steps"]) == 0
  assert abs(float(metrics16["g/loss"]) - float(metrics32["g/loss"])) < 0.05 * abs(float(metrics32["g/loss"]))
  moved = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(new16.g_params), jax.tree.leaves(g))]
  assert max(moved) > 0
  with pytest.raises(ConfigError, match="model.dtype: must be one of"):
    c16.model.dtype = "float16"
    configs.validate(c16)


def test_every_network_computes_in_bfloat16():
  """Every generator, the detector and the restorer through `layers.apply_in` in bfloat16:
  float32 out, within bf16's rounding of the float32 computation."""
  from experiments.configs import embedded
  from stylegan_ad import stages
  from stylegan_ad.models import layers
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32))
  config = embedded.get_config("")
  cases = [(gen.make_generator(arch, ngf=8, depth=depth, n_blocks=1, upsample=up), (x,))
           for arch, depth, up in (("residual_unet", 2, "resize_conv"), ("unet", 5, "resize_conv"),
                                   ("reference_unet", 6, "transpose"), ("resnet", 0, "subpixel"),
                                   ("resnet", 0, "transpose"))]
  cases += [(stages.make_detector(config), (jnp.concatenate([x] * 5, axis=-1),)),
            (stages.make_restorer(config), (x, x[..., 0], x))]
  for module, inputs in cases:
    params = module.init(jax.random.key(0), *inputs)["params"]
    full = jax.tree.leaves(layers.apply_in(module, params, "float32", *inputs))
    half = jax.tree.leaves(layers.apply_in(module, params, "bfloat16", *inputs))
    assert all(h.dtype == jnp.float32 for h in half), type(module).__name__
    err = max(float(jnp.abs(f - h).max()) for f, h in zip(full, half))
    assert 0 < err < 0.1, (type(module).__name__, err)


def test_diff_augment_translation_cutout_and_color():
  n, h, w = 64, 16, 24
  x = jax.random.uniform(jax.random.key(0), (n, h, w, 6), minval=-1, maxval=1)
  key = jax.random.key(3)
  np.testing.assert_array_equal(losses.diff_augment(x, key, ()), x)
  # translation: each image is itself shifted by at most 1/8 of a side, zero-filled
  t = np.asarray(losses.diff_augment(x, key, ("translation",)))
  shifts = set()
  for i in range(n):
    found = [(dy, dx) for dy in range(-2, 3) for dx in range(-3, 4)
             if np.array_equal(t[i], np.asarray(jnp.pad(x[i], ((2, 2), (3, 3), (0, 0))))[2 - dy:2 - dy + h, 3 - dx:3 - dx + w])]
    assert found, i
    shifts.add(found[0])
  assert len(shifts) > 10   # each image draws its own
  # cutout: a zeroed square of half the side (fewer pixels where it leaves the image); the
  # six channels of a paired D's (x, y) move together
  c = np.asarray(losses.diff_augment(jnp.ones((n, h, w, 6)), key, ("cutout",)))
  zero = c == 0
  assert (zero.all(-1) == zero.any(-1)).all()
  areas = zero[..., 0].sum((1, 2))
  assert areas.max() == (h // 2) * (w // 2) and areas.min() > 0
  rows, cols = zero[..., 0].any(2), zero[..., 0].any(1)
  assert (zero[..., 0] == (rows[:, :, None] & cols[:, None, :])).all()    # a rectangle
  # color: per image brightness, saturation and contrast; a grey image stays grey
  grey = jnp.concatenate([jnp.broadcast_to(x[..., :1], x[..., :3].shape),
                          jnp.broadcast_to(x[..., 3:4], x[..., :3].shape)], axis=-1)   # a grey (x, y) pair
  g = np.asarray(losses.diff_augment(grey, key, ("color",)))
  np.testing.assert_allclose(g[..., 0], g[..., 2], atol=1e-6)
  np.testing.assert_allclose(g[..., 3], g[..., 5], atol=1e-6)
  # ... and the two stay the same affine map of their own grey (saturation leaves a grey
  # triplet alone; it must not pull x toward y's level)
  gx, gy = np.asarray(grey[..., 0]).reshape(n, -1), np.asarray(grey[..., 3]).reshape(n, -1)
  for i in range(n):
    a, b = np.polyfit(gx[i], g[i, ..., 0].ravel(), 1)
    np.testing.assert_allclose(g[i, ..., 3].ravel(), a * gy[i] + b, atol=1e-4)
  assert np.std(g.mean((1, 2, 3))) > 0.1
  # differentiable: G's gradient reaches through it
  grad = jax.grad(lambda v: losses.diff_augment(v, key, ("translation", "cutout", "color")).sum())(x)
  assert float(jnp.abs(grad).sum()) > 0
  assert losses.diff_augment_policy(" translation, cutout") == ("translation", "cutout")
  with pytest.raises(ConfigError, match="losses.diff_augment"):
    losses.diff_augment_policy("translation,flip")
