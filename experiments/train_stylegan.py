"""Train the style-transfer GAN.

  python -m experiments.train_stylegan --config=experiments/configs/embedded.py --workdir=runs/gan \
      [--config.train.num_steps=200]
"""
import sys

from absl import app, flags
from ml_collections import config_flags

from stylegan_ad.errors import StyleganAdError

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, logs, eval)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from stylegan_ad.train import loop
  try:
    loop.train(_CONFIG.value, _WORKDIR.value)
  except StyleganAdError as e:
    sys.exit(f"error: {e}")


def run_main():
  app.run(main)


if __name__ == "__main__":
  run_main()
