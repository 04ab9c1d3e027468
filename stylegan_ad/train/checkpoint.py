"""Orbax checkpoints of the whole run state: async, atomic, last N kept.

A checkpoint holds the TrainState (all networks, optimizer states, EMA, pool, step,
key, NaN counters) and the data pipeline's position, so a resumed run continues
exactly. Orbax writes into a temporary directory and renames it when complete, so
a kill mid-write never leaves a directory that `latest_step` picks; leftover
temporaries are removed on start. Every checkpoint carries a SHA-256 of its arrays
and data position (`checksum`), verified on restore, so silent corruption (a flipped
byte inside array data) is caught. A checkpoint that fails to restore or to verify is
reported in one line and the previous one is used; a training run (`repair=True`) also
moves the damaged steps aside to `<workdir>/checkpoints.damaged/`, so that it trains
to the end again and saves a good final checkpoint.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging as std_logging
import os
import signal
import socket
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from stylegan_ad.errors import CheckpointError, CheckpointWriteError
from stylegan_ad import files
from stylegan_ad.files import disk_failure


@contextlib.contextmanager
def workdir_lock(workdir: str):
  """Holds an exclusive lock on a run directory while a stage trains in it (process 0; the
  other processes of a multi-host run share the directory). A second trainer started on
  the same directory stops with one line instead of removing the first one's checkpoint
  in progress. The kernel drops the lock when its process dies, so a killed run never
  blocks a restart. An object store (`gs://`) has no such lock: there, one trainer per
  run directory is the user's to keep."""
  if jax.process_index() != 0 or files.is_remote(workdir):
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  f = open(os.path.join(workdir, ".lock"), "a+", encoding="utf-8")
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    f.seek(0)
    holder = f.read().strip() or "another process"
    f.close()
    raise CheckpointError(f"{workdir}: {holder} is training in this folder; wait for it to end or stop it "
                          "(a run that was killed leaves no lock behind)") from None
  try:
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()} on {socket.gethostname()}")
    f.flush()
    yield
  finally:
    fcntl.flock(f, fcntl.LOCK_UN)
    f.close()


class Preempted(Exception):
  """A training stage stopped on a signal after saving its checkpoint (the message says
  where); running the same command again resumes from there."""


class StopSignal:
  """Turns SIGTERM/SIGINT into a flag that the training loops check between steps (save,
  then exit cleanly), in every stage."""

  def __init__(self):
    self.received = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signum

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _host_array(leaf) -> np.ndarray:
  if isinstance(leaf, jax.Array):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    leaf = leaf.addressable_data(0)  # replicated: the whole array, on every process
  return np.asarray(leaf)


def checksum(state: Any, data: dict) -> str:
  """SHA-256 of every array of `state` (dtype, shape, bytes, in tree order) and of the
  data position `data` (without its own checksum)."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(state):
    a = _host_array(leaf)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
  h.update(json.dumps({k: v for k, v in data.items() if k != "checksum"}, sort_keys=True).encode())
  return h.hexdigest()


class _DropReraisedWriterErrors:
  """Orbax's writer threads (and their asyncio tasks) log a write that failed for the
  disk's sake as errors with tracebacks, then raise it again in the training thread,
  where `Checkpointer` reports it in one line."""

  def filter(self, record) -> bool:
    if record.levelno < 40 or not ("orbax" in record.pathname or record.name == "asyncio"):
      return True
    exc = record.exc_info[1] if record.exc_info else None
    return disk_failure(exc or RuntimeError(record.getMessage())) is None


class _DropDamagedReads:
  """asyncio's "exception was never retrieved" lines about Orbax's reads of a damaged file
  in a checkpoint directory: `restore` reports that checkpoint in one line. asyncio logs
  them when the reading tasks are collected, which may be long after `restore` returned,
  so the filter stays installed."""
  directories: set[str] = set()

  def filter(self, record) -> bool:
    message = record.getMessage()
    return not ("never retrieved" in message and any(d in message for d in self.directories))


class Checkpointer:
  """Saves and restores {state, data} under `<workdir>/checkpoints/<step>`."""

  def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
    self.directory = files.absolute(os.path.join(workdir, "checkpoints"))
    _install_quiet_handlers()
    _DropDamagedReads.directories.add(self.directory)
    files.makedirs(self.directory)
    self._clean_temporaries()
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True),
        item_names=("state", "data"))

  def _clean_temporaries(self) -> None:
    if jax.process_index() != 0:
      return
    for name in files.listdir(self.directory):
      if ".orbax-checkpoint-tmp" in name or name.endswith(".tmp"):
        try:
          files.rmtree(os.path.join(self.directory, name))
          logging.info("removed an unfinished checkpoint left by a crash: %s", name)
        except OSError as e:  # a run directory this process may only read: left as it is
          logging.info("could not remove the unfinished checkpoint %s (%s)", name, e)

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict, force: bool = False) -> bool:
    data_state = {**data_state, "checksum": checksum(state, data_state)}
    with self._writing():
      return self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)), force=force)

  def wait(self) -> None:
    with self._writing():
      self.manager.wait_until_finished()

  @contextlib.contextmanager
  def _writing(self):
    """Turns a failed write (here or in the background writer of an earlier save) into
    one line naming the directory and the cause."""
    try:
      yield
    except Exception as e:
      reason = disk_failure(e)
      if reason is None:
        raise
      done = self.steps()
      raise CheckpointWriteError(
          f"cannot write a checkpoint in {self.directory} ({reason}); the last complete checkpoint "
          f"(step {done[-1] if done else 'none'}) is intact: make room or make it writable, then run the same "
          "command again to resume") from None

  def _restore_verified(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    state, data = restored["state"], dict(restored["data"] or {})
    if "checksum" not in data:
      if not data:
        raise CheckpointError("its data position is empty")
      logging.info("checkpoint %s/%d has no checksum (written by an older version): not verified",
                    self.directory, step)
    elif checksum(state, data) != data["checksum"]:
      raise CheckpointError("its arrays do not match the checksum written with them (silent corruption)")
    data.pop("checksum", None)
    return state, data

  def restore(self, abstract_state: Any, step: int | None = None, repair: bool = False
              ) -> tuple[int, Any, dict] | None:
    """Restores `step` (default: the newest good one); None when there is no checkpoint.
    `repair`: move the damaged checkpoints newer than the one restored aside (training
    does; loading for inference leaves the run as it is).

    Raises:
      CheckpointError: a checkpoint exists but none of them can be restored.
    """
    candidates = [step] if step is not None else list(reversed(self.steps()))
    errors = []
    for s in candidates:
      try:
        state, data = self._restore_verified(s, abstract_state)
      except Exception as e:  # orbax raises many types for damaged files
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        logging.warning("checkpoint %s/%d cannot be restored (%s); trying the previous one",
                        self.directory, s, reason)
        errors.append((s, reason))
        continue
      if errors and repair:
        self._move_aside([d for d, _ in errors])
      return s, state, data
    if errors:
      raise CheckpointError(f"no checkpoint in {self.directory} can be restored ({errors[0][0]}: {errors[0][1]})")
    return None

  def _move_aside(self, damaged: list[int]) -> None:
    """Moves damaged steps to `<workdir>/checkpoints.damaged/` (kept for inspection), so
    that the run saves those steps again."""
    if jax.process_index() == 0:
      aside = self.directory + ".damaged"
      files.makedirs(aside)
      for s in damaged:
        src = os.path.join(self.directory, str(s))
        dst = os.path.join(aside, str(s))
        n = 1
        while files.exists(dst):
          dst, n = os.path.join(aside, f"{s}.{n}"), n + 1
        if files.isdir(src):
          files.rename(src, dst)
          logging.warning("moved the damaged checkpoint %s aside to %s; the run trains that step again", src, dst)
    self.manager.reload()

  def close(self) -> None:
    self.wait()
    self.manager.close()


def _drop_closed_loop_errors(hook):
  def unraisable(u):
    if not (isinstance(u.exc_value, RuntimeError) and "Event loop is closed" in str(u.exc_value)):
      hook(u)
  unraisable.drops_closed_loop_errors = True
  return unraisable


def _install_quiet_handlers() -> None:
  """Once per process: the unraisable "Event loop is closed" errors that Orbax's async
  readers of a damaged file (a bad OCDBT manifest) leave behind, over a hundred after the
  error itself was raised, are dropped (`restore` says it in one line), and so are their
  "exception was never retrieved" lines (`_DropDamagedReads`) and the re-logged copies of a
  disk failure (`_DropReraisedWriterErrors`)."""
  if not getattr(sys.unraisablehook, "drops_closed_loop_errors", False):
    sys.unraisablehook = _drop_closed_loop_errors(sys.unraisablehook)
  # (orbax logs through absl; its async tasks' leftovers through asyncio)
  for name, kind in (("absl", _DropReraisedWriterErrors), ("asyncio", _DropReraisedWriterErrors),
                     ("asyncio", _DropDamagedReads)):
    logger = std_logging.getLogger(name)
    if not any(isinstance(f, kind) for f in logger.filters):
      logger.addFilter(kind())


def snapshot_steps(num_steps: int, fractions) -> list[int]:
  """The steps (fractions of the run) whose EMA generator is kept as a snapshot."""
  return sorted({min(num_steps - 1, max(1, round(f * num_steps))) for f in fractions if 0 < f < 1})


def save_snapshot(workdir: str, step: int, params: Any) -> None:
  """The generator's parameters at `step`, under `<workdir>/snapshots/<step>` (Orbax,
  atomic): truly under-trained generators for the real-failure benchmark."""
  path = files.absolute(os.path.join(workdir, "snapshots", str(step)))
  if files.exists(path):
    return
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, params)


def load_snapshots(workdir: str, like: Any) -> dict[int, Any]:
  """{step: params} of every snapshot in `workdir`, restored to the structure of `like`."""
  root = files.absolute(os.path.join(workdir, "snapshots"))
  if not files.isdir(root):
    return {}
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), like)
  out = {}
  with ocp.StandardCheckpointer() as ckptr:
    for name in sorted(files.listdir(root), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0)):
      if name.isdigit():
        out[int(name)] = jax.device_get(ckptr.restore(os.path.join(root, name), abstract))
  return out
