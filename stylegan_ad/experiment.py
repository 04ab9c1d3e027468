"""The main job: train the stylizer on the embedded data, evaluate, write the report.

`run(config, workdir)` is the one library call behind `experiments.run`. Stages
already complete in `workdir` are resumed, not redone.
"""
from __future__ import annotations

import json
import os
import time

import jax
import ml_collections

from stylegan_ad.train import loop
from stylegan_ad.train.logger import save_png


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def markdown_summary(summary: dict) -> str:
  s = summary["stylize"]
  lines = [
      "# stylegan_ad run report", "",
      f"Data: `{summary['data']['name']}`, {summary['data']['crop_size']}x{summary['data']['crop_size']} crops; "
      f"{summary['train_steps']} training steps in {summary['seconds']:.0f} s.", "",
      "## Stylization (test split, against the true target S(x))", "",
      "| | PSNR (dB) | SSIM |", "|---|---|---|",
      f"| G_ema(x) | {s['psnr']:.2f} | {s['ssim']:.3f} |",
      f"| identity x | {s['identity_psnr']:.2f} | {s['identity_ssim']:.3f} |", "",
      "![samples](samples.png)", "",
      "Rows: input | G(x) | F(G(x)) | S(x).", "",
  ]
  return "\n".join(lines)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every stage and returns the summary written to `workdir/report/summary.json`."""
  t0 = time.time()
  gan = loop.train(config, os.path.join(workdir, "gan"))
  if gan.preempted:
    return {}
  stylize = loop.evaluate(gan)
  summary = {
      "data": gan.dataset.summary(),
      "train_steps": int(jax.device_get(gan.state.step)),
      "stylize": stylize,
      "seconds": time.time() - t0,
  }
  if jax.process_index() == 0:
    report = os.path.join(workdir, "report")
    os.makedirs(report, exist_ok=True)
    save_png(os.path.join(report, "samples.png"), loop.sample_grid(gan.models, gan.state, gan.dataset, 6))
    _write_json(os.path.join(report, "summary.json"), summary)
    with open(os.path.join(report, "report.md.tmp"), "w") as f:
      f.write(markdown_summary(summary))
    os.replace(os.path.join(report, "report.md.tmp"), os.path.join(report, "report.md"))
  return summary
