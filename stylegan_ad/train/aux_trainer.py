"""The stages trained on the GAN's outputs (detector, restorer), on the shared skeleton.

Batches are drawn from in-memory arrays by a generator seeded with (seed, step), so
a resumed run sees the same batches; the state is checkpointed with Orbax exactly
as the GAN's.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from stylegan_ad import parallel
from stylegan_ad.train import skeleton
from stylegan_ad.train.checkpoint import Checkpointer, Preempted, workdir_lock
from stylegan_ad.train.logger import RunLogger


@flax.struct.dataclass
class AuxState:
  step: jax.Array
  params: Any
  opt: Any


def process_rows(batch: int, process_index: int | None = None, process_count: int | None = None) -> slice:
  """This process's rows of a global batch (the whole batch for one process)."""
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if batch % count:
    raise ValueError(f"a global batch of {batch} does not split over {count} processes")
  local = batch // count
  return slice(index * local, (index + 1) * local)


def sample_batch(arrays: dict[str, np.ndarray], batch: int, seed: int, step: int,
                 rows: slice = slice(None)) -> dict[str, np.ndarray]:
  """`rows` of a global batch of `batch` rows drawn with replacement by (seed, step), each
  under a random one of the 8 flips and quarter turns of the square (the same for every
  array of a row). Every process draws the same global batch and builds only its rows.

  The key "other" is added: each row's partner image (another row), for artifacts
  that paste content from another image.
  """
  n = len(next(iter(arrays.values())))
  rng = np.random.default_rng([seed, step])
  idx = rng.integers(0, n, batch)
  turns, flips = rng.integers(0, 4, batch), rng.random(batch) < 0.5
  others = rng.integers(0, n, batch)
  idx, turns, flips, others = idx[rows], turns[rows], flips[rows], others[rows]

  def transform(row, t, f):
    if row.ndim < 2:  # a per-row label
      return row
    row = np.rot90(row, t, axes=(0, 1)) if row.shape[0] == row.shape[1] else row
    return row[:, ::-1] if f else row

  out = {k: np.stack([transform(r, t, f) for r, t, f in zip(v[idx], turns, flips)])
         for k, v in arrays.items()}
  out["other"] = arrays[next(iter(arrays))][others]
  return out


def fit(name: str, workdir: str, *, model: Any, init_inputs: tuple, tx: optax.GradientTransformation,
        loss_fn: Callable, arrays: dict[str, np.ndarray], batch: int, num_steps: int, seed: int,
        mesh, log_every: int = 100, checkpoint_every: int = 500, max_bad_steps: int = 5) -> Any:
  """Trains `model` to minimise `loss_fn(params, batch, key) -> (loss, metrics)`; returns params.

  Resumes from `workdir/checkpoints` when present; returns at once if already done.
  """
  with workdir_lock(workdir):
    return _fit(name, workdir, model=model, init_inputs=init_inputs, tx=tx, loss_fn=loss_fn, arrays=arrays,
                batch=batch, num_steps=num_steps, seed=seed, mesh=mesh,
                schedule=skeleton.Schedule(log_every, checkpoint_every, max_bad_steps))


def _fit(name, workdir, *, model, init_inputs, tx, loss_fn, arrays, batch, num_steps, seed, mesh, schedule):
  rep, data = parallel.replicated(mesh), parallel.data_sharding(mesh)

  def init(key):
    params = model.init(key, *init_inputs)["params"]
    return AuxState(step=jnp.zeros((), jnp.int32), params=params, opt=tx.init(params))

  key = jax.random.key(seed)
  abstract = jax.eval_shape(init, key)
  shardings = jax.tree.map(lambda _: rep, abstract)
  ckpt = Checkpointer(workdir)
  restored = ckpt.restore(jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), abstract),
                          repair=True)
  state = skeleton.run_init(init, key, shardings) if restored is None else restored[1]
  start = int(jax.device_get(state.step))
  if start >= num_steps:
    ckpt.close()
    return jax.device_get(state.params)

  def step_fn(state, b):
    k = jax.random.fold_in(key, state.step)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, b, k)
    ok = skeleton.all_finite(loss, grads)

    def update():
      updates, opt = tx.update(grads, state.opt, state.params)
      return state.replace(params=optax.apply_updates(state.params, updates), opt=opt)

    new = skeleton.if_finite(ok, update, state)
    rows = len(next(iter(b.values())))   # the global batch, assembled from every process's rows
    return new.replace(step=state.step + 1), {**metrics, "loss": loss, "rows": rows, "finite": ok}

  rows = process_rows(batch)   # each process reads and feeds only its rows of every batch
  log = RunLogger(workdir, num_steps, start)
  try:
    out = skeleton.run_steps(
        name, jax.jit(step_fn, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=(0,)), state,
        start=start, end=num_steps, schedule=schedule,
        next_batch=lambda s: parallel.global_batch(mesh, sample_batch(arrays, batch, seed, s, rows)),
        data_state=lambda s: {"position": s, "seed": seed}, ckpt=ckpt, log=log)
  finally:
    log.close()
    ckpt.close()
  if out.signal is not None:   # saved where it was: stop the job (a re-run resumes here)
    raise Preempted(f"signal {out.signal}: {name} saved at step {out.step} of {num_steps} in {ckpt.directory}")
  logging.info("%s: trained %d steps in %s", name, num_steps, workdir)
  return jax.device_get(out.state.params)


def batched(fn: Callable, *arrays: np.ndarray, batch: int = 32) -> Any:
  """Applies a jitted `fn(*arrays)` in fixed-size batches (last one padded); numpy pytrees out."""
  outs = []
  total = len(arrays[0])
  for i in range(0, total, batch):
    chunks = [a[i:i + batch] for a in arrays]
    n = len(chunks[0])
    if n < batch:
      chunks = [np.concatenate([c, np.repeat(c[-1:], batch - n, axis=0)]) for c in chunks]
    outs.append(jax.tree.map(lambda a: np.asarray(a)[:n], fn(*[jnp.asarray(c) for c in chunks])))
  return jax.tree.map(lambda *a: np.concatenate(a), *outs)
