"""The one training loop under every stage (the GAN, the detector, the restorer).

A stage brings a jitted `step(state, batch) -> (state, metrics)` whose update skips
itself when its loss or gradients are not finite (`if_finite`, the NaN guard) and whose
metrics carry `finite`; `run_steps` drives it: the next batch is drawn while the device
runs the step, each step's `finite` flag is read one step late (no host sync in the
step's path), `max_bad_steps` consecutive non-finite steps stop the stage
(`TrainingDiverged`, the last good checkpoint intact), metrics leave the device at log
steps, checkpoints are saved every `checkpoint_every` steps and at the end, and
SIGTERM/SIGINT stop it cleanly with a checkpoint of the step reached.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from absl import logging

from stylegan_ad.errors import StyleganAdError
from stylegan_ad.train.checkpoint import Checkpointer, StopSignal
from stylegan_ad.train.logger import RunLogger


class TrainingDiverged(StyleganAdError, RuntimeError):
  """Too many consecutive non-finite steps."""


# LLVM's -O1 on the one-off init program: its random draws (threefry, truncated normals)
# compile in a third of the -O2 time (16 -> 6 s for the GAN's) to the same bits
# (tests/test_train.py::test_init_program_values_match_default_optimisation)
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def run_init(init: Callable[[jax.Array], Any], key: jax.Array, shardings: Any) -> Any:
  """`init(key)`, jitted with `out_shardings=shardings` and compiled at -O1."""
  return jax.jit(init, out_shardings=shardings).lower(key).compile(compiler_options=INIT_COMPILER_OPTIONS)(key)


def all_finite(*trees) -> jax.Array:
  leaves = [x for t in trees for x in jax.tree.leaves(t)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def if_finite(ok: jax.Array, update: Callable[[], Any], old: Any) -> Any:
  """update() if ok else old: a branch, not a select, so a good step pays no extra pass."""
  return jax.lax.cond(ok, update, lambda: old)


@dataclasses.dataclass(frozen=True)
class Schedule:
  log_every: int
  checkpoint_every: int
  max_bad_steps: int       # config key train.max_bad_steps


@dataclasses.dataclass
class Outcome:
  state: Any
  step: int
  signal: int | None = None   # the signal that stopped the stage before `end`, if any


def run_steps(name: str, step_fn: Callable, state: Any, *, start: int, end: int, schedule: Schedule,
              next_batch: Callable[[int], Any], data_state: Callable[[int], dict], ckpt: Checkpointer,
              log: RunLogger, scalars: Callable[[], dict] = dict,
              hook: Callable[[int, Any], None] | None = None, hook_at: Callable[[int], bool] = lambda s: False
              ) -> Outcome:
  """Runs steps start+1 .. end of a stage; `next_batch(s)` is the batch of step s+1,
  `data_state(s)` the data position saved with step s, `hook(s, state)` runs after
  step s where `hook_at(s)` (sample grids, snapshots), after that step's flag is read."""
  bad = 0

  def check(at: int, metrics) -> None:
    nonlocal bad
    if bool(jax.device_get(metrics["finite"])):
      bad = 0
      return
    bad += 1
    logging.warning("%s step %d: non-finite loss or gradient; update skipped (%d in a row)", name, at, bad)
    if bad >= schedule.max_bad_steps:
      raise TrainingDiverged(
          f"{name} training stopped at step {at}: {bad} consecutive non-finite steps "
          f"(train.max_bad_steps={schedule.max_bad_steps}); the last good checkpoint "
          f"in {ckpt.directory} is intact")

  step, unread, received = start, None, None
  with StopSignal() as stop:
    while step < end:
      if stop.received is not None:
        received = stop.received
        break
      batch = next_batch(step)
      state, m = step_fn(state, batch)
      step += 1
      if unread is not None:   # the previous step's flag: the device is busy with this one
        check(*unread)
      unread = (step, m)
      logs = step % schedule.log_every == 0 or step == end
      saves = step % schedule.checkpoint_every == 0 and step < end
      if logs or saves or hook_at(step):   # read before anything is written
        check(*unread)
        unread = None
      if logs:
        log.scalars(step, {**jax.device_get(m), **scalars()})
      if hook is not None and hook_at(step):
        hook(step, state)
      if saves:
        ckpt.save(step, state, data_state(step))
    if unread is not None:
      check(*unread)
    if not ckpt.steps() or ckpt.steps()[-1] != step:
      ckpt.save(step, state, data_state(step), force=True)
  ckpt.wait()
  return Outcome(state, step, received)
