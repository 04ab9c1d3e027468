"""Benchmarks, one JSON object per call (stdout, and --out if given).

  python scripts/benchmark.py --what=pipeline --size=128 --batch=1
  python scripts/benchmark.py --what=train_step --size=128 --batch=1   # reference-size models
  python scripts/benchmark.py --what=peak
  python scripts/benchmark.py --what=inference --size=128 --batch=8 --flagged=0.1
  python scripts/benchmark.py --what=restart   # also counts recompilations after a restart
  python scripts/benchmark.py --what=photo --workdir=runs/embedded --photo=1024x768   # one photo, own size
  python scripts/benchmark.py --what=photo --workdir=runs/embedded --photo=4000x3000 --max_side=4000  # tiled

Figures are medians after warm-up; `compile_sec` is the first call; `peak_rss_mb` is
the process's peak resident memory. `bash scripts/benchmarks.sh` runs the whole set.
"""
import dataclasses
import functools
import json
import os
import resource
import statistics
import sys
import time

from absl import app, flags

_WHAT = flags.DEFINE_enum("what", "pipeline", ["pipeline", "train_step", "peak", "inference", "restart", "photo",
                                               "torch_photo", "video"],
                          "what to measure")
_WORKDIR = flags.DEFINE_string("workdir", "runs/embedded", "photo: a finished main-job run")
_PHOTO = flags.DEFINE_string("photo", "1024x768", "photo: WIDTHxHEIGHT (a test photo resized to it)")
_PHOTO_NAME = flags.DEFINE_string("photo_name", "motorcycle_left", "photo: which embedded photo is resized")
_MAX_SIDE = flags.DEFINE_integer("max_side", 1024, "photo: --max_side of the folder CLI")
_FORCE_FLAGGED = flags.DEFINE_bool("force_flagged", False, "photo: a threshold below every score, so the photo "
                                   "is flagged and every candidate is tried and refused (the path's most work)")
_FLAGGED = flags.DEFINE_float("flagged", 0.1, "inference: fraction of images flagged")
_VIEWS = flags.DEFINE_integer("views", 8, "inference: detector views averaged (detect.views: 1, 2, 4 or 8)")
_SCREEN = flags.DEFINE_float("screen", 0.3, "inference: fraction of unflagged images the 1-view screen "
                             "passes on to the full score (as detect.screen_rate; 0 = no screen)")
_ATTEMPTS = flags.DEFINE_integer("attempts", 3, "inference: regeneration attempts (correct.attempts); the "
                                  "JSON's regenerated_at_attempt says how many the flagged images needed")
_GENERATOR = flags.DEFINE_string("generator", "resnet", "generator architecture")
_SIZE = flags.DEFINE_integer("size", 128, "crop size")
_BATCH = flags.DEFINE_integer("batch", 1, "global batch")
_ITERS = flags.DEFINE_integer("iters", 5, "timed iterations")
_NGF = flags.DEFINE_integer("ngf", 64, "generator width (64 = reference)")
_BLOCKS = flags.DEFINE_integer("n_blocks", 9, "generator residual blocks (9 = reference)")
_NDF = flags.DEFINE_integer("ndf", 64, "discriminator width (64 = reference)")
_UPSAMPLE = flags.DEFINE_string("upsample", "resize_conv", "generator upsampling")
_MAIN_G = flags.DEFINE_bool("main_job_g", False, "train_step: the main job's paired G and D (experiments/configs/embedded.py: its 48 px training crops; --batch, --depth and --size apply) instead of the ResNet reference")
_DEPTH = flags.DEFINE_integer("depth", 0, "train_step with --main_job_g: U-Net poolings (0: the config's)")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "embedded data dir (default: the package default)")
_FRAMES = flags.DEFINE_integer("frames", 48, "video: frames of the short clip (the long one has 10x)")
_OUT = flags.DEFINE_string("out", "", "also write the JSON here")


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn, iters):
  t0 = time.perf_counter()
  fn()
  compile_sec = time.perf_counter() - t0
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return compile_sec, statistics.median(times)


def bench_pipeline():
  from stylegan_ad.data import pipeline, sources
  ds = sources.load("embedded:cartoon", crop_size=_SIZE.value, data_dir=_DATA_DIR.value or None)
  p = pipeline.Pipeline({"a": {"a": ds.train_a.images, "target": ds.train_a.targets},
                         "b": {"b": ds.train_b.images}}, global_batch=_BATCH.value,
                        crop=_SIZE.value, seed=0, process_index=0, process_count=1)
  n = max(_ITERS.value, 50)
  p.next_local()
  t0 = time.perf_counter()
  for _ in range(n):
    p.next_local()
  sec = (time.perf_counter() - t0) / n
  return {"what": "pipeline", "size": _SIZE.value, "batch": _BATCH.value,
          "sec_per_batch": sec, "examples_per_sec": _BATCH.value / sec, "peak_rss_mb": _peak_rss_mb()}


def bench_peak():
  import jax
  import jax.numpy as jnp
  n = 2048
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  compile_sec, sec = _timed(lambda: f(a).block_until_ready(), max(_ITERS.value, 10))
  return {"what": "peak", "gflops_per_sec": 2 * n ** 3 / sec / 1e9, "sec_per_matmul": sec}


def bench_train_step():
  import jax
  import numpy as np
  from stylegan_ad import configs, parallel
  from stylegan_ad.train import skeleton, steps
  if _MAIN_G.value:
    from experiments.configs import embedded
    c = embedded.get_config("")
    c.data.batch_size, c.model.depth = _BATCH.value, _DEPTH.value or c.model.depth
    if flags.FLAGS["size"].present:   # training crops of another size than the config's
      c.data.train_crop = _SIZE.value
  else:
    c = configs.default_config()
    c.data.crop_size, c.data.batch_size = _SIZE.value, _BATCH.value
    c.model.ngf, c.model.n_blocks, c.model.ndf = _NGF.value, _BLOCKS.value, _NDF.value
    c.model.upsample = _UPSAMPLE.value
  configs.validate(c, device_count=jax.device_count())
  models = steps.make_models(c)
  mesh = parallel.make_mesh()
  rep, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  state = skeleton.run_init(functools.partial(steps.init_state, models), jax.random.key(0), rep)
  rng = np.random.default_rng(0)
  crop = configs.train_crop(c)
  shape = (_BATCH.value, crop, crop, 3)
  keys = ("a", "b", "target") if c.train.mode == "paired" else ("a", "b")
  batch = parallel.global_batch(mesh, {k: rng.uniform(-1, 1, shape).astype(np.float32) for k in keys})
  step = jax.jit(functools.partial(steps.train_step, models), in_shardings=(rep, data),
                 out_shardings=(rep, rep), donate_argnums=(0,))
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_sec = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", 0.0)) if cost else 0.0
  params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves((state.g_params, state.d_params)))
  holder = {"state": state}

  def one():
    holder["state"], m = compiled(holder["state"], batch)
    jax.block_until_ready(m)

  one()
  times = []
  for _ in range(_ITERS.value):
    t0 = time.perf_counter()
    one()
    times.append(time.perf_counter() - t0)
  sec = statistics.median(times)
  return {"what": "train_step", "param_count": params,
          # data parallel: every step all-reduces one fp32 gradient per parameter (a ring
          # all-reduce sends 2 (n-1)/n of these bytes per device)
          "gradient_allreduce_bytes_per_step": 4 * params, "size": crop, "batch": _BATCH.value,
          "model": (f"{c.model.generator}-ngf{c.model.ngf}-depth{c.model.depth}/patchgan-ndf{c.model.ndf}"
                    if _MAIN_G.value else
                    f"resnet{_BLOCKS.value}-ngf{_NGF.value}/patchgan-ndf{_NDF.value}/{_UPSAMPLE.value}"),
          "devices": jax.device_count(), "sec_per_iter": sec, "compile_sec": compile_sec,
          "gflops_per_step": flops / 1e9, "gflops_per_sec": flops / 1e9 / sec,
          "peak_rss_mb": _peak_rss_mb()}


def bench_inference():
  import jax
  import jax.numpy as jnp
  import numpy as np
  from stylegan_ad import configs, correct
  from stylegan_ad.models import detector as detector_lib
  from stylegan_ad import stages
  from stylegan_ad.train import steps
  c = configs.default_config()
  c.data.crop_size = _SIZE.value
  c.model.generator, c.model.ngf, c.model.n_blocks = _GENERATOR.value, _NGF.value, _BLOCKS.value
  c.model.upsample = _UPSAMPLE.value
  c.detect.views = _VIEWS.value
  c.correct.attempts = _ATTEMPTS.value
  configs.validate(c)
  models = steps.make_models(c)
  size, n = _SIZE.value, _BATCH.value
  zeros = jnp.zeros((1, size, size, 3))
  g = models.generator.init(jax.random.key(0), zeros)["params"]
  det, res = stages.make_detector(c), stages.make_restorer(c)
  detp = det.init(jax.random.key(1), zeros)["params"]
  resp = res.init(jax.random.key(2), zeros, zeros[..., 0], zeros)["params"]
  # 5 batches: 10% flagged is then a whole number of images (4 of 40 at batch 8)
  x = np.random.default_rng(0).uniform(-1, 1, (n * 5, size, size, 3)).astype(np.float32)
  stylize = jax.jit(lambda xb: steps.generate(models, g, xb))
  from stylegan_ad.train.aux_trainer import batched
  views = c.detect.views
  # Thresholds on these (untrained) scores: the full score flags a fraction --flagged; the
  # screen passes at least those plus a fraction --screen of the rest: more when this
  # untrained detector's views disagree (a trained one's screen passes ~94% of anomalies
  # on 10% of clean images), so the figure errs on the slow side.
  score = lambda v: batched(jax.jit(lambda xb: detector_lib.predict(det, detp, stylize(xb), v)[0]), x, batch=n)
  def between(a, i):
    """Halfway between the i-th and (i+1)-th largest of a: exactly i above it, whatever
    float differences another batching of the same images brings."""
    d = np.sort(a)[::-1]
    return float(d[0] + 1 if i == 0 else d[-1] - 1 if i >= len(d) else (d[i - 1] + d[i]) / 2)
  scores, k = score(views), int(round(_FLAGGED.value * len(x)))
  threshold, screen = between(scores, k), None
  if _SCREEN.value > 0 and views > 1:
    one = score(1)
    passes = int(np.ceil(len(x) * (_FLAGGED.value + _SCREEN.value * (1 - _FLAGGED.value))))
    while True:  # the k flagged must be among those the screen passes, above it
      screen = between(one, passes)
      behind = scores[one > screen]
      if passes == len(x) - 1 or np.sum(behind > screen) > k:
        break
      passes += 1
    threshold = max(between(behind, k), screen)
  corr = correct.Corrector(models, det, res, threshold, c.correct.dilate, c.correct.attempts, views, screen)
  # the two alternate, so a slow spell of this shared machine hits both: the overhead is
  # the median of the per-round ratios
  def seconds(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
  stylize_all = lambda: batched(stylize, x, batch=n)
  last = {}
  correct_all = lambda: last.update(correct.run_batched(corr, detp, resp, g, x, None, batch=n))
  compile_sec = seconds(stylize_all) + seconds(correct_all)
  rounds = [(seconds(stylize_all), seconds(correct_all)) for _ in range(_ITERS.value)]
  y = batched(stylize, x, batch=n)
  one_view = jax.jit(lambda yb: detector_lib.predict(det, detp, yb, 1)[0])
  _, detector_sec = _timed(lambda: batched(one_view, y, batch=n), _ITERS.value)
  only, full = statistics.median(a for a, _ in rounds), statistics.median(b for _, b in rounds)
  overhead = statistics.median(b / a for a, b in rounds) - 1.0
  flagged = last["verdict"] > 0
  passed = 1.0 if screen is None else float(np.mean(one > screen))
  return {"what": "inference", "size": size, "batch": n, "images": len(x),
          "model": f"{_GENERATOR.value}-ngf{_NGF.value}", "views": views, "attempts": c.correct.attempts,
          "screen": _SCREEN.value if screen is not None else 0.0, "screen_passed_fraction": passed,
          "flagged_fraction": float(np.mean(flagged)),
          # of the flagged: "failed" ones went through every regeneration attempt; a
          # "regenerated" one through attempts 0..k, k counted in `regenerated_at_attempt`
          "verdicts": {v: int(np.sum(last["verdict"] == i)) for i, v in enumerate(correct.VERDICTS) if i},
          "regenerated_at_attempt": np.bincount(last["attempt"][last["verdict"] == 2],
                                                minlength=c.correct.attempts).tolist(),
          "stylize_images_per_sec": len(x) / only, "full_images_per_sec": len(x) / full,
          "overhead_fraction": overhead, "compile_sec": compile_sec,
          "detector_ms_per_image_view": 1e3 * detector_sec / len(x),
          "peak_rss_mb": _peak_rss_mb()}


def bench_restart():
  """Seconds from process start to the first logged step: cold, then restarted (warm
  cache); the restarted run then goes on for --iters more steps, and the train-step
  programs it traced are read from its last log line (`train_step_compiles`)."""
  import shutil
  import signal
  import subprocess
  import tempfile
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  workdir = tempfile.mkdtemp(prefix="stylegan_ad_restart_")
  cmd = [sys.executable, "-m", "experiments.train_stylegan", "--config=experiments/configs/embedded.py",
         f"--workdir={workdir}", "--config.log.every=1", "--config.checkpoint.every=100000"]
  if _DATA_DIR.value:
    cmd.append(f"--config.data.data_dir={_DATA_DIR.value}")
  env = {k: v for k, v in os.environ.items() if k != "STYLEGAN_AD_JAX_CACHE"}
  metrics = os.path.join(workdir, "metrics.jsonl")
  logged = lambda: open(metrics).read().splitlines() if os.path.exists(metrics) else []
  times = []
  for extra in (0, _ITERS.value):
    seen = len(logged())
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    while len(logged()) <= seen + extra:
      if proc.poll() is not None:
        raise RuntimeError(f"training exited before step {extra + 1} (see {workdir})")
      if first is None and len(logged()) > seen:
        first = time.perf_counter() - t0
      time.sleep(0.05)
    times.append(first if first is not None else time.perf_counter() - t0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
  last = json.loads(logged()[-1])
  shutil.rmtree(workdir, ignore_errors=True)
  return {"what": "restart", "config": "embedded", "cold_start_to_first_step_sec": times[0],
          "warm_restart_to_first_step_sec": times[1], "steps_after_restart": _ITERS.value + 1,
          "recompilations": int(last["train_step_compiles"]) - 1}


def _embedded_photo():
  """The embedded photo --photo_name resized to --photo (WIDTHxHEIGHT), uint8."""
  import numpy as np
  from PIL import Image
  from stylegan_ad.data import embedded
  photos = {p.name: p for p in embedded.PHOTOS}
  if _PHOTO_NAME.value not in photos:
    raise SystemExit(f"--photo_name={_PHOTO_NAME.value!r}: not an embedded photo; one of {sorted(photos)}")
  w, h = (int(v) for v in _PHOTO.value.split("x"))
  photo = photos[_PHOTO_NAME.value].load()
  return np.asarray(Image.fromarray(photo).resize((w, h), Image.Resampling.LANCZOS))


def _gflop(fn, image, tiling) -> float:
  """Floating-point operations, in billions as XLA counts them, of jit-ted `fn` run on
  `image` by `fullres.apply`: on the padded photo or its tiles, as the path runs it."""
  from stylegan_ad import fullres
  per_shape, total = {}, [0.0]

  def count(batch):
    if batch.shape not in per_shape:
      cost = fn.lower(batch).compile().cost_analysis()
      per_shape[batch.shape] = float((cost[0] if isinstance(cost, list) else cost)["flops"]) / 1e9
    total[0] += per_shape[batch.shape]
    return {}

  fullres.apply(count, image, tiling)
  return total[0]


def bench_photo():
  """One photo through the folder CLI's path: stylized, scored and corrected at its own size."""
  from stylegan_ad import inference
  photo = _embedded_photo()
  trained = inference.load_trained(_WORKDIR.value)
  if _FORCE_FLAGGED.value:
    trained = dataclasses.replace(trained, corrector=dataclasses.replace(trained.corrector, threshold=-1.0))
  out = {}

  def one():
    out.update(inference.correct_photo(trained, photo, max_side=_MAX_SIDE.value))

  compile_sec, sec = _timed(one, _ITERS.value)
  path_rss = _peak_rss_mb()   # the path's peak, before the split below holds its own copies
  # G alone, one pass on the photo as the path runs it (`fullres.apply`: padded, tiled
  # where large); the path runs it twice (G(x) and the detector's half-turned view), and
  # a flagged photo's TTA average reuses both
  import jax
  from stylegan_ad import fullres
  from stylegan_ad.data.pipeline import to_float
  from stylegan_ad.train import steps
  small = to_float(fullres.fit_max_side(photo, _MAX_SIDE.value)[0])
  tiling = fullres.run_tiling(trained.config)
  g = jax.jit(lambda v: {"y": steps.generate(trained.corrector.models, trained.g_params, v)})
  _, g_sec = _timed(lambda: fullres.apply(g, small, tiling), _ITERS.value)
  # one look of the detector, its map and score (the first, and one per candidate of a
  # flagged photo), and the restorer, each alone on [G(x), context, map] as the path makes them
  import numpy as np
  from stylegan_ad import correct, stages
  c = trained.corrector
  made = fullres.apply(jax.jit(lambda v: correct._stylize_and_score_jit(c, trained.det_params, trained.g_params, v)),
                       small, tiling)
  given = np.concatenate([made["stylized"], made["context"], made["map"][..., None]], axis=-1)
  n = made["context"].shape[-1]
  look = jax.jit(lambda v: dict(zip(("score", "map"),
                                    correct._first_look(c, trained.det_params, v[..., :3], v[..., 3:3 + n]))))
  restore = jax.jit(lambda v: {"y": c.restorer.apply({"params": trained.res_params}, v[..., :3],
                                                     stages.soft_map(v[..., -1], c.dilate), v[..., 3:6])})
  _, look_sec = _timed(lambda: fullres.apply(look, given, tiling), _ITERS.value)
  _, restore_sec = _timed(lambda: fullres.apply(restore, given, tiling), _ITERS.value)
  # the arithmetic of a G pass and of a look (the path is compute-bound, so these set its floor)
  g_gflop, look_gflop = _gflop(g, small, tiling), _gflop(look, given, tiling)
  # the fused score's percentile of the photo's map: selection (the path's) against a sort
  # (None: a detector without the fusion takes no percentile)
  select_sec = sort_sec = None
  if c.fusion is not None:
    import jax.numpy as jnp
    from stylegan_ad import metrics
    q, flat = c.fusion.quantile, jnp.asarray(made["map"].reshape(1, -1))
    select = jax.jit(lambda v: metrics.row_quantile(v, q))
    sort = jax.jit(lambda v: jnp.quantile(v, q, axis=-1))
    _, select_sec = _timed(lambda: select(flat).block_until_ready(), _ITERS.value)
    _, sort_sec = _timed(lambda: sort(flat).block_until_ready(), _ITERS.value)
  return {"what": "photo", "photo": _PHOTO.value, "photo_name": _PHOTO_NAME.value, "max_side": _MAX_SIDE.value,
          "processed": f"{out['stylized'].shape[1]}x{out['stylized'].shape[0]}", "tiles": out["tiles"],
          "verdict": out["verdict"], "force_flagged": _FORCE_FLAGGED.value, "first_call_sec": compile_sec,
          "sec_per_photo": sec, "g_pass_sec": g_sec, "detector_look_sec": look_sec, "restorer_sec": restore_sec,
          "percentile_select_sec": select_sec, "percentile_sort_sec": sort_sec,
          "g_us_per_pixel": 1e6 * g_sec / (small.shape[0] * small.shape[1]),
          "g_gflop": g_gflop, "detector_look_gflop": look_gflop,
          "peak_rss_mb": path_rss, "peak_rss_mb_with_split": _peak_rss_mb(), "iters": _ITERS.value}


def bench_torch_photo():
  """A reference-size PyTorch ResnetGenerator (--ngf, --n_blocks; random weights in a
  state dict with the reference's names, mapped by `interop`): its largest difference
  from PyTorch's layer definitions (float64, `tests/torch_reference.py`) on a 52x36
  input, then one photo on the path of `experiments.stylize --generator=torch:...`."""
  import jax
  import numpy as np
  from stylegan_ad import fullres, interop, inference
  from stylegan_ad.models.generator import ResnetGenerator
  from tests import torch_reference
  ngf, blocks = _NGF.value, _BLOCKS.value
  state = {k: v * 0.2 if k.endswith("weight") else v
           for k, v in torch_reference.reference_state(ngf, blocks, seed=3).items()}
  params = interop.resnet_params(state).params
  module = ResnetGenerator(ngf=ngf, n_blocks=blocks, upsample="transpose")
  fn = jax.jit(lambda x: module.apply({"params": params}, x))
  x = np.random.default_rng(1).uniform(-1, 1, (1, 36, 52, 3)).astype(np.float32)
  diff = float(np.abs(np.asarray(fn(x)) - torch_reference.reference_forward(state, x, blocks)).max())
  photo = _embedded_photo()
  out = {}

  def one():
    out["y"] = inference.stylize_whole(fn, photo, fullres.generator_tiling("resnet", 0, True), _MAX_SIDE.value)

  compile_sec, sec = _timed(one, _ITERS.value)
  return {"what": "torch_photo", "photo": _PHOTO.value, "photo_name": _PHOTO_NAME.value, "ngf": ngf, "n_blocks": blocks,
          "max_abs_diff_to_pytorch_definitions_52x36": diff,
          "processed": f"{out['y'].shape[1]}x{out['y'].shape[0]}", "first_call_sec": compile_sec,
          "sec_per_photo": sec, "peak_rss_mb": _peak_rss_mb(), "iters": _ITERS.value}


def bench_video():
  """Frames per second of the video path at --photo (default 256x256 here) with the main
  job's models: G alone, G with the detector's context and 1-view screen, and the whole
  stream (`video.process`: image path, flow, time checks, repairs). Then the stream over
  --frames and 10x as many frames (the embedded clip's camera path played forward and
  back, rendered as it goes): peak resident memory after each."""
  import jax
  from stylegan_ad import correct, inference, video
  from stylegan_ad.data import clip as clip_lib
  from stylegan_ad.data.pipeline import to_float
  from stylegan_ad.train import steps
  w, h = (int(v) for v in (_PHOTO.value if _PHOTO.value != "1024x768" else "256x256").split("x"))
  trained = inference.load_trained(_WORKDIR.value)
  c = trained.corrector
  clip = clip_lib.make(size=(w, h), degraded={})
  x = to_float(clip.frames[:1])
  g = jax.jit(lambda v: steps.generate(c.models, trained.g_params, v))
  _, g_sec = _timed(lambda: g(x).block_until_ready(), _ITERS.value)
  _, screen_sec = _timed(lambda: jax.block_until_ready(
      correct._stylize_and_score_jit(c, trained.det_params, trained.g_params, x)), _ITERS.value)

  def stream(n):
    order = list(range(len(clip.frames))) + list(range(len(clip.frames) - 2, 0, -1))
    frames = (video.Frame(i, clip.frames[order[i % len(order)]], i) for i in range(n))
    t0 = time.perf_counter()
    count = sum(1 for _ in video.process(trained, frames, video.Settings(max_side=max(w, h))))
    return count / (time.perf_counter() - t0), _peak_rss_mb()

  n = _FRAMES.value
  stream(4)   # compile
  fps, rss_short = stream(n)
  fps_long, rss_long = stream(10 * n)
  return {"what": "video", "size": f"{w}x{h}", "g_frames_per_sec": 1 / g_sec,
          "g_context_screen_frames_per_sec": 1 / screen_sec, "stream_frames_per_sec": fps,
          "stream_frames_per_sec_long": fps_long, "frames_short": n, "frames_long": 10 * n,
          "peak_rss_mb_after_short": rss_short, "peak_rss_mb_after_long": rss_long, "iters": _ITERS.value}


def main(argv):
  del argv
  result = {"pipeline": bench_pipeline, "peak": bench_peak, "train_step": bench_train_step,
            "inference": bench_inference, "restart": bench_restart, "photo": bench_photo,
            "torch_photo": bench_torch_photo, "video": bench_video}[_WHAT.value]()
  text = json.dumps(result, sort_keys=True)
  print(text)
  if _OUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value + ".tmp", "w") as f:
      f.write(text + "\n")
    os.replace(_OUT.value + ".tmp", _OUT.value)


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  app.run(main)
