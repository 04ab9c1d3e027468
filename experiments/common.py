"""What every config-driven entry point shares: --config, --workdir, one library call.

A library error (`StyleganAdError`), or a write that failed because the disk is full or
read-only, ends the process with a one-line message and exit code 2; anything else is
a bug and keeps its traceback.
"""
import json
import os
import re
import sys
from typing import Any, Callable

from absl import app, flags
from ml_collections import config_flags

from stylegan_ad import console
from stylegan_ad.errors import CheckpointWriteError, StyleganAdError
from stylegan_ad.files import disk_failure

CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
WORKDIR = flags.DEFINE_string("workdir", None, "run directory")
flags.mark_flags_as_required(["config", "workdir"])


def print_json(result: Any) -> None:
  print(json.dumps(result, indent=2, sort_keys=True, default=float))


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with one-line errors for bad values and unknown config keys."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    lines = [line for line in str(e).splitlines() if line.strip()]
    if "Error whilst parsing config file" in lines[0]:  # get_config raised: its last line says why
      lines = ["--config: " + lines[-1].split(": ", 1)[-1]]
    print(f"error: {lines[0]}", file=sys.stderr)
  except (KeyError, AttributeError) as e:  # ml_collections: an override of a key that does not exist
    print(f"error: {_unknown_key(e, argv)}", file=sys.stderr)
  sys.exit(2)


def _unknown_key(e: Exception, argv: list[str]) -> str:
  """One line for ml_collections' "'nm_steps'\nDid you mean "num_steps" ...": the
  override as given, and the key it probably meant."""
  text = (str(e.args[0]) if e.args else str(e)).replace("\\n", "\n").replace("\\'", "'")
  key = text.split("\n")[0].strip("'\" ")
  names = [a.split("=")[0].removeprefix("--") for a in argv if a.startswith("--config.")]
  name = next((n for n in names if key in n.split(".")), f"config.{key}")
  hint = re.search(r'Did you mean "([^"]+)"', text)
  if not hint:
    return f"unknown config key --{name}"
  parts = name.split(".")
  parts[parts.index(key) if key in parts else -1] = hint.group(1)
  return f"unknown config key --{name} (did you mean --{'.'.join(parts)}?)"


def run(call: Callable[[Any, str], Any], show: Callable[[Any], None] = print_json) -> None:
  """Parses flags, then runs `call(config, workdir)` and shows its result. Library INFO
  logging (Orbax's checkpoint progress) is off unless `--verbosity`/`-v` is given; the
  run's own progress lines (`stylegan_ad.console`) are always shown."""
  def main(argv):
    del argv
    console.quiet_libraries()
    try:
      result = call(CONFIG.value, WORKDIR.value)
    except StyleganAdError as e:
      _fail(str(e), now=isinstance(e, CheckpointWriteError))
    except Exception as e:
      reason = disk_failure(e)
      if reason is None:
        raise
      _fail(f"cannot write in {WORKDIR.value} ({reason}: {getattr(_oserror(e), 'filename', None) or e}); the "
            "checkpoints already complete are intact: make room or make it writable, then run the same command "
            "again to resume", now=True)
    show(result)
  app.run(main, flags_parser=_parse_flags)


def _fail(message: str, now: bool) -> None:
  """One line, exit code 2. `now` (the disk failed): without the normal shutdown, where the
  checkpoint writer's threads would print pages of tracebacks, or wait forever on a
  read-only folder."""
  print(f"error: {message}", file=sys.stderr)
  if not now:
    sys.exit(2)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(2)


def _oserror(e: BaseException | None) -> OSError | None:
  while e is not None and not isinstance(e, OSError):
    e = e.__cause__ or e.__context__
  return e
