import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylegan_ad import artifacts, configs, correct, detect, report
from stylegan_ad.data import pipeline as pipeline_lib
from stylegan_ad.errors import CheckpointError
from stylegan_ad.models import detector as detector_lib
from stylegan_ad.models.detector import Detector
from stylegan_ad.models.discriminator import Discriminator
from stylegan_ad.models.restorer import Restorer
from stylegan_ad import stages
from stylegan_ad.train import steps


def _images(n=8, size=32, seed=0):
  rng = np.random.default_rng(seed)
  return np.clip(rng.normal(0, 0.3, (n, size, size, 3)), -1, 1).astype(np.float32)


def test_threshold_reaches_target_fpr_on_held_out_clean_scores():
  rng = np.random.default_rng(0)
  calib, held_out = rng.normal(size=20000), rng.normal(size=20000)
  for fpr in (0.01, 0.05):
    t = detect.threshold_for_fpr(calib, fpr)
    assert np.mean(calib > t) <= fpr
    observed = np.mean(held_out > t)
    sigma = np.sqrt(fpr * (1 - fpr) / held_out.size)
    assert abs(observed - fpr) < 4 * sigma + 1.0 / calib.size


def test_scorers_calibrate_and_give_maps():
  x = _images(16)
  d = Discriminator(ndf=4, n_layers=2)
  dp = d.init(jax.random.key(0), x[:1])["params"]
  det = Detector(features=4, depth=2)
  detp = det.init(jax.random.key(1), x[:1])["params"]
  fd = detect.FeatureDistanceScorer(d, dp)
  fd.fit(x, x)
  for scorer in (detect.DiscriminatorScorer(d, dp), detect.DetectorScorer(det, detp), fd):
    s = scorer(x, x)
    assert s.score.shape == (16,) and s.map.shape == (16, 32, 32) and s.flagged is None
    t = scorer.calibrate(x, x, fpr=0.25)
    flagged = scorer(x, x).flagged
    assert flagged.mean() <= 0.25 and np.array_equal(flagged, scorer(x, x).score > t)


def test_detector_screen_is_calibrated_and_saved(tmp_path):
  x = _images(40, seed=2)
  det = Detector(features=4, depth=2)
  detp = det.init(jax.random.key(1), x[:1])["params"]
  scorer = detect.DetectorScorer(det, detp, views=4, screen_rate=0.25)
  t = scorer.calibrate(x, x, fpr=0.05)
  one_view = detect.DetectorScorer(det, detp)(x, x).score
  assert scorer.screen_threshold <= t
  assert 0 < np.mean(one_view > scorer.screen_threshold) <= 0.25
  path = str(tmp_path / "calibration.json")
  detect.save_calibration(path, [scorer], 0.05)
  loaded = detect.DetectorScorer(det, detp, views=4)
  detect.load_calibration(path, [loaded])
  assert (loaded.threshold, loaded.screen_threshold) == (t, scorer.screen_threshold)
  # one view, or a zero rate: no screen
  for views, rate in ((1, 0.25), (4, 0.0)):
    plain = detect.DetectorScorer(det, detp, views=views, screen_rate=rate)
    plain.calibrate(x, x, fpr=0.05)
    assert plain.screen_threshold is None


def test_paired_discriminator_scorers_judge_the_pair():
  x, y = _images(4), _images(4, seed=3)
  d = Discriminator(ndf=4, n_layers=2)
  dp = d.init(jax.random.key(0), np.concatenate([x, y], -1)[:1])["params"]
  scorer = detect.DiscriminatorScorer(d, dp, conditional=True)
  assert not np.allclose(scorer(y, x).score, scorer(y, y).score)
  fd = detect.FeatureDistanceScorer(d, dp, conditional=True)
  fd.fit(y, x)
  assert fd(y, x).map.shape == (4, 32, 32)


def test_feature_distance_separates_noise_from_clean():
  x = _images(64, seed=1) * 0.2
  d = Discriminator(ndf=4, n_layers=2)
  dp = d.init(jax.random.key(0), x[:1])["params"]
  fd = detect.FeatureDistanceScorer(d, dp)
  fd.fit(x[:48], x[:48])
  noisy = np.clip(x[48:] + np.random.default_rng(2).normal(0, 0.8, x[48:].shape), -1, 1).astype(np.float32)
  assert fd(noisy, noisy).score.min() > fd(x[48:], x[48:]).score.max()


def test_make_test_set_and_evaluate():
  clean = _images(6)
  test = detect.make_test_set(clean, clean[::-1], list(range(len(artifacts.names()))), seed=0, copies=2)
  labels = test["is_anomalous"] > 0
  assert (~labels).sum() == 6 and labels.sum() >= 10
  assert np.all(test["masks"][~labels] == 0) and np.all(test["masks"][labels].sum((1, 2)) > 0)
  # a perfect scorer: the true masks
  perfect = detect.Scores(labels.astype(float) + test["masks"].mean((1, 2)), test["masks"], None)
  res = detect.evaluate_scorer(perfect, test)
  assert res["image_auroc"] == 1.0 and res["pixel_auroc"] == 1.0 and res["aupro"] > 0.99
  table = report.detection_table({"seen": {"perfect": res}})
  assert "| seen | perfect | 1.000 | 1.000 | 1.000 |" in table


def test_restorer_keeps_pixels_outside_the_mask():
  x = jnp.asarray(_images(2))
  m = np.zeros((2, 32, 32), np.float32)
  m[:, 8:20, 4:30] = np.random.default_rng(0).uniform(0.1, 1, (2, 12, 26))
  r = Restorer(features=4, depth=2)
  params = r.init(jax.random.key(0), x, jnp.asarray(m), x[::-1])
  # the head starts at zero (identity); give every weight a random value so the
  # repair really changes pixels
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(tree, [0.3 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])
  out = np.asarray(r.apply(params, x, jnp.asarray(m), x[::-1]))
  np.testing.assert_array_equal(out[m == 0], np.asarray(x)[m == 0])
  assert not np.array_equal(out[m > 0], np.asarray(x)[m > 0])


@pytest.fixture(scope="module")
def corrector():
  c = configs.default_config()
  c.data.crop_size = 32
  c.model.ngf, c.model.n_blocks, c.model.ndf = 4, 1, 4
  c.detect.features = c.correct.features = 4
  c.detect.depth = c.correct.depth = 2
  models = steps.make_models(c)
  g = models.generator.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  det, res = stages.make_detector(c), stages.make_restorer(c)
  z = jnp.zeros((1, 32, 32, 3))
  detp = det.init(jax.random.key(7), jnp.zeros((1, 32, 32, 7)))["params"]  # it sees [x, y, TTA spread]
  resp = res.init(jax.random.key(2), z, z[..., 0], z)["params"]
  x = _images(8)
  y = np.asarray(steps.generate(models, g, jnp.asarray(x)))
  alts = detect.tta_alternates(lambda v: steps.generate(models, g, v), jnp.asarray(x))
  scores = np.asarray(detector_lib.predict(det, detp, jnp.asarray(y), 1, x=jnp.asarray(x), alts=alts)[0])
  threshold = float(np.median(scores))
  c = correct.Corrector(models, det, res, threshold, 3, 2, sees_input=True, sees_tta=True)
  return c, detp, resp, g, x, y, scores


def test_tta_context_is_x_and_g_on_its_half_turn(corrector):
  """The detector's context: x, then G on x turned half a turn (mirrored and flipped),
  turned back: one generator pass; the TTA average regeneration is the mean of G(x) and
  that view, the context's view reused."""
  c, _, _, g, x, y, _ = corrector
  ctx = np.asarray(correct.context(c, g, jnp.asarray(x)))
  assert ctx.shape == x.shape[:3] + (detect.CONTEXT_CHANNELS,) == x.shape[:3] + (6,)
  np.testing.assert_array_equal(ctx[..., :3], x)
  gen = lambda v: np.asarray(steps.generate(c.models, g, jnp.asarray(v)))
  np.testing.assert_allclose(ctx[..., 3:6], gen(x[:, ::-1, ::-1])[:, ::-1, ::-1], atol=1e-5)
  assert np.abs(ctx[..., 3:6] - y).max() > 1e-3   # G is not symmetric: the view differs
  two = (y + ctx[..., 3:6]) / 2
  g_fn = lambda v: steps.generate(c.models, g, v)
  np.testing.assert_allclose(np.asarray(correct.tta_average(g_fn, jnp.asarray(x))), two, atol=1e-5)
  # from the context alone: no generator pass (a generator that must not be called)
  def never(v):
    raise AssertionError("the TTA average ran G although G(x) and the view were given")
  np.testing.assert_allclose(np.asarray(correct.tta_average(never, jnp.asarray(x), jnp.asarray(y),
                                                            jnp.asarray(ctx[..., 3:6]))), two, atol=1e-6)
  # the spread the detector sees is zero where the view agrees with the output
  spread = detector_lib.tta_spread(jnp.asarray(y), jnp.asarray(y))
  assert float(jnp.abs(spread).max()) == 0.0


def test_unflagged_outputs_are_bit_identical(corrector):
  c, detp, resp, g, x, y, scores = corrector
  out = correct.run_batched(c, detp, resp, g, x, y, batch=4)
  unflagged = scores <= c.threshold
  assert unflagged.any() and (~unflagged).any()
  np.testing.assert_array_equal(out["output"][unflagged], y[unflagged])
  assert np.all(out["verdict"][unflagged] == 0) and np.all(out["verdict"][~unflagged] > 0)
  assert set(out) >= {"output", "verdict", "score_before", "score_after", "map", "restored"}


def test_stylize_and_correct_is_one_program(corrector):
  c, detp, resp, g, x, y, _ = corrector
  fn = jax.jit(lambda xb: correct.stylize_and_correct(c, detp, resp, g, xb, jax.random.key(0)))
  out = fn(jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(out["stylized"]), y, atol=1e-5)
  assert out["verdict"].shape == (8,)


@pytest.fixture(scope="module")
def screened(corrector):
  """The fixture's models behind a 4-view score with a 1-view screen that passes half."""
  c, detp, resp, g, x, y, _ = corrector
  alts = detect.tta_alternates(lambda v: steps.generate(c.models, g, v), jnp.asarray(x))
  one = np.asarray(detector_lib.predict(c.detector, detp, jnp.asarray(y), 1, x=jnp.asarray(x), alts=alts)[0])
  full = np.asarray(detector_lib.predict(c.detector, detp, jnp.asarray(y), 4, x=jnp.asarray(x), alts=alts)[0])
  threshold = float(np.median(full))
  screen = min(float(np.median(one)), threshold)
  sc = dataclasses.replace(c, threshold=threshold, views=4, screen=screen)
  return sc, one, full


def test_screen_gives_the_full_score_only_to_images_that_pass_it(corrector, screened, monkeypatch):
  _, detp, resp, g, x, y, _ = corrector
  sc, one, full = screened
  passed = one > sc.screen
  assert passed.any() and (~passed).any()
  rows = []
  score_jit = correct._score_jit
  def spy(c, det_params, yb, xb, views, skip=0):
    rows.append((views, skip, yb.shape[0]))
    return score_jit(c, det_params, yb, xb, views, skip)
  monkeypatch.setattr(correct, "_score_jit", spy)
  out = correct.run_batched(sc, detp, resp, g, x, y, batch=8)
  expected = np.where(passed, full, one)
  np.testing.assert_allclose(out["score_before"], expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(out["verdict"] > 0, expected > sc.threshold)
  # the first look is one view for every image; the other views only for those that passed,
  # in whole batches (the last one padded: one compiled shape); nothing flagged here, so
  # no re-scoring after a correction
  rows.clear()
  correct.run_batched(dataclasses.replace(sc, threshold=np.inf), detp, resp, g, x, y, batch=4)
  assert {r for r in rows if r[0] == 1} == {(1, 0, 4)} and len([r for r in rows if r[0] == 1]) == -(-len(x) // 4)
  rest = [r for r in rows if r[0] != 1]
  assert set(rest) == {(4, 1, 4)} and len(rest) == -(-passed.sum() // 4) < -(-len(x) // 4)


@pytest.mark.parametrize("screen,stylized", [(False, False), (True, False), (True, True)])
def test_gated_path_matches_the_one_program_path(corrector, screened, screen, stylized, monkeypatch):
  c, detp, resp, g, x, y, _ = corrector
  c = screened[0] if screen else c
  attempts = []
  regenerate_jit = correct._regenerate_jit
  def spy(c, det_params, g_params, xb, k, key, gx=None):
    attempts.append((k, gx is not None))
    return regenerate_jit(c, det_params, g_params, xb, k, key, gx)
  monkeypatch.setattr(correct, "_regenerate_jit", spy)
  key = jax.random.key(0)
  if stylized:  # the corrector stylizes x itself
    gated = correct.run_batched(c, detp, resp, g, x, None, seed=0, batch=4)
    whole = jax.jit(lambda xb: correct.stylize_and_correct(c, detp, resp, g, xb, key))(jnp.asarray(x))
    np.testing.assert_allclose(gated["stylized"], np.asarray(whole["stylized"]), atol=1e-5)
  else:
    gated = correct.run_batched(c, detp, resp, g, x, y, seed=0, batch=4)
    whole = jax.jit(lambda xb, yb: correct.correct_outputs(c, detp, resp, g, xb, yb, key))(
        jnp.asarray(x), jnp.asarray(y))
  # both attempts ran; the TTA average (k = 0) reuses G(x) only where the path made it
  assert {k for k, _ in attempts} == {0, 1}
  assert {(k, reused) for k, reused in attempts} == {(0, stylized), (1, False)}
  np.testing.assert_array_equal(gated["verdict"], np.asarray(whole["verdict"]))
  np.testing.assert_array_equal(gated["attempt"], np.asarray(whole["attempt"]))
  # every "regenerated" output names its attempt; a "repaired" one is the restorer's
  v, kept = gated["verdict"], gated["attempt"]
  assert (kept >= 0).any() and np.all(kept[v < 2] == -1) and np.all(kept[v == 2] >= 0)
  # a candidate is kept only where the detector passes it: a failed image comes back as it was
  assert np.all(kept[v == 3] == -1) and np.all(gated["score_after"][(v == 1) | (v == 2)] <= c.threshold)
  np.testing.assert_array_equal(gated["output"][v == 3], gated["stylized"][v == 3])
  np.testing.assert_allclose(gated["output"], np.asarray(whole["output"]), atol=1e-5)
  np.testing.assert_allclose(gated["score_before"], np.asarray(whole["score_before"]), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(gated["score_after"], np.asarray(whole["score_after"]), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(gated["map"], np.asarray(whole["map"]), atol=1e-5)


def test_calibration_split_keeps_every_view_of_an_image_on_one_side():
  c = configs.default_config()
  c.data.crop_size = 32
  c.model.generator, c.model.ngf, c.model.n_blocks, c.model.ndf = "resnet", 4, 1, 4
  models = steps.make_models(c)
  g = models.generator.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  photos = [np.random.default_rng(i).integers(0, 256, (36, 40, 3), dtype=np.uint8) for i in range(8)]
  out = stages.generator_outputs(models, g, photos, None, 32, corners=True, alternates=True)
  assert out.clean.shape == (40, 32, 32, 3) and out.alts.shape == (40, 32, 32, 3)
  # G ran on the whole photo (reflect-padded to 64x64), and its crops were kept
  whole = np.pad(pipeline_lib.to_float(photos[1])[None], ((0, 0), (0, 28), (0, 24), (0, 0)), mode="reflect")
  gen = lambda v: steps.generate(models, g, v)
  np.testing.assert_allclose(out.clean[5], np.asarray(gen(whole))[0, 2:34, 4:36], atol=1e-5)
  np.testing.assert_allclose(out.alts[6], np.asarray(detect.tta_alternates(gen, whole))[0, :32, :32], atol=1e-5)
  np.testing.assert_array_equal(out.content[5], pipeline_lib.to_float(photos[1][2:34, 4:36]))
  np.testing.assert_array_equal(out.content[6], pipeline_lib.to_float(photos[1][:32, :32]))
  fit, calib = stages.split_calibration(out, 0.25, seed=0)
  assert len(calib.clean) == 10 and len(fit.clean) == 30
  assert not set(fit.groups) & set(calib.groups)


def test_test_time_augmentation_averages_the_symmetries():
  det = Detector(features=4, depth=2)
  y = jnp.asarray(_images(2))
  p = det.init(jax.random.key(0), y)["params"]
  s1, m1 = detector_lib.predict(det, p, y, views=1)
  out = det.apply({"params": p}, y)
  np.testing.assert_allclose(s1, out["image"], rtol=1e-6)
  s2, m2 = detector_lib.predict(det, p, y, views=2)
  flipped = det.apply({"params": p}, y[:, :, ::-1])
  np.testing.assert_allclose(s2, (out["image"] + flipped["image"]) / 2, rtol=1e-5)
  np.testing.assert_allclose(m2, (jax.nn.sigmoid(out["pixel"]) + jax.nn.sigmoid(flipped["pixel"])[:, :, ::-1]) / 2,
                             rtol=1e-5)
  # a symmetric average: the 8-view map of a turned image is the turned map
  _, m8 = detector_lib.predict(det, p, y, views=8)
  _, m8r = detector_lib.predict(det, p, jnp.rot90(y, 1, axes=(1, 2)), views=8)
  np.testing.assert_allclose(m8r, jnp.rot90(m8, 1, axes=(1, 2)), atol=1e-5)
  # an oblong image: its turned views have another shape (two detector calls), same average
  wide = y[:, :, :-4]
  s8w, m8w = detector_lib.predict(det, p, wide, views=8)
  want_s, want_m = 0.0, 0.0
  for turns, flip in detector_lib.SYMMETRIES:
    v = jnp.rot90(wide, turns, axes=(1, 2))
    out = det.apply({"params": p}, v[:, :, ::-1] if flip else v)
    m = jax.nn.sigmoid(out["pixel"])
    want_s, want_m = want_s + out["image"] / 8, want_m + jnp.rot90(m[:, :, ::-1] if flip else m, -turns, axes=(1, 2)) / 8
  np.testing.assert_allclose(s8w, want_s, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m8w, want_m, atol=1e-6)


def test_aux_batches_are_aligned_deterministic_and_use_all_8_symmetries():
  from stylegan_ad.train import aux_trainer
  row = np.arange(4 * 4 * 3, dtype=np.float32).reshape(1, 4, 4, 3)
  arrays = {"clean": row, "content": 2 * row}
  symmetries = [np.rot90(row[0], t, axes=(0, 1))[:, ::-1] if f else np.rot90(row[0], t, axes=(0, 1))
                for t in range(4) for f in (False, True)]
  seen = set()
  for step in range(40):
    b = aux_trainer.sample_batch(arrays, 4, seed=3, step=step)
    np.testing.assert_array_equal(b["content"], 2 * b["clean"])  # one transform per row
    for img in b["clean"]:
      matches = [i for i, s in enumerate(symmetries) if np.array_equal(img, s)]
      assert len(matches) == 1
      seen.add(matches[0])
  assert seen == set(range(8))
  again = aux_trainer.sample_batch(arrays, 4, seed=3, step=7)
  np.testing.assert_array_equal(again["clean"], aux_trainer.sample_batch(arrays, 4, seed=3, step=7)["clean"])


def test_the_kept_candidate_is_the_one_the_detector_scores_lowest(corrector):
  """Every candidate of a flagged image is scored; of those that pass, the lowest wins
  (not the first that passes: the restorer's candidate can pass by a hair)."""
  c, detp, resp, g, x, y, _ = corrector
  c = dataclasses.replace(c, attempts=3)
  key = jax.random.key(0)
  out = correct.run_batched(c, detp, resp, g, x, y, seed=0, batch=4)
  ctx = correct.context(c, g, jnp.asarray(x))
  s0, p0 = correct._judge(c, detp, jnp.asarray(y), ctx)
  cands = [correct._restore(c, detp, resp, ctx, jnp.asarray(y), p0)]
  cands += [correct._regenerate(c, detp, g, ctx, k, key) for k in range(c.attempts)]
  scores = np.stack([np.asarray(s) for _, s in cands])           # [candidate, image]
  passing = np.where(scores <= c.threshold, scores, np.inf)
  flagged = np.asarray(s0) > c.threshold
  assert flagged.any() and np.isfinite(passing[:, flagged]).any()
  for i in np.flatnonzero(flagged):
    if np.isinf(passing[:, i]).all():
      assert out["verdict"][i] == 3 and np.array_equal(out["output"][i], y[i])
      continue
    best = int(np.argmin(passing[:, i]))
    assert out["verdict"][i] == (1 if best == 0 else 2) and out["attempt"][i] == best - 1
    np.testing.assert_allclose(out["output"][i], np.asarray(cands[best][0][i]), atol=1e-5)
    np.testing.assert_allclose(out["score_after"][i], scores[best, i], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("margins,verdict,attempt", [
    ((0.01, 0.05, 0.03, -1.0), 2, 0),    # every candidate but the last passes: the lowest, not the first
    ((0.06, 0.02, 0.05, -1.0), 1, -1),   # the restorer's is the lowest
    ((-1.0, -1.0, 0.01, 0.04), 2, 2),    # only later regenerations pass: the lower of them
    ((-1.0, -1.0, -1.0, -1.0), 3, -1),   # none passes: the output comes back unchanged
])
def test_the_gated_path_keeps_the_lowest_passing_candidate(corrector, monkeypatch, margins, verdict, attempt):
  """Candidates with set scores (threshold - margin; a negative margin fails): the kept
  one is the lowest of those that pass, whatever its place in the order."""
  c, detp, resp, g, x, y, scores = corrector
  c = dataclasses.replace(c, attempts=3)
  score = lambda i, n: jnp.full((n,), c.threshold - margins[i], jnp.float32)
  image = lambda i, ref: jnp.full(ref.shape[:3] + (3,), 0.1 * (i + 1), jnp.float32)
  monkeypatch.setattr(correct, "_restore_jit", lambda c_, dp, rp, xb, yb, pb: (image(0, yb), score(0, len(yb))))
  monkeypatch.setattr(correct, "_regenerate_jit",
                      lambda c_, dp, gp, xb, k, key, gb=None: (image(k + 1, xb), score(k + 1, len(xb))))
  out = correct.run_batched(c, detp, resp, g, x, y, batch=4)
  flagged = out["verdict"] > 0
  assert flagged.any() and np.array_equal(flagged, out["score_before"] > c.threshold)
  assert np.all(out["verdict"][flagged] == verdict) and np.all(out["attempt"][flagged] == attempt)
  kept = {1: 0, 2: attempt + 1}.get(verdict)
  expected = y[flagged] if kept is None else np.full_like(y[flagged], 0.1 * (kept + 1))
  np.testing.assert_array_equal(out["output"][flagged], expected)
  np.testing.assert_array_equal(out["output"][~flagged], y[~flagged])


def test_the_image_score_adds_g_spread_and_the_weight_travels_with_the_thresholds(corrector, tmp_path):
  """detect.spread_weight: the image score + w * log(G's mean spread over the image), in
  every view (so a screened score averages to the same); saved with the thresholds, and a
  calibration from before the term loads as w = 0."""
  c, detp, _, g, x, y, _ = corrector
  gen = lambda v: steps.generate(c.models, g, v)
  alts = detect.tta_alternates(gen, jnp.asarray(x))
  xj, yj = jnp.asarray(x), jnp.asarray(y)
  plain, pmap = detector_lib.predict(c.detector, detp, yj, 4, x=xj, alts=alts)
  fused, fmap = detector_lib.predict(c.detector, detp, yj, 4, x=xj, alts=alts, spread_weight=2.0)
  spread = np.asarray(detector_lib.tta_spread(yj, alts)).mean(axis=(1, 2, 3)) / detector_lib.TTA_SCALE
  np.testing.assert_allclose(np.asarray(fused), np.asarray(plain) + 2.0 * np.log(spread + 1e-6), rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(np.asarray(fmap), np.asarray(pmap))
  # an output G agrees with less (noise on it) scores higher by the term
  noisy = yj + 0.2 * jax.random.normal(jax.random.key(3), yj.shape)
  assert np.all(np.asarray(detector_lib.spread_score(noisy, alts)) > np.asarray(detector_lib.spread_score(yj, alts)))
  scorer = detect.DetectorScorer(c.detector, detp, views=4, sees_input=True, generator=gen, spread_weight=2.0)
  np.testing.assert_allclose(scorer(y, x).score, np.asarray(fused), rtol=1e-4, atol=1e-4)
  assert scorer.one_view().spread_weight == 2.0
  scorer.calibrate(y, x, fpr=0.25)
  path = str(tmp_path / "calibration.json")
  detect.save_calibration(path, [scorer], 0.25)
  loaded = detect.DetectorScorer(c.detector, detp, views=4, sees_input=True, generator=gen)
  detect.load_calibration(path, [loaded])
  assert loaded.spread_weight == 2.0 and loaded.threshold == scorer.threshold
  data = json.load(open(path))
  del data["spread_weights"]
  json.dump(data, open(path, "w"))
  detect.load_calibration(path, [loaded])
  assert loaded.spread_weight == 0.0
  # a calibration of an older build, whose detector saw three alternate views, is refused
  del data["alternate_view"]
  json.dump(data, open(path, "w"))
  with pytest.raises(CheckpointError, match="mirrored, flipped and shifted views.*run the main job on a new"):
    detect.load_calibration(path, [loaded])
  # ... and so is its folder, before the main job resumes anything (no file: a new run)
  from stylegan_ad import main_job
  os.makedirs(tmp_path / "run" / "detector")
  os.replace(path, tmp_path / "run" / "detector" / "calibration.json")
  with pytest.raises(CheckpointError, match="calibration.json: this run's detector saw"):
    main_job.detector_stage(configs.default_config(), str(tmp_path / "run"))
  detect.check_alternate_view(str(tmp_path / "missing.json"))
  detect.save_calibration(path, [scorer], 0.25)
  detect.check_alternate_view(path)
  assert correct.Corrector.build(configs.default_config(), c.models, scorer).spread_weight == 2.0


def test_fit_fusion_recovers_a_known_logistic_model():
  """The fusion's regression finds the weights that made the labels."""
  rng = np.random.default_rng(0)
  feats = [rng.normal(size=(40, 50, 3)) * (1.0, 2.0, 0.5) + (0.0, 1.0, -1.0) for _ in range(20)]
  w, b = np.array([1.5, -0.5, 0.8]), -2.0
  masks = [rng.random((40, 50)) < 1 / (1 + np.exp(-(f @ w + b))) for f in feats]
  fusion = detect.fit_fusion(feats, masks, style=None, quantile=0.9, stride=1, ridge=1e-6)
  np.testing.assert_allclose(fusion.weights, w, atol=0.1)
  assert abs(fusion.bias - b) < 0.15 and fusion.quantile == 0.9
  # images weighted: a second set made by other weights, given little weight, moves them little
  other = [rng.random((40, 50)) < 1 / (1 + np.exp(-(f @ -w + b))) for f in feats]
  weighted = detect.fit_fusion(feats + feats, masks + other, style=None, quantile=0.9,
                               image_weights=[1.0] * 20 + [0.02] * 20, stride=1, ridge=1e-6)
  np.testing.assert_allclose(weighted.weights, w, atol=0.3)
  assert np.all(np.abs(weighted.weights) < np.abs(w))
  with pytest.raises(ValueError, match="failing and clean pixels"):
    detect.fit_fusion(feats, [np.zeros((40, 50), bool)] * 20, style=None, quantile=0.9)
  # any number of features (scripts/fusion_probe.py fits four): the same model
  # with a fourth feature that made no label gets a weight near 0 there
  extra = [np.concatenate([f, rng.normal(size=(40, 50, 1))], -1) for f in feats]
  w4, b4 = detect.fit_logistic(extra, masks, stride=1, ridge=1e-6)
  np.testing.assert_allclose(w4, np.r_[w, 0.0], atol=0.1)
  assert abs(b4 - b) < 0.15


def test_palette_likelihood_finds_colours_between_the_styles_levels():
  """The palette's map is the windowed negative log-likelihood of the style images'
  colour histogram: low on the style's own colours, high on a colour between them."""
  rng = np.random.default_rng(0)
  levels = np.array([-0.8, -0.2, 0.4], np.float32)
  style = levels[rng.integers(0, 3, size=(6, 32, 32, 3))] + rng.normal(0, 0.02, (6, 32, 32, 3)).astype(np.float32)
  palette = detect.Palette.fit(style, window=3)
  y = np.full((1, 16, 16, 3), -0.2, np.float32)
  y[0, 4:12, 4:12] = 0.1            # between two levels, in a flat region
  m = np.asarray(palette.map(jnp.asarray(y)))[0]
  assert m.shape == (16, 16)
  assert m[8, 8] > m[0, 0] + 5 and m[0:2, 0:2].std() < 1e-5   # 3x3 mean: the border as the interior
  np.testing.assert_allclose(m[8, 8], -palette.log_p[8, 8, 8], rtol=1e-6)   # (0.1 + 1) / 2 * 16 -> bin 8
  back = detect.Palette.from_json(json.loads(json.dumps(palette.to_json())))
  np.testing.assert_allclose(np.asarray(back.map(jnp.asarray(y))), m[None], atol=1e-3)


def test_fusion_with_the_palette_takes_the_larger_probability():
  """With a palette model the fused map is max(linear model, palette model); a fusion
  saved with it loads with it, one saved without it loads without it."""
  rng = np.random.default_rng(1)
  f = jnp.asarray(rng.normal(size=(2, 8, 8, 4)).astype(np.float32))
  palette = detect.Palette(np.log(np.full((4, 4, 4), 1 / 64, np.float32)), 3)
  linear = detect.Fusion((1.0, 0.5, 0.7), -1.0, 0.9, style=None)
  both = detect.Fusion((1.0, 0.5, 0.7), -1.0, 0.9, style=None, palette=palette, palette_fit=(2.0, -3.0))
  sig = lambda v: 1 / (1 + np.exp(-v))
  a = sig(np.asarray(f[..., :3]) @ np.array([1.0, 0.5, 0.7]) - 1.0)
  b = sig(2.0 * np.asarray(f[..., 3]) - 3.0)
  np.testing.assert_allclose(linear.from_features(f)[1], a, atol=1e-6)
  np.testing.assert_allclose(both.from_features(f)[1], np.maximum(a, b), atol=1e-6)
  assert (b > a).any() and (a > b).any()
  d = Discriminator(ndf=4, n_layers=2)
  x = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  st = detect.StyleStatisticsScorer(d, d.init(jax.random.key(5), x[:1])["params"])
  st.fit(x, x)
  assert isinstance(st.palette, detect.Palette)   # fitted on the same style images
  for fusion, has in ((linear, False), (both, True)):
    fusion.style = st
    data = json.loads(json.dumps(fusion.to_json()))
    back = detect.Fusion.from_json(data, detect.StyleStatisticsScorer(d, st.d_params))
    assert (back.palette_fit is not None) == has and ("palette" in data) == has
    np.testing.assert_allclose(back.from_features(f)[1], fusion.from_features(f)[1], atol=1e-6)


def test_fused_detector_scores_saves_and_corrects(corrector, tmp_path):
  """The fused map is the sigmoid of the weighted features (the network's logit, the
  style-statistics and G-spread logs), the score its quantile; it is saved with the
  thresholds and loaded back (refused without the discriminator it needs); the
  correction path uses it, unscreened, with the gated and one-program paths agreeing."""
  c, detp, resp, g, x, y, _ = corrector
  gen = lambda v: steps.generate(c.models, g, v)
  d = Discriminator(ndf=4, n_layers=2)
  style = detect.StyleStatisticsScorer(d, d.init(jax.random.key(5), x[:1])["params"])
  style.fit(y, x)
  fusion = detect.Fusion((1.0, 0.5, 0.7), -1.0, 0.9, style)
  scorer = detect.DetectorScorer(c.detector, detp, views=4, screen_rate=0.3, sees_input=True, generator=gen)
  scorer.set_fusion(fusion)
  s = scorer(y, x)
  alts = np.asarray(detect.tta_alternates(gen, jnp.asarray(x)))
  prob = detect.DetectorScorer(c.detector, detp, views=4, sees_input=True, generator=gen)(y, x).map
  p = np.clip(prob, 1e-4, 1 - 1e-4)
  spread = np.asarray(detect.tta_spread_map(jnp.asarray(y), jnp.asarray(alts)))
  by_hand = np.stack([np.log(p / (1 - p)), np.log(style(y, x).map + 1e-4), np.log(spread + 1e-4)], -1)
  expected = 1 / (1 + np.exp(-(by_hand @ np.array(fusion.weights) + fusion.bias)))
  np.testing.assert_allclose(s.map, expected, atol=1e-4)
  np.testing.assert_allclose(s.score, np.quantile(s.map.reshape(len(x), -1), 0.9, axis=1), atol=1e-5)
  scorer.calibrate(y, x, fpr=0.25)
  assert scorer.screen_threshold is None   # a fused score is no average over views: no screen
  path = str(tmp_path / "calibration.json")
  detect.save_calibration(path, [scorer], 0.25)
  loaded = detect.DetectorScorer(c.detector, detp, views=4, sees_input=True, generator=gen)
  with pytest.raises(ValueError, match="discriminator"):
    detect.load_calibration(path, [loaded])
  detect.load_calibration(path, [loaded], detect.StyleStatisticsScorer(d, style.d_params))
  assert loaded.fusion.weights == fusion.weights and loaded.threshold == scorer.threshold
  np.testing.assert_allclose(loaded(y, x).score, s.score, atol=1e-6)
  with pytest.raises(ValueError, match="sees_tta"):
    detect.DetectorScorer(c.detector, detp).set_fusion(fusion)
  cfg = configs.default_config()
  cfg.correct.features, cfg.correct.depth = 4, 2   # the fixture's restorer
  corr = correct.Corrector.build(cfg, c.models, loaded)
  assert corr.fusion is loaded.fusion and not corr.screened
  key = jax.random.key(0)
  gated = correct.run_batched(corr, detp, resp, g, x, y, seed=0, batch=4)
  whole = jax.jit(lambda xb, yb: correct.correct_outputs(corr, detp, resp, g, xb, yb, key))(
      jnp.asarray(x), jnp.asarray(y))
  np.testing.assert_allclose(gated["score_before"], s.score, atol=1e-5)
  np.testing.assert_array_equal(gated["verdict"], np.asarray(whole["verdict"]))
  assert 0 < (gated["verdict"] > 0).sum() < len(x)
  clean = gated["verdict"] == 0
  np.testing.assert_array_equal(gated["output"][clean], y[clean])
