"""Train (or finish training) the learned detector on a trained GAN's outputs, and calibrate it.

  python -m experiments.train_detector --config=experiments/configs/embedded.py --workdir=runs/embedded

--workdir is a main-job run directory: the GAN in DIR/gan is trained first if needed;
the detector goes to DIR/detector with DIR/detector/calibration.json.
"""
import json
import sys

from absl import app, flags
from ml_collections import config_flags

from stylegan_ad.errors import StyleganAdError

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "main-job run directory")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from stylegan_ad import experiment
  try:
    thresholds = experiment.train_and_calibrate_detector(_CONFIG.value, _WORKDIR.value)
  except StyleganAdError as e:
    sys.exit(f"error: {e}")
  print(json.dumps(thresholds, indent=2, sort_keys=True))


if __name__ == "__main__":
  app.run(main)
