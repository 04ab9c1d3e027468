"""Error types whose message is the one line a user sees."""


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
