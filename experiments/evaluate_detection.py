"""Detection benchmark: all scorers x (seen types, each type held out, natural failures).

  python -m experiments.evaluate_detection --config=experiments/configs/embedded.py --workdir=runs/embedded

Uses (and, if needed, finishes) the main job's GAN and detector in --workdir; writes
DIR/detection.json and DIR/detection.md.
"""
from absl import flags

from experiments import common

flags.adopt_module_key_flags(common)  # --help lists --config and --workdir


def _evaluate(config, workdir):
  from stylegan_ad import main_job
  return main_job.evaluate_detection(config, workdir)


def _show(out):
  from stylegan_ad import report
  print(report.detection_table(out["results"]))


if __name__ == "__main__":
  common.run(_evaluate, _show)
