"""The real-failure benchmark's construction (failures.py), on stand-in generators."""
import dataclasses
import json
import re

import numpy as np
import pytest

from stylegan_ad import detect, main_job, failures, metrics
from stylegan_ad.data import styles


def _photos(n, seed=0, size=(48, 72)):
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 256, (n, size[0] // 8, size[1] // 8, 3)).astype(np.uint8)
  return [np.kron(b, np.ones((8, 8, 1), np.uint8)) for b in base]


def _generators(strength=0.0):
  """'final' = the true style; 'weak' = the style blended toward the input."""
  f = lambda x: styles.cartoon(x).astype(np.float32) / 127.5 - 1.0
  weak = lambda x: 0.5 * f(x) + 0.5 * (x.astype(np.float32) / 127.5 - 1.0)
  noisy = lambda x: f(x) + strength * np.random.default_rng(x.size).normal(0, 1, x.shape).astype(np.float32)
  return {"final": noisy, "weak": weak}


def test_pool_has_each_generator_and_every_shift_of_the_final_one():
  pool = failures.build_pool(_photos(2), _generators(), styles.cartoon, max_side=64)
  per_photo = len(_generators()) + len(failures.SHIFTS) - 1
  assert len(pool) == 2 * per_photo and list(pool.photo) == [0] * per_photo + [1] * per_photo
  assert pool.generator.count("weak") == 2 and pool.where("final", "zoom").sum() == 2
  for x, y, t in zip(pool.inputs, pool.outputs, pool.targets):
    assert x.shape == y.shape == t.shape and max(x.shape[:2]) == 64  # downscaled to max_side
  # the truth of a shifted input is S of the shifted input
  i = int(np.flatnonzero(pool.where("final", "gray"))[0])
  gray = failures.SHIFTS["gray"](((pool.inputs[0] + 1) * 127.5).round().astype(np.uint8))
  np.testing.assert_allclose(pool.targets[i], styles.cartoon(gray) / 127.5 - 1.0, atol=1e-6)
  without = failures.build_pool(_photos(1), _generators(), None, max_side=64)
  assert without.targets is None and len(without) == per_photo
  # per-input work (G's alternate views) runs once: the generators on a photo as it is share it
  first = failures.unique_inputs(pool)
  assert len(np.unique(first)) == 2 * len(failures.SHIFTS)
  for i, j in enumerate(first):
    np.testing.assert_array_equal(pool.inputs[i], pool.inputs[j])


def test_truth_is_fixed_on_the_reference_pool_alone():
  ref = failures.build_pool(_photos(1, seed=1), _generators(0.2), styles.cartoon, max_side=64)
  truth = failures.fit_truth(ref, quantile=99.0, area_factor=2.0, min_region=4)
  final = ref.where("final", "none")
  errors = np.concatenate([truth.error(ref.outputs[i], ref.targets[i]).ravel() for i in np.flatnonzero(final)])
  assert truth.pixel_threshold == pytest.approx(np.percentile(errors, 99.0))
  own = max(truth.mask(ref.outputs[i], ref.targets[i]).mean() for i in np.flatnonzero(final))
  assert truth.area_cut == pytest.approx(max(0.01, 2.0 * own))
  # other reference outputs (weak G, shifts) do not move the thresholds
  changed = dataclasses.replace(ref, outputs=[y if f else -y for y, f in zip(ref.outputs, final)])
  assert failures.fit_truth(changed, area_factor=2.0, min_region=4) == truth
  with pytest.raises(ValueError, match="reference photos with true targets"):
    failures.fit_truth(failures.build_pool(_photos(1), _generators(), None, 64))


def test_labels_drop_specks_and_mark_worse_than_identity():
  truth = failures.Truth(pixel_threshold=0.5, area_cut=0.02, min_region=10, smooth=1)
  t = np.zeros((32, 32, 3), np.float32)
  y = t.copy()
  y[2, 2] = 1.0            # a 1-pixel speck: dropped
  y[10:20, 10:20] = 1.0    # a 100-pixel region: kept
  mask = truth.mask(y, t)
  assert not mask[2, 2] and mask[10:20, 10:20].all() and mask.sum() == 100
  x = t.copy()
  x[10:15] = 1.0           # the input itself is off there: G is no worse than doing nothing
  worse = truth.worse_than_identity(x, y, t)
  assert not worse[10:15].any() and worse[15:20, 10:20].all()


def test_bootstrap_resamples_whole_photos():
  pool = failures.build_pool(_photos(3), _generators(0.3), styles.cartoon, max_side=64)
  labels = failures.label(pool, failures.Truth(0.3, 0.05, min_region=4))
  rng = np.random.default_rng(0)
  score = -labels.psnr + rng.normal(0, 1, len(pool))
  maps = [m + rng.random(m.shape) for m in labels.masks]
  full = failures.evaluate(score, maps, pool, labels, boot=50)
  assert full["spearman_ci"][0] <= full["spearman"] <= full["spearman_ci"][1]
  # one photo: every resample by photo is that photo, so the interval is a point
  sel = pool.photo == pool.photo[np.argmax(labels.area)]
  one = failures.take(pool, sel)
  lab1 = failures.label(one, failures.Truth(0.3, 0.05, min_region=4))
  res = failures.evaluate(score[sel], [maps[i] for i in np.flatnonzero(sel)], one, lab1, boot=20)
  assert res["spearman_ci"][0] == pytest.approx(res["spearman_ci"][1]) == pytest.approx(res["spearman"])
  assert res["pixel_auroc_ci"][0] == pytest.approx(res["pixel_auroc_ci"][1])
  # what the report plots: every image's score, and the PRO curve whose area is the AUPRO
  assert full["image_scores"] == pytest.approx(list(score), abs=1e-5)
  curve = full["pro_curve"]
  assert curve["fpr"][0] == 0.0 and curve["fpr"][-1] == pytest.approx(0.3) and len(curve["fpr"]) <= 60
  assert np.all(np.diff(curve["fpr"]) >= 0) and np.all((0 <= np.array(curve["pro"])) & (np.array(curve["pro"]) <= 1))
  assert full["aupro"] == pytest.approx(metrics.aupro([m[::2, ::2] for m in maps],
                                                      [t[::2, ::2] for t in labels.masks]))


def test_describe_reports_the_anomalous_rate_and_its_bounds():
  pool = failures.build_pool(_photos(2), _generators(0.3), styles.cartoon, max_side=64)
  for cut, in_bounds in ((0.0, False), (1.0, False)):
    labels = failures.label(pool, failures.Truth(0.3, cut, min_region=4))
    d = failures.describe(pool, labels, failures.Truth(0.3, cut))
    assert d["rate_in_bounds"] is in_bounds and d["images"] == len(pool)
  labels = failures.label(pool, failures.Truth(0.3, 0.05, min_region=4))
  d = failures.describe(pool, labels, failures.Truth(0.3, 0.05))
  assert d["anomalous_rate"] == pytest.approx(labels.anomalous.mean())
  assert sum(v["images"] for v in d["variants"].values()) == len(pool)
  items = d["items"]  # per image, in pool order (the report's per-variant bars)
  assert items["variant"] == [f"{g}/{s}" for g, s in zip(pool.generator, pool.shift)]
  assert items["anomalous"] == list(labels.anomalous) and items["psnr"] == pytest.approx(list(labels.psnr), abs=1e-3)


def test_report_plots_are_drawn_from_the_summary_and_the_runs(tmp_path):
  from PIL import Image

  from stylegan_ad import plots, report
  pool = failures.build_pool(_photos(2), _generators(0.3), styles.cartoon, max_side=64)
  truth = failures.Truth(0.2, 0.5, min_region=4)   # (here the noisy "final" fails, the "weak" does not)
  labels = failures.label(pool, truth)
  assert 0 < labels.anomalous.sum() < len(pool)
  rng = np.random.default_rng(1)
  scorers = {name: failures.evaluate(-labels.psnr + rng.normal(0, k, len(pool)),
                                     [m + k * rng.random(m.shape) for m in labels.masks], pool, labels,
                                     threshold=-25.0, boot=5)
             for name, k in (("detector", 0.5), ("other", 3.0))}
  summary = {"real": {"pool": failures.describe(pool, labels, truth)}, "real_all_scorers": scorers,
             "detect_all_scorers": {"detector": {"per_type": {"noise": {"image_auroc": 0.9, "aupro": 0.5},
                                                              "blur": {"image_auroc": 0.7, "aupro": 0.2}}}}}
  workdir = tmp_path / "run"
  for name in ("gan", "detector"):
    (workdir / name).mkdir(parents=True)
    with open(workdir / name / "metrics.jsonl", "w") as f:
      for step in (10, 20, 30):
        f.write(json.dumps({"step": step, "loss": 1.0 / step, "g/l1": 0.5 / step, "steps_per_sec": 3.0}) + "\n")
      f.write('{"step": 40, "lo')   # a line torn by a kill is skipped
  out = tmp_path / "plots"
  drawn = plots.run_report_plots(str(out), summary, str(workdir))
  assert drawn == list(plots.PLOTS)
  for name in drawn:
    image = np.asarray(Image.open(out / name).convert("L"))
    assert image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 5, name  # drawn, not blank
  figures = "\n".join(report._figures(drawn, ("real_roc.png", "losses.png")))
  assert "![plot: real_roc.png](plots/real_roc.png)" in figures and plots.PLOTS["losses.png"] in figures
  page = report.markdown_to_html(figures)
  assert re.findall(r"<img class='plot' alt='[^']*' src='([^']*)'>", page) == ["plots/real_roc.png", "plots/losses.png"]
  # a run without real-failure figures draws the rest
  assert plots.run_report_plots(str(tmp_path / "p2"), {"real": {"skipped": "no targets"}}, str(workdir)) == \
      ["losses.png"]


class _Recorder(detect.Scorer):
  """Scores an output by its mean; records every input it was shown."""
  name = "recorder"

  def __init__(self):
    self.seen, self.scores = [], []
    super().__init__()
    self._jit = self._fn

  def _fn(self, y, x):
    self.seen.append(np.asarray(x))
    self.scores.append(np.asarray(y).mean(axis=(1, 2, 3)))
    return self.scores[-1], np.asarray(y).mean(-1)


def test_calibration_sees_only_clean_reference_and_train_outputs():
  """The threshold is the 1% tail of every clean output of the reference and train
  pools together: each seen once, no anomalous output, no test photo."""
  ref = failures.build_pool(_photos(1, seed=5), _generators(0.2), styles.cartoon, max_side=64)
  train = failures.build_pool(_photos(2, seed=7), _generators(0.2), styles.cartoon, max_side=64)
  test = failures.build_pool(_photos(2, seed=6), _generators(0.2), styles.cartoon, max_side=64)
  truth = failures.fit_truth(ref, min_region=4)
  real = main_job.RealPools(truth, ref, failures.label(ref, truth), test, failures.label(test, truth), train,
                            failures.label(train, truth))
  config = experiment_config()
  scorer = _Recorder()
  main_job.calibrate_on_clean_outputs(scorer, real, config)
  clean = [(p, np.flatnonzero(~l.anomalous)) for p, l in ((ref, real.reference_labels), (train, real.train_labels))]
  assert all(len(i) and len(i) < len(p) for p, i in clean)   # both pools have clean and anomalous outputs
  expected = [(p.inputs[i], p.outputs[i]) for p, idx in clean for i in idx]
  assert len(expected) < 100
  assert len(scorer.seen) == len(expected)
  for seen, (x, _) in zip(scorer.seen, expected):  # the photo, with the reflected border fullres adds
    assert np.array_equal(seen[0, 32:32 + x.shape[0], 32:32 + x.shape[1]], x)
  assert not any(np.array_equal(seen[0, 32:32 + x.shape[0], 32:32 + x.shape[1]], x)
                 for seen in scorer.seen for x in test.inputs)
  scores = np.concatenate(scorer.scores)
  assert scorer.threshold == detect.threshold_for_fpr(scores, config.detect.fpr) == scores.max()  # 1% of < 100


def experiment_config():
  from stylegan_ad import configs
  c = configs.default_config()
  c.failures.max_side = 64
  return c


def test_every_scorer_runs_on_whole_photos_without_targets():
  """The label-free scorers and the detector (seeing [x, y]) on a pool of data with no
  S(x): scores and maps at each photo's own size."""
  import jax
  import jax.numpy as jnp
  from experiments.configs import embedded as embedded_config
  from stylegan_ad import stages
  from stylegan_ad.train import loop, steps
  c = embedded_config.get_config("tiny")
  c.model.generator, c.model.depth = "residual_unet", 2  # local (norm-free): see below
  models = steps.make_models(c)
  z = jnp.zeros((1, 32, 32, 3))
  g = models.generator.init(jax.random.key(0), z)["params"]
  d = models.discriminator.init(jax.random.key(1), z)["params"]
  det = stages.make_detector(c)
  detp = det.init(jax.random.key(2), jnp.zeros((1, 32, 32, 7)))["params"]  # [x, y, TTA spread]
  stylize = lambda x: loop.stylize_photo(models, g, x)
  pool = failures.build_pool(_photos(2, size=(40, 56)), {"final": stylize, "other": stylize}, None, max_side=48,
                             shifts=("none", "hue"))
  assert pool.targets is None and len(pool) == 6
  clean = np.stack([o[:32, :32] for o in pool.outputs])
  content = np.stack([x[:32, :32] for x in pool.inputs])
  fd = detect.FeatureDistanceScorer(models.discriminator, d)
  fd.fit(clean, content)
  style = detect.StyleStatisticsScorer(models.discriminator, d)
  style.fit(clean, content)
  scorers = [detect.DiscriminatorScorer(models.discriminator, d), fd, style, detect.TTAScorer(models.generator, g),
             detect.DisagreementScorer("raw_vs_ema", models.generator, g),
             detect.DisagreementScorer("cycle", models.generator, g, cycle=True), detect.PaletteScorer(style.palette),
             stages.make_detector_scorer(c, detp, lambda v: steps.generate(models, g, v))]
  assert scorers[-1].sees_input and scorers[-1].sees_tta
  plain = {}
  for s in scorers:
    score, maps = failures.score_pool(s, pool, max_side=48)
    assert score.shape == (len(pool),) and np.isfinite(score).all(), s.name
    assert [m.shape for m in maps] == [x.shape[:2] for x in pool.inputs], s.name
    plain[s.name] = maps
  # with G's alternate views kept on the pool (computed once per input, on the photo
  # as the folder CLI runs G), every scorer scores as when the TTA scorer and the
  # detector run G themselves on the padded canvas: the same for a local G, up to the
  # reflected border's rounding
  from types import SimpleNamespace
  from stylegan_ad import fullres
  gan = SimpleNamespace(models=models, state=SimpleNamespace(ema={"ab": g}), config=c)
  pool.alts = main_job.pool_alternates(gan, pool)
  run = jax.jit(lambda v: {"alts": detect.tta_alternates(lambda u: steps.generate(models, g, u), v)})
  for x, a in zip(pool.inputs, pool.alts):
    assert a.shape == x.shape[:2] + (3,)
    np.testing.assert_array_equal(a, fullres.apply(run, x, fullres.run_tiling(c))["alts"])
  first = failures.unique_inputs(pool)
  assert len(set(first)) < len(pool) and all(pool.alts[i] is pool.alts[f] for i, f in enumerate(first))
  for s in scorers:
    maps = failures.score_pool(s, pool, max_side=48)[1]
    for m, p in zip(maps, plain[s.name]):
      inner = (slice(8, -8), slice(8, -8))
      # the TTA spread is per pixel: equal; the detector's wider field sees the border too
      # (the half-turned view's, which lies on the other side: one pixel in 576 moves 0.023)
      np.testing.assert_allclose(m[inner], p[inner], atol=1e-4 if s.name == "tta_variance" else 3e-2,
                                 err_msg=s.name)


def test_real_failure_benchmark_is_skipped_without_targets():
  from types import SimpleNamespace
  ds = SimpleNamespace(name="folder:/photos", style=None, reference_photos=None, train_photos=None,
                       test_photos=None)
  pools, crops, why = main_job.real_failure_pools(experiment_config(), SimpleNamespace(dataset=ds))
  assert pools is None and crops is None
  assert "folder:/photos has no true targets" in why and "\n" not in why


def test_the_restorer_learns_real_failures_toward_s_of_x(monkeypatch):
  """The restorer's training rows: synthetic artifacts restored toward the clean output,
  and G's real outputs (`stages.real_crops`: output, input, S(x) and the true mask cut at
  one window) restored toward the true target S(x), the seed's L_rec."""
  import jax
  import jax.numpy as jnp
  from stylegan_ad import configs, stages
  rng = np.random.default_rng(0)
  y = rng.uniform(-0.5, 0.5, (40, 56, 3)).astype(np.float32)   # G's output
  pool = failures.Pool([y * 0.5], [y], [y + 0.25], np.zeros(1, np.int32), ["ema"], ["none"], None)
  mask = y[..., 0] > 0
  labels = failures.Labels([mask], [mask], np.array([mask.mean()]), np.array([True]), np.array([20.0]))
  real = stages.real_crops(pool, labels, 0.01, 16, 3, seed=0)
  assert real["clean"].shape == (3, 16, 16, 3)
  np.testing.assert_allclose(real["target"], real["clean"] + 0.25, atol=1e-6)   # S(x) at the same window
  np.testing.assert_allclose(real["content"], real["clean"] * 0.5, atol=1e-6)
  np.testing.assert_array_equal(real["mask"], (real["clean"][..., 0] > 0).astype(np.float32))
  c = configs.default_config()
  c.detect.sees_tta = False
  c.detect.features = c.correct.features = 4
  c.detect.depth = c.correct.depth = 2
  seen = {}
  monkeypatch.setattr(stages.aux_trainer, "fit", lambda name, workdir, **kw: seen.update(kw))
  train = stages.Outputs(rng.uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32),
                         rng.uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32))
  det = stages.make_detector(c)
  z = jnp.zeros((1, 16, 16, 3))
  detp = det.init(jax.random.key(0), jnp.zeros((1, 16, 16, 6)))["params"]
  stages.train_restorer(c, "unused", train, None, [0], detp, real)
  arrays = seen["arrays"]
  np.testing.assert_array_equal(arrays["real"], [0, 0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(arrays["target"][:4], train.clean)      # synthetic rows: the clean output
  np.testing.assert_array_equal(arrays["target"][4:], real["target"])   # real rows: S(x)
  # the loss reads the target: a real row scored toward S(x) differs from one toward G's output
  resp = stages.make_restorer(c).init(jax.random.key(1), z, z[..., 0], z)["params"]
  b = {k: jnp.asarray(v[4:]) for k, v in arrays.items()}
  b["other"] = b["clean"]
  loss = lambda batch: float(seen["loss_fn"](resp, batch, jax.random.key(2))[0])
  assert loss(b) != pytest.approx(loss(dict(b, target=b["clean"])), rel=1e-3)
