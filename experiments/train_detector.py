"""Train (or finish training) the learned detector on a trained GAN's outputs, and calibrate it.

  python -m experiments.train_detector --config=experiments/configs/embedded.py --workdir=runs/embedded

--workdir is a main-job run directory: the GAN in DIR/gan is trained first if needed;
the detector goes to DIR/detector with DIR/detector/calibration.json.
"""
from absl import flags

from experiments import common

flags.adopt_module_key_flags(common)  # --help lists --config and --workdir


def _train(config, workdir):
  from stylegan_ad import main_job
  return main_job.train_and_calibrate_detector(config, workdir)


if __name__ == "__main__":
  common.run(_train)
