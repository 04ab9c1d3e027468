"""The run report's figures: matplotlib, drawn straight to PNG (no display, no pyplot state).

Each function takes plain numbers (what summary.json and metrics.jsonl hold) and writes
one PNG atomically; `run_report_plots` draws every figure a run's summary has data for.
"""
from __future__ import annotations

import io
import json
import os
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from stylegan_ad import metrics
from stylegan_ad import files

DPI = 110


def _save(fig: Figure, path: str) -> None:
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
  files.write_bytes(path, buf.getvalue())


def roc_curves(path: str, scores: dict[str, Sequence[float]], labels: Sequence[bool], title: str) -> None:
  """Image-level ROC of each scorer (scores: name -> per-image score, higher = more anomalous)."""
  fig = Figure(figsize=(5.2, 4.4))
  ax = fig.add_subplot()
  labels = np.asarray(labels, bool)
  for name, s in scores.items():
    fpr, tpr, _ = metrics.roc_curve(np.asarray(s), labels)
    ax.plot(fpr, tpr, lw=1.8 if name == "detector" else 1.0,
            label=f"{name} ({metrics.auroc(np.asarray(s), labels):.3f})")
  ax.plot([0, 1], [0, 1], color="0.7", ls=":", lw=1)
  ax.set(xlabel="false-positive rate (clean outputs flagged)", ylabel="true-positive rate (failures flagged)",
         title=title, xlim=(0, 1), ylim=(0, 1.01))
  ax.legend(fontsize=7, loc="lower right", title="scorer (image AUROC)", title_fontsize=7)
  _save(fig, path)


def pro_curves(path: str, curves: dict[str, dict[str, Sequence[float]]], title: str) -> None:
  """Per-region overlap against pixel FPR (curves: name -> {"fpr": [...], "pro": [...]})."""
  fig = Figure(figsize=(5.2, 4.4))
  ax = fig.add_subplot()
  for name, c in curves.items():
    fpr, pro = np.asarray(c["fpr"]), np.asarray(c["pro"])
    ax.plot(fpr, pro, lw=1.8 if name == "detector" else 1.0,
            label=f"{name} ({c.get('area', np.trapezoid(pro, fpr) / fpr[-1]):.3f})")
  ax.set(xlabel="pixel false-positive rate", ylabel="per-region overlap", title=title, ylim=(0, 1.01))
  ax.legend(fontsize=7, loc="lower right", title="scorer (AUPRO at 0.3)", title_fontsize=7)
  _save(fig, path)


def score_histogram(path: str, scores: Sequence[float], anomalous: Sequence[bool], threshold: float | None,
                    title: str) -> None:
  """The scores of clean and failing outputs, with the calibrated threshold."""
  s, a = np.asarray(scores, np.float64), np.asarray(anomalous, bool)
  fig = Figure(figsize=(5.6, 3.4))
  ax = fig.add_subplot()
  bins = np.linspace(s.min(), s.max(), 25) if np.ptp(s) > 0 else 10
  ax.hist(s[~a], bins=bins, alpha=0.6, color="tab:blue", label=f"clean by the truth ({int((~a).sum())})")
  ax.hist(s[a], bins=bins, alpha=0.6, color="tab:red", label=f"failing by the truth ({int(a.sum())})")
  if threshold is not None:
    ax.axvline(threshold, color="k", ls="--", lw=1.2, label=f"threshold {threshold:.3g}")
  ax.set(xlabel="image score (higher = more anomalous)", ylabel="outputs", title=title)
  ax.legend(fontsize=7)
  _save(fig, path)


def read_metrics(path: str) -> list[dict]:
  """The records of a run's metrics.jsonl (a torn last line is skipped)."""
  out = []
  for line in files.read_text(path).splitlines():
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError:
      continue
  return out


def _not_a_loss(key: str) -> bool:
  return key in ("step", "steps_per_sec", "bad_steps", "lr", "rows") or key.endswith(("finite", "compiles"))


def loss_curves(path: str, runs: dict[str, list[dict]]) -> None:
  """One panel per run (name -> metrics.jsonl records): every logged loss against the step."""
  runs = {k: v for k, v in runs.items() if v}
  fig = Figure(figsize=(4.2 * max(len(runs), 1), 3.4))
  for i, (name, records) in enumerate(runs.items()):
    ax = fig.add_subplot(1, len(runs), i + 1)
    keys = sorted({k for r in records for k in r if not _not_a_loss(k) and isinstance(r[k], (int, float))})
    positive = True
    for k in keys:
      pts = [(r["step"], r[k]) for r in records if k in r and np.isfinite(r[k])]
      if pts:
        ax.plot(*zip(*pts), lw=1, label=k)
        positive &= min(v for _, v in pts) > 0
    ax.set(xlabel="step", title=f"{name} losses", yscale="log" if positive else "linear")
    ax.legend(fontsize=6)
  _save(fig, path)


def bars(path: str, groups: dict[str, dict[str, float]], title: str, ylabel: str,
         ylim: tuple[float, float] | None = (0, 1.05)) -> None:
  """Grouped bars: groups = {group label: {series: value}} (a missing value: no bar)."""
  names = list(groups)
  series = list(dict.fromkeys(k for g in groups.values() for k in g))
  fig = Figure(figsize=(min(max(5.0, 0.3 * len(names) * max(len(series), 1) + 1.5), 7.0), 3.8))
  ax = fig.add_subplot()
  width = 0.8 / max(len(series), 1)
  for j, k in enumerate(series):
    vals = [groups[n].get(k, np.nan) for n in names]
    ax.bar(np.arange(len(names)) + (j - (len(series) - 1) / 2) * width, vals, width, label=k)
  ax.set_xticks(np.arange(len(names)), names, rotation=35, ha="right", fontsize=7)
  ax.set(ylabel=ylabel, title=title)
  if ylim:
    ax.set_ylim(*ylim)
  ax.legend(fontsize=7)
  _save(fig, path)


PLOTS = {  # file -> what it shows (the report's caption)
    "real_roc.png": "ROC of every scorer on G's real outputs of the test photos (image labels from the truth).",
    "real_pro.png": "Per-region overlap of every scorer's map against the true failing regions.",
    "real_hist.png": "The detector's image scores on the test pool, clean and failing by the truth, and its "
                     "calibrated threshold.",
    "real_variants.png": "Per pool variant (generator / input shift): the share that truly fails and the share "
                         "the detector flags.",
    "synthetic_types.png": "The detector on synthetic artifacts, per type: image AUROC and AUPRO.",
    "losses.png": "Training losses of the GAN, the detector and the restorer (from each run's metrics.jsonl).",
}


def run_report_plots(directory: str, summary: dict, workdir: str | None = None) -> list[str]:
  """Draws every figure of `PLOTS` that the summary (and the runs in `workdir`) have data
  for, into `directory`; returns the files written."""
  files.makedirs(directory)
  done = []
  real, scorers = summary.get("real", {}), summary.get("real_all_scorers", {})
  items = real.get("pool", {}).get("items")
  if items and all("image_scores" in v for v in scorers.values()):
    labels = items["anomalous"]
    if 0 < sum(labels) < len(labels):
      roc_curves(os.path.join(directory, "real_roc.png"), {k: v["image_scores"] for k, v in scorers.items()},
                 labels, "G's real failures: image ROC")
      done.append("real_roc.png")
    curves = {k: {**v["pro_curve"], "area": v["aupro"]} for k, v in scorers.items() if "pro_curve" in v}
    if curves:
      pro_curves(os.path.join(directory, "real_pro.png"), curves, "G's real failures: PRO curves")
      done.append("real_pro.png")
    det = scorers.get("detector")
    if det:
      score_histogram(os.path.join(directory, "real_hist.png"), det["image_scores"], labels, det.get("threshold"),
                      "the detector on the test pool")
      done.append("real_hist.png")
      per: dict[str, dict[str, list]] = {}
      for v, a, s in zip(items["variant"], labels, det["image_scores"]):
        g = per.setdefault(v, {"fails (truth)": [], "flagged (detector)": []})
        g["fails (truth)"].append(float(a))
        if det.get("threshold") is not None:
          g["flagged (detector)"].append(float(s > det["threshold"]))
      bars(os.path.join(directory, "real_variants.png"),
           {v: {k: float(np.mean(x)) for k, x in g.items() if x} for v, g in per.items()},
           "G's real failures by pool variant", "share of outputs")
      done.append("real_variants.png")
  per_type = summary.get("detect_all_scorers", {}).get("detector", {}).get("per_type")
  if per_type:
    bars(os.path.join(directory, "synthetic_types.png"),
         {t: {"image AUROC": v.get("image_auroc", np.nan), "AUPRO": v.get("aupro", np.nan)}
          for t, v in per_type.items()}, "synthetic artifacts by type (detector)", "score")
    done.append("synthetic_types.png")
  if workdir:
    runs = {name: read_metrics(p) for name in ("gan", "detector", "restorer")
            if files.exists(p := os.path.join(workdir, name, "metrics.jsonl"))}
    if any(runs.values()):
      loss_curves(os.path.join(directory, "losses.png"), runs)
      done.append("losses.png")
  return done


def video_timeline(path: str, rows: Sequence[dict], threshold: float, ratio: float) -> None:
  """Per frame: the detector's score with its threshold, and the temporal ratio with its
  limit; flagged frames shaded, frames truly failing (where known) marked."""
  fig = Figure(figsize=(9.5, 4.2))
  ax1, ax2 = fig.subplots(2, 1, sharex=True)
  t = np.array([r["frame"] for r in rows])
  for ax in (ax1, ax2):
    for r in rows:
      if r["flagged"]:
        ax.axvspan(r["frame"] - 0.5, r["frame"] + 0.5, color="#fdd", lw=0)
      if r.get("true_anomalous"):
        ax.axvline(r["frame"], color="#c00", lw=0.8, ls=":")
  ax1.plot(t, [r["score"] for r in rows], marker=".", lw=1)
  ax1.axhline(threshold, color="k", ls="--", lw=0.8)
  ax1.set(ylabel="detector score", title="per frame (shaded: flagged; dotted: truly failing, where known)")
  ax2.plot(t, [r["temporal"] for r in rows], marker=".", lw=1, color="tab:green")
  frozen = [r["frame"] for r in rows if r.get("frozen")]
  if frozen:
    ax2.plot(frozen, [0] * len(frozen), "rx", ms=8, mew=2, label="frozen (input repeats the one before)")
    ax2.legend(fontsize=7, loc="upper right")
  ax2.axhline(ratio, color="k", ls="--", lw=0.8)
  ax2.set(ylabel="warping error / median", xlabel="frame")
  _save(fig, path)
