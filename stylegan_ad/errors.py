"""Error types whose message is the one line a user sees."""
import sys


class StyleganAdError(Exception):
  """Base class: `str(err)` is a complete one-line message."""


class ConfigError(StyleganAdError, ValueError):
  """A setting is unknown, of the wrong type or impossible; the message names it."""


class DataError(StyleganAdError, ValueError):
  """An input file or folder cannot be used; the message names it."""


class CheckpointError(StyleganAdError, RuntimeError):
  """A checkpoint cannot be restored; the message names it."""


class CheckpointWriteError(CheckpointError):
  """A checkpoint cannot be written (disk full, read-only); the last complete one is intact.
  The command-line entry points end the process at once on it (`experiments.common`):
  the checkpoint library's writer threads would otherwise print pages of tracebacks at
  shutdown, or wait forever on a read-only directory."""


def or_exit(fn, *args, **kwargs):
  """fn(*args, **kwargs) for a command-line tool: a StyleganAdError is printed as its one
  line and ends the process with exit code 2."""
  try:
    return fn(*args, **kwargs)
  except StyleganAdError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
