"""The main job: train, evaluate and report on the embedded default data.

  python -m experiments.run --config=experiments/configs/embedded.py --workdir=runs/embedded
"""
import json
import sys

from absl import app, flags
from ml_collections import config_flags

from stylegan_ad.errors import StyleganAdError

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from stylegan_ad import experiment
  try:
    summary = experiment.run(_CONFIG.value, _WORKDIR.value)
  except StyleganAdError as e:
    sys.exit(f"error: {e}")
  print(json.dumps(summary, indent=2, sort_keys=True))


if __name__ == "__main__":
  app.run(main)
