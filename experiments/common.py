"""What every config-driven entry point shares: --config, --workdir, one library call.

A library error (`StyleganAdError`) ends the process with its one-line message and
exit code 2; anything else is a bug and keeps its traceback.
"""
import json
import sys
from typing import Any, Callable

from absl import app, flags
from ml_collections import config_flags

from stylegan_ad.errors import StyleganAdError

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
    print(f"error: {e}", file=sys.stderr)
  except (KeyError, AttributeError) as e:  # ml_collections: an override of a key that does not exist
    key = str(e).strip("'\"")
    arg = next((a for a in argv if a.startswith("--config.") and key in a), key)
    print(f"error: unknown config key in {arg.split('=')[0].removeprefix('--')}", file=sys.stderr)
  sys.exit(2)


def run(call: Callable[[Any, str], Any], show: Callable[[Any], None] = print_json) -> None:
  """Parses flags, then runs `call(config, workdir)` and shows its result."""
  def main(argv):
    del argv
    try:
      result = call(CONFIG.value, WORKDIR.value)
    except StyleganAdError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    show(result)
  app.run(main, flags_parser=_parse_flags)
