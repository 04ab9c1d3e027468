"""Reports: PNG grids, Markdown and HTML pages, result tables. All writes are atomic."""
from __future__ import annotations

import html
import os
import re
from typing import Any, Sequence

import numpy as np

from stylegan_ad.console import clock as console_clock
from stylegan_ad.data.pipeline import to_uint8
from stylegan_ad import files
from stylegan_ad.files import write_json, write_text  # noqa: F401 (callers write through report)

NETWORK_ALONE = "detector (network alone)"   # the benchmark's row of the detector without its fusion


def heat(amap: np.ndarray) -> np.ndarray:
  """A [0, 1] map as a uint8 RGB heat image (black -> red -> yellow)."""
  m = np.clip(np.asarray(amap, np.float32), 0, 1)
  rgb = np.stack([np.clip(2 * m, 0, 1), np.clip(2 * m - 1, 0, 1), np.zeros_like(m)], -1)
  return (rgb * 255).astype(np.uint8)


def _fmt(v: Any) -> str:
  if v is None or (isinstance(v, float) and np.isnan(v)):
    return "n/a"
  return f"{v:.3f}" if isinstance(v, float) else str(v)


def detection_table(results: dict[str, dict[str, dict]], metrics=("image_auroc", "image_ap", "pixel_auroc",
                                                                  "aupro")) -> str:
  """Markdown: one row per (setting, scorer), one column per metric."""
  lines = ["| setting | scorer | " + " | ".join(metrics) + " |",
           "|---|---|" + "---|" * len(metrics)]
  for setting, by_scorer in results.items():
    for scorer, vals in by_scorer.items():
      lines.append(f"| {setting} | {scorer} | " + " | ".join(_fmt(vals.get(m)) for m in metrics) + " |")
  return "\n".join(lines)


def per_type_table(result: dict[str, Any]) -> str:
  lines = ["| artifact type | image AUROC | AUPRO |", "|---|---|---|"]
  for t, v in result["per_type"].items():
    lines.append(f"| {t} | {_fmt(v['image_auroc'])} | {_fmt(v['aupro'])} |")
  return "\n".join(lines)


def stylization_table(s: dict) -> str:
  """G(x) and the identity x against S(x): test crops, and whole test photos at their own size."""
  lines = ["| test photos vs. true S(x) | crops PSNR (dB) | crops SSIM | whole photos PSNR (dB) | whole photos SSIM |",
           "|---|---|---|---|---|"]
  p = s.get("photos", {})
  for name, pre in (("G(x)", ""), ("identity baseline x", "identity_")):
    whole = (f"{p[pre + 'psnr']:.2f} | {p[pre + 'ssim']:.3f}" if p else "n/a | n/a")
    lines.append(f"| {name} | {s[pre + 'psnr']:.2f} | {s[pre + 'ssim']:.3f} | {whole} |")
  if "channel_mean_error" in s:
    err = lambda v: " / ".join(f"{e:+.3f}" for e in v)
    lines.append("")
    lines.append(f"Mean signed error of G(x) per channel (R / G / B, [-1, 1] units): crops {err(s['channel_mean_error'])}"
                 + (f", whole photos {err(p['channel_mean_error'])}" if p else "") + ".")
    if "identity_channel_mean_error" in s:
      lines.append(f"The identity's, for comparison (S darkens where it inks): crops "
                   f"{err(s['identity_channel_mean_error'])}"
                   + (f", whole photos {err(p['identity_channel_mean_error'])}" if p else "") + ".")
  return "\n".join(lines)


def _ci(v: dict, key: str) -> str:
  ci = v.get(key + "_ci")
  return _fmt(v.get(key)) + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def real_failure_table(scorers: dict[str, dict]) -> str:
  """Markdown: each scorer against G's real failures (failures.evaluate), with the 95%
  intervals (resampled by photo) in brackets."""
  lines = ["| scorer | Spearman vs. error | pixel AUROC | AUPRO | image AUROC | FPR | TPR | "
           "pixel AUROC, worse than identity |", "|---|---|---|---|---|---|---|---|"]
  for name, v in scorers.items():
    lines.append(f"| {name} | {_ci(v, 'spearman')} | {_ci(v, 'pixel_auroc')} | {_fmt(v.get('aupro'))} | "
                 f"{_ci(v, 'image_auroc')} | {_fmt(v.get('fpr'))} | {_fmt(v.get('tpr'))} | "
                 f"{_fmt(v.get('pixel_auroc_worse_than_identity'))} |")
  return "\n".join(lines)


def real_correction_table(c: dict) -> str:
  """Markdown: correction of G's real failures against S(x), with its baselines."""
  f = lambda v: _fmt(float(v)) if v is not None else "n/a"
  return "\n".join([
      "| on the test photos' real outputs | PSNR to S(x) (dB) | SSIM |", "|---|---|---|",
      f"| G(x) unchanged | {c['psnr_before']:.2f} | {c['ssim_before']:.3f} |",
      f"| detect, then correct (of the candidates the detector passes, the one it scores lowest) | "
      f"{c['psnr_after']:.2f} | {c['ssim_after']:.3f} |",
      f"| baseline: restorer everywhere, no detection | {c['restore_everywhere_psnr']:.2f} | |",
      f"| baseline: TTA average of G everywhere | {c['tta_psnr']:.2f} | |",
      f"| baseline: restorer inside the true (oracle) failure mask | {c['oracle_psnr']:.2f} | |",
      "",
      f"{c['flagged']} of {c['images']} outputs flagged, {c['changed']} changed; PSNR gain on the flagged ones "
      f"{f(c['psnr_gain_flagged'])} dB; harm rate (changed outputs whose PSNR to S(x) fell) "
      f"{f(c['harm_rate'])}; mean |error| inside the detector's maps {f(c['error_inside_maps_before'])} -> "
      f"{f(c['error_inside_maps_after'])}; unflagged outputs bit-identical: {c['unflagged_bit_identical']}."
      + (" Candidates kept: " + ", ".join(f"{k} {v}" for k, v in c["kept"].items()) + "." if "kept" in c else "")])


def real_pool_line(pool: dict) -> str:
  """One sentence: what the real-failure pool holds and how its truth was fixed."""
  return (f"{pool['images']} outputs of {pool['photos']} whole test photos ({pool['anomalous']} anomalous, "
          f"{100 * pool['anomalous_rate']:.0f}%): the final G (EMA and raw weights), its under-trained "
          f"snapshots, and the final G on shifted inputs; a pixel fails where the smoothed |G(x) - S(x)| > "
          f"{pool['pixel_threshold']:.3f} (99th percentile of the final G's error on the reference photo, which "
          f"nothing trains or is tested on), an image where over {100 * pool['area_cut']:.1f}% of it fails.")


def _figures(plots: Sequence[str], names: Sequence[str]) -> list[str]:
  """Markdown for the drawn plots among `names` (plots.PLOTS), with their captions."""
  from stylegan_ad.plots import PLOTS
  shown = [n for n in names if n in plots]
  if not shown:
    return []
  return [" ".join(f"![plot: {n}](plots/{n})" for n in shown), "",
          " ".join(f"{i + 1}. {PLOTS[n]}" for i, n in enumerate(shown)), ""]


def _real_section(summary: dict, plots: Sequence[str] = ()) -> list[str]:
  real = summary.get("real", {})
  if "skipped" in real:
    return ["## G's real failures", "", f"Skipped: {real['skipped']}", ""]
  if "pool" not in real:
    return []
  out = ["## G's real failures (test photos, against the true target S(x))", "", real_pool_line(real["pool"]), "",
         real_failure_table(summary["real_all_scorers"]), "", _operating_point(summary), "",
         *_figures(plots, ("real_roc.png", "real_pro.png")), *_figures(plots, ("real_hist.png", "real_variants.png"))]
  if "psnr_before" in summary.get("correct_real", {}):
    out += ["### Correcting them", "", real_correction_table(summary["correct_real"]), ""]
  return out


def calibration_count(real: dict) -> str:
  """' (90 outputs of 7 photos)': summary.json `real.calibration`, or '' where a run lacks it."""
  cal = real.get("calibration") or {}
  return f" ({cal['clean_outputs']} outputs of {cal['photos']} photos)" if cal else ""


def _operating_point(summary: dict) -> str:
  """The detector's achieved rates at its threshold, next to the target it was set for."""
  real, whole = summary["real"], summary.get("detect", {}).get("whole_photos", {})
  of = calibration_count(real)
  line = (f"The detector's threshold is set for {100 * summary.get('target_fpr', 0.01):.0f}% false positives on "
          f"G's clean outputs of the reference and train photos{of}. Achieved on the test pool: {100 * real['fpr']:.1f}% of clean "
          f"outputs flagged (FPR), {100 * real['tpr']:.1f}% of failing ones (TPR)")
  if whole.get("images"):
    line += f"; {whole['flagged']} of {whole['images']} clean whole test photos flagged"
  return line + "."


def _sample_caption(summary: dict) -> str:
  """The sample grid's columns (`loop.sample_grid`): F(G(x)) only where F learns (unpaired
  mode, but for `embedded.py:unpaired_lines`), S(x) where known."""
  reverse = summary.get("reverse_generator", summary.get("mode") == "unpaired")
  cols = ["input x", "G(x)"] + (["F(G(x))"] if reverse else [])
  if "psnr" in summary["stylize"]:
    cols.append("true S(x)")
  return "Columns: " + " | ".join(cols) + "; one test crop per row."


def summary_markdown(summary: dict, plots: Sequence[str] = ()) -> str:
  """The run report; `plots`: the figures drawn (plots.run_report_plots) to show in it."""
  s, c = summary["stylize"], summary["correct"]
  data = summary["data"]
  out = [
      "# stylegan_ad run report", "",
      f"Data `{data['name']}` at {data['crop_size']}x{data['crop_size']}: {data['train_a']} train A, "
      f"{data['train_b']} train B, {data['test_a']} test images. {summary['train_steps']} GAN steps; "
      f"the whole job took {summary['seconds']:.0f} s.", "",
      "## Stylization (test split, against the true target S(x))", "",
      stylization_table(s), "",
      "![samples](samples.png)", "", _sample_caption(summary), "",
      *_figures(plots, ("losses.png",)),
      *_real_section(summary, plots),
      "## Detection of synthetic artifacts (test outputs, all artifact types seen in training)", "",
      f"{summary['detect']['test_images']['clean']} clean and "
      f"{summary['detect']['test_images']['corrupted']} corrupted outputs.", "",
      detection_table({"seen types": summary["detect_all_scorers"]}), "",
      "Learned detector by artifact type:", "", per_type_table(summary["detect_all_scorers"]["detector"]), "",
      *_figures(plots, ("synthetic_types.png",)),
      "## Correction of synthetic artifacts (PSNR to the clean output)", "",
      "| PSNR corrupted (dB) | PSNR corrected (dB) | restorer only (dB) | gain (dB) | repair rate | "
      "by restorer | regenerated | failed | clean unchanged |",
      "|---|---|---|---|---|---|---|---|---|",
      f"| {c['psnr_before']:.2f} | {c['psnr_after']:.2f} | {c['psnr_after_restorer_only']:.2f} | "
      f"{c['psnr_gain']:.2f} | {c['repair_rate']:.3f} | {c['repaired_by_restorer']:.3f} | "
      f"{c['regenerated']:.3f} | {c['failed']:.3f} | {c['clean_unchanged']:.3f} |", "",
      "![correction](correction.png)", "",
      "Columns: corrupted output | detector map | corrected | clean output; one corrupted test output per row.",
      "",
      *_reproduce_section(summary),
  ]
  return "\n".join(out)


def environment() -> dict[str, Any]:
  """What a reader needs to reproduce a run: commit, CPU, JAX's backend and devices, Python and package versions."""
  import platform
  import subprocess
  from importlib import metadata
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                            timeout=10).stdout.strip() or "unknown (not a git checkout)"
  except (OSError, subprocess.SubprocessError):
    commit = "unknown (git not found)"
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      info = f.read()
    cpu = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), cpu)
    cpu += " (AVX-512)" if "avx512" in info else " (AVX2)" if "avx2" in info else ""
  except OSError:
    pass
  versions = {}
  for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets", "numpy"):
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = "not installed"
  import jax
  kinds = sorted({d.device_kind for d in jax.devices()})
  return {"commit": commit, "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
          "backend": jax.default_backend(), "devices": f"{jax.device_count()} x {', '.join(kinds)}",
          "packages": versions}


def _reproduce_section(summary: dict) -> list[str]:
  env = summary.get("environment")
  if not env:
    return []
  stages = ", ".join(f"{k} {v:.0f} s" for k, v in summary.get("stage_seconds", {}).items())
  packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
  return ["## Reproduce", "",
          f"Command: `{env.get('command', 'python -m experiments.run --config=... --workdir=...')}` "
          "(the full config is `config.json` in the run's `gan/` folder).",
          "", f"Commit {env['commit']}; CPU {env['cpu']}, {env['cores']} cores; "
          f"JAX backend {env.get('backend', 'not recorded')} ({env.get('devices', 'devices not recorded')}); "
          f"Python {env['python']}; "
          f"{packages}.", "", f"Seconds per stage: {stages}.", ""]


def html_page(title: str, body: str) -> str:
  return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) +
          "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:4px 8px}th{cursor:pointer;background:#eee}"
          "img.grid{image-rendering:pixelated;zoom:3}img.plot{max-width:48%;margin-right:1%}code{background:#f4f4f4;padding:0 3px}</style></head><body>" + body +
          "<script>document.querySelectorAll('th').forEach((th,i)=>th.onclick=()=>{"
          "const t=th.closest('table'),rows=[...t.querySelectorAll('tr')].slice(1);"
          "const k=r=>{const v=r.children[i].dataset.v??r.children[i].textContent;return isNaN(+v)?v:+v};"
          "const d=th.dataset.d=th.dataset.d==='a'?'d':'a';"
          "rows.sort((a,b)=>(k(a)>k(b)?1:k(a)<k(b)?-1:0)*(d==='a'?1:-1)).forEach(r=>t.appendChild(r))});"
          "</script></body></html>")


def markdown_to_html(md: str) -> str:
  """The run report's Markdown (headings, tables, images, paragraphs) as HTML."""
  parts, table = [], []

  def flush():
    if table:
      rows = [r.strip("|").split("|") for r in table if not set(r) <= set("|-")]
      head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in rows[0])
      body = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>"
                     for r in rows[1:])
      parts.append(f"<table><tr>{head}</tr>{body}</table>")
      table.clear()

  for line in md.splitlines():
    if line.startswith("|"):
      table.append(line)
      continue
    flush()
    if line.startswith("#"):
      level = len(line) - len(line.lstrip("#"))
      parts.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
    elif line.startswith("!["):  # one or more images side by side; a "plot: ..." one at its own size
      parts.append("<p>" + "".join(
          f"<img class='{'plot' if alt.startswith('plot') else 'grid'}' alt='{html.escape(alt, quote=True)}' "
          f"src='{html.escape(src, quote=True)}'>" for alt, src in re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", line)) + "</p>")
    elif line.strip():
      parts.append("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(line)) + "</p>")
  flush()
  return "\n".join(parts)


def write_run_report(directory: str, summary: dict, gan, test: dict[str, np.ndarray],
                     per_image: dict[str, np.ndarray], examples: int = 8) -> None:
  from stylegan_ad.train import loop
  from stylegan_ad.train.logger import grid, save_png
  files.makedirs(directory)
  save_png(os.path.join(directory, "samples.png"), loop.sample_grid(gan.models, gan.state, gan.dataset, 6))
  anomalous = test["is_anomalous"] > 0
  idx = np.linspace(0, int(anomalous.sum()) - 1, examples).astype(int)
  rows = [[to_uint8(test["images"][anomalous][i]), heat(per_image["map"][i]),
           to_uint8(per_image["output"][i]), to_uint8(test["clean"][anomalous][i])] for i in idx]
  save_png(os.path.join(directory, "correction.png"), grid(rows))
  from stylegan_ad import plots as plots_lib
  drawn = plots_lib.run_report_plots(os.path.join(directory, "plots"), summary, os.path.dirname(directory))
  md = summary_markdown(summary, drawn)
  write_text(os.path.join(directory, "report.md"), md)
  write_text(os.path.join(directory, "index.html"), html_page("stylegan_ad run report", markdown_to_html(md)))
  write_json(os.path.join(directory, "summary.json"), summary)


def console_summary(summary: dict, report_dir: str) -> str:
  """The few lines the main job ends with (the whole summary is in summary.json)."""
  if not summary:
    return "stopped before the end (a signal): re-run the same command to resume"
  s, lines = summary["stylize"], []
  line = (f"stylization vs. true S(x): crops {s['psnr']:.2f} dB / SSIM {s['ssim']:.3f} "
          f"(identity {s['identity_psnr']:.2f} / {s['identity_ssim']:.3f})")
  if "photos" in s:
    p = s["photos"]
    line += f"; whole photos {p['psnr']:.2f} / {p['ssim']:.3f} (identity {p['identity_psnr']:.2f} / {p['identity_ssim']:.3f})"
  lines.append(line)
  r = summary.get("real", {})
  if "pixel_auroc" in r:
    lines.append(f"G's real failures: detector pixel AUROC {r['pixel_auroc']:.3f}, AUPRO {r['aupro']:.3f}, "
                 f"image AUROC {r['image_auroc']:.3f}, Spearman {r['spearman']:.3f}; at its threshold it flags "
                 f"{r['tpr']:.0%} of failing outputs and {r['fpr']:.0%} of clean ones")
  else:
    lines.append(f"G's real failures: not measured ({r.get('skipped', 'no true targets')})")
  c = summary.get("correct_real", {})
  if "psnr_after" in c:
    lines.append(f"correction: {c['flagged']} of {c['images']} outputs flagged, {c['changed']} changed, "
                 f"{c['psnr_gain_flagged']:+.2f} dB on the flagged; harm rate {c['harm_rate']:.0%}; unflagged "
                 f"outputs {'bit-identical' if c['unflagged_bit_identical'] else 'CHANGED'}")
  d = summary.get("detect", {})
  if "image_auroc" in d:
    lines.append(f"synthetic artifacts: detector image AUROC {d['image_auroc']:.3f}")
  lines.append(f"took {console_clock(summary.get('seconds', 0))}; report: "
               f"{os.path.join(report_dir, 'index.html')} (every figure: summary.json beside it)")
  return "\n".join(lines)
