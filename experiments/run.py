"""The main job: train, evaluate and report on the embedded default data.

  python -m experiments.run --config=experiments/configs/embedded.py --workdir=runs/embedded
"""
from absl import flags

from experiments import common

flags.adopt_module_key_flags(common)  # --help lists --config and --workdir


def _run(config, workdir):
  from stylegan_ad import main_job
  return main_job.run(config, workdir)


def _show(summary):
  import os

  from stylegan_ad import report
  print(report.console_summary(summary, os.path.join(common.WORKDIR.value, "report")))


if __name__ == "__main__":
  common.run(_run, _show)
