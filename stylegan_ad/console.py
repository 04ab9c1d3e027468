"""What a person watching a run reads: short lines on stderr, from process 0 only.

Library INFO logging (Orbax's checkpoint progress, absl) is off by default in the
entry points and the folder CLI (`quiet_libraries`; `--verbosity=0` brings it back);
progress, stage banners and warnings that a person should see come through `say`.
"""
from __future__ import annotations

import sys
import time

import jax

_START = time.time()


def clock(seconds: float) -> str:
  """mm:ss (h:mm:ss past an hour)."""
  s = int(round(seconds))
  return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def say(message: str) -> None:
  if jax.process_index() == 0:
    print(f"[{clock(time.time() - _START)}] {message}", file=sys.stderr, flush=True)


def quiet_libraries() -> None:
  """Library INFO logging (Orbax's checkpoint progress, absl) off, unless the command
  line gave `--verbosity`/`-v`. Call after absl has parsed the flags."""
  from absl import flags, logging
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
