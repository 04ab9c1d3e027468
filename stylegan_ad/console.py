"""What a person watching a run reads: short lines on stderr, from process 0 only.

Library INFO logging (Orbax's checkpoint progress, absl) is off by default in the
entry points and the folder CLI (`quiet_libraries`; `--verbosity=0` brings it back);
progress, stage banners and warnings that a person should see come through `say`, and
loops a person waits on (pool building, calibration, scoring, correction, the folder CLI)
show a `progress` bar (tqdm): redrawn in place on a terminal; in a log file or CI, one
line when the loop ends (and one a minute while it runs).
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, TypeVar

import jax
from tqdm import tqdm

T = TypeVar("T")

_START = time.time()


def clock(seconds: float) -> str:
  """mm:ss (h:mm:ss past an hour)."""
  s = int(round(seconds))
  return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def say(message: str) -> None:
  if jax.process_index() == 0:   # (through tqdm: a bar being drawn is kept below the line)
    tqdm.write(f"[{clock(time.time() - _START)}] {message}", file=sys.stderr)


def progress(iterable: Iterable[T] | None = None, desc: str = "", total: int | None = None,
             unit: str = "it") -> tqdm:
  """A tqdm progress bar on stderr (process 0 only), as an iterable or with `update()`."""
  tty = sys.stderr.isatty()
  return tqdm(iterable, desc=f"[{clock(time.time() - _START)}] {desc}", total=total, unit=unit, file=sys.stderr,
              mininterval=0.5 if tty else 60.0, ascii=not tty, dynamic_ncols=tty, ncols=None if tty else 100,
              disable=jax.process_index() != 0)


def quiet_libraries() -> None:
  """Library INFO logging (Orbax's checkpoint progress, absl) off, unless the command
  line gave `--verbosity`/`-v`. Call after absl has parsed the flags."""
  from absl import flags, logging
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
