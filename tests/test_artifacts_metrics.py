import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from stylegan_ad import artifacts, metrics


def _images(n=3, size=32):
  rng = np.random.default_rng(0)
  base = rng.uniform(-0.6, 0.6, (n, 1, 1, 3)) + 0.3 * np.sin(np.linspace(0, 6, size))[None, :, None, None]
  return jnp.asarray(np.clip(base + np.zeros((n, size, size, 3)), -1, 1), jnp.float32)


@pytest.fixture(scope="module")
def applied():
  x = _images()
  content = x[::-1] * 0.5
  f = jax.jit(jax.vmap(artifacts.apply, in_axes=(0, 0, None, None, None, 0, None)), static_argnums=())
  results = {}
  for kind in range(len(artifacts.names())):
    for shape in range(len(artifacts.MASK_SHAPES)):
      keys = jax.random.split(jax.random.key(kind * 10 + shape), x.shape[0])
      results[kind, shape] = (x, f(x, keys, 0.8, kind, shape, content, -x[0]), keys)
  return results


@pytest.mark.parametrize("kind", range(len(artifacts.names())), ids=artifacts.names())
def test_artifact_changes_pixels_only_inside_its_mask(applied, kind):
  for shape in range(3):  # ellipse, blob, rectangle
    x, (out, mask), _ = applied[kind, shape]
    diff = np.abs(np.asarray(out) - np.asarray(x)).max(-1)
    assert np.all(diff[np.asarray(mask) == 0] <= artifacts.VISIBLE + 1e-6), artifacts.names()[kind]
    assert float(mask.sum()) > 0, artifacts.names()[kind]
    assert np.all(diff[np.asarray(mask) > 0] > artifacts.VISIBLE)
    assert out.min() >= -1 and out.max() <= 1


def test_whole_image_masks_cover_most_of_the_image(applied):
  x, (out, mask), _ = applied[artifacts.type_id("noise"), 3]
  assert float(mask.mean()) > 0.9


def test_artifacts_are_deterministic_per_key():
  x = _images()[0]
  key = jax.random.key(42)
  fn = jax.jit(artifacts.apply)  # one program: the type and mask shape are traced
  for kind in range(len(artifacts.names())):
    a, b = fn(x, key, 0.5, kind, kind % 3), fn(x, key, 0.5, kind, kind % 3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = fn(x, jax.random.key(7), 0.5, kind, kind % 3)
    assert not np.array_equal(a[1], c[1])
  out, mask, kind = artifacts.artifact("blotch")(x, key, 0.5)
  assert int(kind) == artifacts.type_id("blotch") and float(mask.sum()) > 0


def test_random_artifact_respects_allowed_types():
  x = _images(8)
  keys = jax.random.split(jax.random.key(0), 8)
  _, _, kinds = jax.vmap(lambda im, k: artifacts.random_artifact(im, k, types=(1, 4)))(x, keys)
  assert set(np.asarray(kinds).tolist()) <= {1, 4}


def test_psnr_ssim_hand_computed():
  x = jnp.zeros((1, 16, 16, 3))
  y = jnp.full((1, 16, 16, 3), 0.2)
  # MSE = 0.04 in [-1, 1] units, data range 2: 10 log10(4 / 0.04) = 20 dB
  assert np.isclose(metrics.psnr(x, y)[0], 20.0, atol=1e-4)
  assert np.isclose(metrics.ssim(x, x)[0], 1.0, atol=1e-6)
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  assert metrics.ssim(a, -a).max() < 0.0 < metrics.ssim(a, a + 0.01).min()


def test_numpy_psnr_ssim_match_jax_and_skimage():
  from skimage.metrics import structural_similarity
  rng = np.random.default_rng(1)
  a = rng.uniform(-1, 1, (2, 37, 53, 3)).astype(np.float32)   # odd sizes: the 'valid' filter's edges
  b = np.clip(a + rng.normal(0, 0.3, a.shape), -1, 1).astype(np.float32)
  np.testing.assert_allclose(metrics.psnr_np(a, b), np.asarray(metrics.psnr(a, b)), atol=1e-4)
  np.testing.assert_allclose(metrics.ssim_np(a, b), np.asarray(metrics.ssim(a, b)), atol=1e-5)
  ref = [structural_similarity((a[i] + 1) / 2, (b[i] + 1) / 2, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False, data_range=1.0) for i in range(2)]
  np.testing.assert_allclose(metrics.ssim_np(a, b), ref, atol=1e-5)
  assert metrics.ssim_np(a, a) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("kind", ["normal", "ties", "signed_zeros"])
def test_row_quantile_is_jnp_quantile(kind):
  """The fused detector's image score (a quantile of its map) by selection, not a sort:
  the order statistics exact, the interpolation jnp.quantile's."""
  rng = np.random.default_rng(3)
  a = rng.normal(size=(3, 1001)).astype(np.float32)
  if kind == "ties":
    a = np.round(a * 2) / 2
  if kind == "signed_zeros":
    a = np.abs(a)
    a[:, ::7] = 0.0
    a[:, ::11] = -0.0
  for q in (0.0, 0.25, 0.5, 0.9761029411764706, 0.999, 1.0):
    got = np.asarray(jax.jit(lambda v: metrics.row_quantile(v, q))(a))
    np.testing.assert_allclose(got, np.quantile(a, q, axis=-1), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got, np.asarray(jnp.quantile(a, q, axis=-1)), rtol=1e-6, atol=1e-7)
  for k in (0, 1, 500, 999, 1000):   # q on an element: the order statistic itself, bit for bit
    np.testing.assert_array_equal(np.asarray(metrics.row_quantile(jnp.asarray(a), k / 1000)), np.sort(a, -1)[:, k])
  single = np.array([[2.5]], np.float32)
  assert float(metrics.row_quantile(jnp.asarray(single), 0.3)[0]) == 2.5
  a[1, 17] = np.nan
  assert np.isnan(np.asarray(metrics.row_quantile(jnp.asarray(a), 0.5))).tolist() == [False, True, False]


def test_auroc_ap_hand_computed_and_against_sklearn():
  scores = np.array([0.1, 0.4, 0.35, 0.8])
  labels = np.array([0, 0, 1, 1])
  assert metrics.auroc(scores, labels) == pytest.approx(0.75)
  # AP: ranks 0.8(+) P=1 R=.5, 0.4(-), 0.35(+) P=2/3 R=1 -> .5*1 + .5*2/3
  assert metrics.average_precision(scores, labels) == pytest.approx(0.5 + 1 / 3)
  rng = np.random.default_rng(1)
  s = np.round(rng.normal(size=500), 1)  # with ties
  l = (rng.uniform(size=500) < 0.3 + 0.2 * (s > 0)).astype(int)
  assert metrics.auroc(s, l) == pytest.approx(skm.roc_auc_score(l, s), abs=1e-12)
  assert metrics.average_precision(s, l) == pytest.approx(skm.average_precision_score(l, s), abs=1e-12)


def test_ranked_scores_auroc_equals_auroc_of_the_written_out_resample():
  """The bootstrap's AUROC of a resample of items (each item's scores counted as often as
  it was drawn) is `auroc` on the resample's concatenated scores, ties included."""
  rng = np.random.default_rng(2)
  sizes = rng.integers(5, 40, 12)
  items = np.repeat(np.arange(12), sizes)
  s = np.round(rng.normal(size=items.size), 1)
  l = rng.uniform(size=items.size) < 0.3 + 0.3 * (s > 0)
  ranked = metrics.RankedScores(s, l, items)
  for _ in range(20):
    draw = rng.choice(12, 12, replace=True)
    rows = np.concatenate([np.flatnonzero(items == i) for i in draw])
    assert ranked.auroc(np.bincount(draw, minlength=12)) == pytest.approx(metrics.auroc(s[rows], l[rows]), abs=1e-12)
  assert np.isnan(ranked.auroc(np.bincount([0], minlength=12) * 0))


def test_aupro_hand_computed():
  masks = np.zeros((1, 10, 10), bool)
  masks[0, :2, :2] = True            # one region of 4 pixels
  maps = np.zeros((1, 10, 10))
  maps[0, :2, :2] = 1.0              # detected perfectly: PRO = 1 at FPR 0
  assert metrics.aupro(maps, masks) == pytest.approx(1.0)
  maps2 = np.zeros((1, 10, 10))
  maps2[0, :2, :1] = 1.0             # half of the region detected at any FPR < 1
  assert metrics.aupro(maps2, masks) == pytest.approx(0.5, abs=0.02)
  rng = np.random.default_rng(0)
  masks3 = np.zeros((4, 32, 32), bool)
  masks3[:, 8:16, 8:16] = True
  random = metrics.aupro(rng.uniform(size=(4, 32, 32)), masks3)
  assert random == pytest.approx(0.15, abs=0.04)  # chance: PRO = FPR, area/0.3 = 0.15
