"""How much the detector's figures move with its own training randomness alone.

  python scripts/detector_spread.py --run=runs/embedded --offsets=1000,2000 --out=runs/detector_spread

For each offset: the finished main-job run's GAN is copied to OUT/offset_K, and the main
job runs there with the detector's and restorer's training seeds offset by K (the GAN,
the pools of its outputs and the test photos as in the run). Prints a Markdown table of
the real-failure figures (the run's own row first) and writes OUT/spread.json.
About 10 minutes per offset on 2 cores.
"""
from __future__ import annotations

import json
import os
import shutil

from absl import app, flags

_RUN = flags.DEFINE_string("run", "runs/embedded", "a finished main-job run (its gan/ and report/summary.json)")
_OFFSETS = flags.DEFINE_list("offsets", ["1000", "2000"], "seed offsets for the detector's and restorer's training")
_OUT = flags.DEFINE_string("out", "runs/detector_spread", "folder for the runs and spread.json")

KEYS = ("pixel_auroc", "aupro", "image_auroc", "spearman", "fpr", "tpr")


def _row(summary: dict) -> dict:
  real, fixed = summary["real"], summary["correct_real"]
  return {**{k: real[k] for k in KEYS}, "correction_gain_db": fixed.get("psnr_gain_flagged"),
          "whole_photos_flagged": summary["detect"]["whole_photos"]["flagged"]}


def main(argv):
  del argv
  from experiments.configs import embedded
  from stylegan_ad import main_job
  from stylegan_ad.train import aux_trainer

  fit = aux_trainer.fit
  rows = {"run": _row(json.load(open(os.path.join(_RUN.value, "report", "summary.json"))))}
  for offset in (int(k) for k in _OFFSETS.value):
    workdir = os.path.join(_OUT.value, f"offset_{offset}")
    if not os.path.isdir(os.path.join(workdir, "gan")):
      shutil.copytree(os.path.join(_RUN.value, "gan"), os.path.join(workdir, "gan"))

    def shifted(name, stage_dir, offset=offset, **kw):
      return fit(name, stage_dir, **{**kw, "seed": kw["seed"] + offset})

    aux_trainer.fit = shifted   # stages.train_detector / train_restorer call it by this name
    try:
      main_job.run(embedded.get_config(), workdir)
    finally:
      aux_trainer.fit = fit
    rows[f"offset {offset}"] = _row(json.load(open(os.path.join(workdir, "report", "summary.json"))))
  with open(os.path.join(_OUT.value, "spread.json"), "w") as f:
    json.dump(rows, f, indent=2)
  print("| detector seeds | " + " | ".join(list(KEYS) + ["correction gain (dB)", "whole photos flagged"]) + " |")
  print("|---" * (len(KEYS) + 3) + "|")
  for name, r in rows.items():
    gain = r["correction_gain_db"]
    print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in KEYS) +
          f" | {'' if gain is None else f'{gain:.2f}'} | {r['whole_photos_flagged']} |")


if __name__ == "__main__":
  app.run(main)
