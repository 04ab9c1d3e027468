"""Detection benchmark: all scorers x (seen types, each type held out, natural failures).

  python -m experiments.evaluate_detection --config=experiments/configs/embedded.py --workdir=runs/embedded

Uses (and, if needed, finishes) the main job's GAN and detector in --workdir; writes
DIR/detection.json and DIR/detection.md.
"""
import sys

from absl import app, flags
from ml_collections import config_flags

from stylegan_ad.errors import StyleganAdError

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "main-job run directory")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from stylegan_ad import experiment, report
  try:
    out = experiment.evaluate_detection(_CONFIG.value, _WORKDIR.value)
  except StyleganAdError as e:
    sys.exit(f"error: {e}")
  print(report.detection_table(out["results"]))


if __name__ == "__main__":
  app.run(main)
