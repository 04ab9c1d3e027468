"""The training loop: data, mesh, init or resume, jitted steps, checkpoints, logs, eval.

`train(config, workdir)` is the one library call behind `experiments.train_stylegan`.
The run directory is the only place state lives; calling it again resumes.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylegan_ad import configs, console, files, fullres, metrics, parallel
from stylegan_ad.data import pipeline as pipeline_lib
from stylegan_ad.data import sources
from stylegan_ad.errors import ConfigError
from stylegan_ad.files import write_json
from stylegan_ad.train import skeleton, steps
from stylegan_ad.train import checkpoint as checkpoint_lib
from stylegan_ad.train.checkpoint import Checkpointer
from stylegan_ad.train.logger import RunLogger, grid


@dataclasses.dataclass
class Run:
  """Everything `train` set up, for evaluation and for the later stages."""
  config: ml_collections.ConfigDict
  workdir: str
  mesh: Any
  dataset: sources.Dataset
  models: steps.Models
  state: steps.TrainState
  pipeline: pipeline_lib.Pipeline
  preempted: bool = False
  train_step_compiles: int = 0   # programs traced for the train step by this process: 1 in a sound run


def enable_compilation_cache(workdir: str) -> None:
  """Persistent XLA cache in the run directory: a restarted run skips compilation.

  $STYLEGAN_AD_JAX_CACHE, when set, names a cache shared by several runs instead;
  `off` leaves the persistent cache off (the test suite: on this CPU build of XLA,
  serializing an executable into the cache has crashed a long test process with a
  segmentation fault, rarely and not reproducibly). Only programs that take 2 s or more
  to compile are written (the train steps and inits, the larger evaluation programs): the
  main job's many sub-second per-photo-size programs cost it about 6 s of compression and
  writing, for less than that on a restart.
  """
  cache = os.environ.get("STYLEGAN_AD_JAX_CACHE") or os.path.join(files.absolute(workdir), "jax_cache")
  if cache == "off":
    return
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def make_pipeline(config: ml_collections.ConfigDict, dataset: sources.Dataset) -> pipeline_lib.Pipeline:
  """Unpaired: A (with targets where known) and B shuffled apart; paired: every train pair.

  Unpaired with `data.unpaired_split="shuffled"`: A is every train photo x and B every
  S(x), each stream with its own order, crops and symmetries (no pair is seen aligned).
  """
  source, style = dataset.train_a, dataset.train_b.images
  shuffled = config.train.mode == "unpaired" and config.data.get("unpaired_split", "photos") == "shuffled"
  if config.train.mode == "paired" or shuffled:
    source = dataset.train_pairs
    if source is None or source.targets is None:
      key = "data.unpaired_split: 'shuffled'" if shuffled else "train.mode: 'paired'"
      raise ConfigError(f"config key {key} needs targets, and {dataset.name} has none")
    if shuffled:
      style = source.targets
  stream_a = {"a": source.images}
  if source.targets is not None:
    stream_a["target"] = source.targets
  return pipeline_lib.Pipeline({"a": stream_a, "b": {"b": style}},
                               global_batch=config.data.batch_size, crop=configs.train_crop(config),
                               seed=config.seed, symmetries=config.data.symmetries)


def _initialize_distributed(config: ml_collections.ConfigDict) -> None:
  d = config.distributed
  if not jax.distributed.is_initialized():
    parallel.initialize_distributed(d.coordinator, d.num_processes, d.process_id)


def setup(config: ml_collections.ConfigDict, workdir: str) -> tuple[Run, Checkpointer]:
  """Validates, loads data, builds models and restores the newest checkpoint (if any)."""
  _initialize_distributed(config)
  configs.validate(config, device_count=jax.device_count())
  enable_compilation_cache(workdir)
  dataset = sources.load(config.data.source, crop_size=config.data.crop_size,
                         data_dir=config.data.data_dir or None)
  pipe = make_pipeline(config, dataset)
  mesh = parallel.make_mesh()
  models = steps.make_models(config)
  key = jax.random.key(config.seed)
  abstract = jax.eval_shape(functools.partial(steps.init_state, models), key)
  rep = parallel.replicated(mesh)
  shardings = jax.tree.map(lambda _: rep, abstract)
  ckpt = Checkpointer(workdir, keep=config.checkpoint.keep)
  abstract_sharded = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  abstract, shardings)
  restored = ckpt.restore(abstract_sharded, repair=True)
  if restored is None:
    state = skeleton.run_init(functools.partial(steps.init_state, models), key, shardings)
  else:
    step, state, data_state = restored
    pipe.set_state(data_state)
    console.say(f"{files.name(workdir)}: resumed at step {step} ({ckpt.directory})")
  return Run(config, workdir, mesh, dataset, models, state, pipe), ckpt


def compile_train_step(run: Run, start: int):
  """The jitted train step, for steps start+1 on. Each trace (a new program: a shape, dtype
  or sharding that changed between steps) adds one to `run.train_step_compiles`, which
  every log line records: it stays 1 for the whole run (2 with a D-only warm-up,
  `train.d_warmup`, whose steps are a program of their own), or the loop is recompiling."""
  rep = parallel.replicated(run.mesh)
  data = parallel.data_sharding(run.mesh)

  def program(d_only):
    def step(state, batch):
      run.train_step_compiles += 1
      return steps.train_step(run.models, state, batch, d_only)
    return jax.jit(step, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=(0,))

  gan = program(False)
  if not run.models.d_warmup or start >= run.models.d_warmup:
    return gan
  warmup, position = program(True), [start]

  def step(state, batch):   # called once per step, in order, from step start+1
    position[0] += 1
    return (warmup if position[0] <= run.models.d_warmup else gan)(state, batch)

  return step


def train(config: ml_collections.ConfigDict, workdir: str, *, stop_after: int | None = None) -> Run:
  """Trains (or resumes) the style GAN in `workdir`; evaluates when the last step is done.

  Args:
    stop_after: stop (with a checkpoint) once this many steps are done in total, as a
      preemption would; the next call continues from there.
  """
  _initialize_distributed(config)  # first: the lock is process 0's
  with checkpoint_lib.workdir_lock(workdir):
    return _train(config, workdir, stop_after)


def _train(config: ml_collections.ConfigDict, workdir: str, stop_after: int | None) -> Run:
  run, ckpt = setup(config, workdir)
  if jax.process_index() == 0:
    write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json_best_effort()))
  total = config.train.num_steps
  end = total if stop_after is None else min(total, stop_after)
  start = int(jax.device_get(run.state.step))
  log = RunLogger(workdir, total, start)
  snapshots = checkpoint_lib.snapshot_steps(total, config.train.snapshots)

  def hook(step: int, state: steps.TrainState) -> None:
    if step % config.log.sample_every == 0:
      log.image("samples", step, sample_grid(run.models, state, run.dataset))
    if step in snapshots:
      checkpoint_lib.save_snapshot(workdir, step, state.ema["ab"])

  try:
    out = skeleton.run_steps(
        "GAN", compile_train_step(run, start), run.state, start=start, end=end,
        schedule=skeleton.Schedule(config.log.every, config.checkpoint.every, config.train.max_bad_steps),
        next_batch=lambda step: run.pipeline.next_global(run.mesh),
        data_state=lambda step: run.pipeline.get_state(), ckpt=ckpt, log=log,
        scalars=lambda: {"train_step_compiles": run.train_step_compiles},
        hook=hook, hook_at=lambda step: step % config.log.sample_every == 0 or step in snapshots)
  finally:
    log.close()
    ckpt.close()
  run.state, step = out.state, out.step
  if out.signal is not None:
    console.say(f"signal {out.signal}: {files.name(workdir)} saved at step "
                f"{step} of {total} in {ckpt.directory}")
    run.preempted = True
  if step >= total and not run.preempted:
    result = evaluate(run)
    if jax.process_index() == 0:
      write_json(os.path.join(workdir, "eval.json"), result)
      _final_samples(run, workdir)
  return run


@functools.partial(jax.jit, static_argnums=0)
def _stylize(models: steps.Models, params, x):
  return steps.generate(models, params, x)


def stylize(models: steps.Models, params, x: np.ndarray) -> np.ndarray:
  return np.asarray(_stylize(models, params, jnp.asarray(x)))


def stylize_photo(models: steps.Models, params, photo: np.ndarray,
                  tiling: fullres.Tiling = fullres.Tiling()) -> np.ndarray:
  """G(photo) at the photo's own size (uint8 in, float [-1, 1] out), tiled where large."""
  out = fullres.apply(lambda x: {"y": stylize(models, params, x)}, pipeline_lib.to_float(photo), tiling)
  return out["y"]


def _quality(y: np.ndarray, t: np.ndarray) -> tuple[float, float]:
  return float(metrics.psnr_np(y[None], t[None])[0]), float(metrics.ssim_np(y[None], t[None])[0])


def evaluate(run: Run) -> dict[str, Any]:
  """PSNR/SSIM against the true S(x), of G_ema(x) and of x itself (the identity baseline):
  on the test crops, and on the whole test photos at their own resolution (`photos`)."""
  test = run.dataset.test_a
  if test.targets is None or len(test) == 0:
    return {"note": "no true targets in this dataset's test split"}
  params = jax.device_get(run.state.ema["ab"])
  vals = {"psnr": [], "ssim": [], "identity_psnr": [], "identity_ssim": []}
  for x, t, n in pipeline_lib.eval_batches(test.images, test.targets, run.config.eval.batch_size,
                                           run.config.data.crop_size):
    y = stylize(run.models, params, x)
    vals["psnr"] += list(metrics.psnr_np(y, t)[:n])
    vals["ssim"] += list(metrics.ssim_np(y, t)[:n])
    vals["identity_psnr"] += list(metrics.psnr_np(x, t)[:n])
    vals["identity_ssim"] += list(metrics.ssim_np(x, t)[:n])
    # each channel's mean signed error over all pixels: a global colour drift shows here,
    # against the identity's (S darkens where it inks, so x itself is brighter than S(x))
    vals.setdefault("channel_mean_error", []).extend(list(np.mean(y[:n] - t[:n], axis=(1, 2))))
    vals.setdefault("identity_channel_mean_error", []).extend(list(np.mean(x[:n] - t[:n], axis=(1, 2))))
  drifts = ("channel_mean_error", "identity_channel_mean_error")
  out = {k: float(np.mean(v)) for k, v in vals.items() if k not in drifts}
  for k in drifts:
    out[k] = [float(v) for v in np.mean(vals[k], axis=0)]
  out["num_images"] = len(test)
  out["step"] = int(jax.device_get(run.state.step))
  photos = run.dataset.test_photos
  if photos is not None and photos.targets is not None and len(photos):
    rows = []
    for i in range(len(photos)):
      x, t = pipeline_lib.to_float(photos.images[i]), pipeline_lib.to_float(photos.targets[i])
      y = stylize_photo(run.models, params, photos.images[i])
      (p, s), (ip, is_) = _quality(y, t), _quality(x, t)
      rows.append({"height": int(x.shape[0]), "width": int(x.shape[1]), "psnr": p, "ssim": s,
                   "identity_psnr": ip, "identity_ssim": is_,
                   "channel_mean_error": [float(v) for v in np.mean(y - t, axis=(0, 1))],
                   "identity_channel_mean_error": [float(v) for v in np.mean(x - t, axis=(0, 1))]})
    out["photos"] = {k: float(np.mean([r[k] for r in rows]))
                     for k in ("psnr", "ssim", "identity_psnr", "identity_ssim")}
    for k in drifts:
      out["photos"][k] = [float(v) for v in np.mean([r[k] for r in rows], 0)]
    out["photos"]["per_photo"] = rows
  return out


def sample_grid(models: steps.Models, state: steps.TrainState, dataset: sources.Dataset,
                count: int = 4) -> np.ndarray:
  """Rows of input | output | cycle (where F learns: `steps.reverse_trained`) | true S(x)
  (where known), from the EMA generators."""
  test = dataset.test_a if len(dataset.test_a) else dataset.train_a
  crop = models.crop
  idx = np.linspace(0, len(test) - 1, count).astype(int)
  x = pipeline_lib.to_float(np.stack([pipeline_lib.center_crop(np.asarray(test.images[i]), crop)
                                      for i in idx]))
  ema = jax.device_get(state.ema)
  y = stylize(models, ema["ab"], x)
  cols = [x, y]
  if "ba" in ema and steps.reverse_trained(models):
    cols.append(stylize(models, ema["ba"], y))
  if test.targets is not None:
    cols.append(pipeline_lib.to_float(np.stack(
        [pipeline_lib.center_crop(np.asarray(test.targets[i]), crop) for i in idx])))
  u8 = [pipeline_lib.to_uint8(c) for c in cols]
  return grid([[c[i] for c in u8] for i in range(count)])


def _final_samples(run: Run, workdir: str) -> None:
  from stylegan_ad.train.logger import save_png
  save_png(os.path.join(workdir, "samples_final.png"), sample_grid(run.models, run.state, run.dataset))
