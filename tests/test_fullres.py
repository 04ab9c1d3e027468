"""Networks on photos at their own size: padding, tiling, and the residual U-Net's locality."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylegan_ad import fullres, metrics
from stylegan_ad.models import generator as gen


@pytest.fixture(scope="module")
def local_g():
  g = gen.make_generator("residual_unet", ngf=8, depth=3)
  params = g.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
  # a head strong enough that the output is far from the input (else tiling is trivially exact)
  params["to_rgb"]["kernel"] = params["to_rgb"]["kernel"] * 20.0
  apply = jax.jit(lambda x: g.apply({"params": params}, x))
  return lambda x: {"y": apply(jnp.asarray(x, jnp.float32))}


def _photo(h, w, seed=0):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  smooth = np.stack([np.sin(xx / 17.0 + c) * np.cos(yy / 23.0 - c) for c in range(3)], -1)
  return np.clip(0.7 * smooth + 0.2 * rng.standard_normal((h, w, 3)), -1, 1).astype(np.float32)


@pytest.mark.parametrize("h,w", [(200, 300), (700, 1000), (1, 77), (8, 8), (65, 129)])
def test_outputs_have_the_photos_size(local_g, h, w):
  out = fullres.apply(lambda x: {**local_g(x), "score": np.zeros(len(x))}, _photo(h, w))
  assert out["y"].shape == (h, w, 3)
  assert out["score"].shape == (1,)  # per-image values come back per call, not stitched


def test_tiled_run_matches_the_whole_photo_run(local_g):
  photo = _photo(300, 420)
  whole = fullres.apply(local_g, photo)["y"]
  tiled = fullres.apply(local_g, photo, fullres.Tiling(max_pixels=0, window=192, margin=48, tiles_per_call=3))
  assert tiled["y"].shape == whole.shape
  assert float(metrics.psnr(whole[None], np.tanh(photo)[None])[0]) < 30.0  # the network does change the photo
  assert float(metrics.psnr(tiled["y"][None], whole[None])[0]) >= 40.0


def test_a_tile_run_reports_per_tile_values():
  calls = []

  def fn(x):
    calls.append(x.shape)
    return {"y": x * 2, "score": x.mean(axis=(1, 2, 3))}

  photo = _photo(100, 150)
  out = fullres.apply(fn, photo, fullres.Tiling(max_pixels=0, window=128, margin=32, tiles_per_call=2))
  np.testing.assert_allclose(out["y"], photo * 2, atol=1e-6)  # crop and stitch is exact for a pointwise fn
  assert out["score"].shape == (2 * 3,)  # 64-px cores: 2 rows x 3 columns of tiles
  assert all(s[1:] == (128, 128, 3) and s[0] <= 2 for s in calls)


def test_fit_max_side_downscales_only_large_photos():
  big = np.zeros((3000, 4000, 3), np.uint8)
  small, scale = fullres.fit_max_side(big, 1024)
  assert small.shape == (768, 1024, 3) and scale == pytest.approx(0.256)
  same, scale = fullres.fit_max_side(big[:100, :50], 1024)
  assert same.shape == (100, 50, 3) and scale == 1.0
  thin, _ = fullres.fit_max_side(np.zeros((1, 5000, 3), np.uint8), 1024)
  assert thin.shape == (1, 1024, 3)


def test_residual_unet_is_local():
  """Changing one input pixel changes outputs only within the receptive field (no norm)."""
  g = gen.make_generator("residual_unet", ngf=4, depth=2)
  x = jnp.asarray(_photo(64, 64))[None]
  params = g.init(jax.random.key(1), x)
  y0 = g.apply(params, x)
  y1 = g.apply(params, x.at[0, 0, 0].add(1.0))
  changed = np.argwhere(np.abs(np.asarray(y1 - y0))[0].max(-1) > 0)
  assert changed.max() < 40  # far pixels are untouched (an instance-normed net changes them all)


def test_input_blur_is_the_same_network_on_the_blurred_photo_and_mutes_fine_texture():
  """`input_blur`: G sees x through a fixed Gaussian (U-Net input and residual base alike),
  so a 1-px checkerboard on the photo moves its output far less than it moves the same
  network's without the blur."""
  from stylegan_ad import losses
  sharp = gen.make_generator("residual_unet", ngf=8, depth=2)
  soft = gen.make_generator("residual_unet", ngf=8, depth=2, input_blur=1.0)
  x = jnp.asarray(_photo(64, 48))[None]
  params = sharp.init(jax.random.key(2), x)["params"]
  params["to_rgb"]["kernel"] = params["to_rgb"]["kernel"] * 20.0
  run = lambda g, v: g.apply({"params": params}, v)
  np.testing.assert_allclose(run(soft, x), run(sharp, losses.gaussian_blur(x, 1.0)), atol=1e-5)
  yy, xx = np.mgrid[:64, :48]
  checker = jnp.asarray(0.1 * (-1.0) ** (yy + xx), jnp.float32)[None, :, :, None]
  moved = lambda g: float(jnp.abs(run(g, x + checker) - run(g, x)).mean())
  assert moved(soft) < 0.2 * moved(sharp)


def test_the_residual_unets_own_border_gives_the_output_of_a_wide_one():
  """`generator_tiling` gives the norm-free U-Net a border of 4 * 2**depth pixels (fewer
  pixels to compute than the default 32): its outputs match a run with a 64-px border."""
  g = gen.make_generator("residual_unet", ngf=8, depth=2)
  params = g.init(jax.random.key(1), jnp.zeros((1, 64, 64, 3)))["params"]
  params["to_rgb"]["kernel"] = params["to_rgb"]["kernel"] * 20.0
  shapes = []

  def fn(x):
    shapes.append(x.shape[1:3])
    return {"y": g.apply({"params": params}, jnp.asarray(x))}

  photo = _photo(190, 250)
  tiling = fullres.generator_tiling("residual_unet", 2, False)
  assert tiling.border == 16 and fullres.generator_tiling("residual_unet", 3, False).border == 32
  own = fullres.apply(fn, photo, tiling)["y"]
  wide = fullres.apply(fn, photo, fullres.Tiling(border=64))["y"]
  assert shapes == [(224, 288), (320, 384)]
  assert float(metrics.psnr(wide[None], np.tanh(photo)[None])[0]) < 30.0
  assert float(metrics.psnr(own[None], wide[None])[0]) >= 40.0
