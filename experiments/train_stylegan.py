"""Train the style-transfer GAN.

  python -m experiments.train_stylegan --config=experiments/configs/embedded.py --workdir=runs/gan \
      [--config.train.num_steps=200]
"""
from absl import flags

from experiments import common

flags.adopt_module_key_flags(common)  # --help lists --config and --workdir


def _train(config, workdir):
  from stylegan_ad.train import loop
  run = loop.train(config, workdir)
  return {"step": int(run.state.step), "preempted": run.preempted}


def run_main():
  common.run(_train)


if __name__ == "__main__":
  run_main()
