"""The main job: train, evaluate and report on the embedded default data.

  python -m experiments.run --config=experiments/configs/embedded.py --workdir=runs/embedded
"""
from experiments import common


def _run(config, workdir):
  from stylegan_ad import experiment
  return experiment.run(config, workdir)


if __name__ == "__main__":
  common.run(_run)
