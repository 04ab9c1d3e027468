"""Regenerates the README's results tables from run directories.

  python scripts/results.py runs/embedded                 # print the tables
  python scripts/results.py runs/embedded --readme        # rewrite README.md's results section
  python scripts/results.py --video=runs/video --readme   # ... its video table (experiments.stylize_video
                                                          #     --input=embedded --output=runs/video)

Reads RUN/report/summary.json (the main job) and, when present, RUN/detection.json
(`experiments.evaluate_detection`, all scorers x settings).
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stylegan_ad import report  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"
VIDEO_START, VIDEO_END = "<!-- video:start -->", "<!-- video:end -->"


def _whole_photos(d: dict) -> list[str]:
  w = d.get("whole_photos", {})
  if "fpr" not in w:
    return []
  scales = ("their own size" if w["scales"] == [1.0]
            else f"{', '.join(f'{s:g}x' for s in w['scales'])} their own size")
  return [f"At the scale people use it, on clean outputs of the {w['images'] // len(w['scales'])} whole test "
          f"photos at {scales}, the detector (calibrated as above) flags {w['flagged']} of {w['images']} "
          f"({100 * w['fpr']:.0f}%).", ""]


def _fusion(real: dict) -> list[str]:
  f = real.get("fusion")
  if f is None:
    return []
  terms = " + ".join(f"{w:.2f} x {n}" for n, w in zip(("logit(network)", "log(style statistics)", "log(G's spread)"),
                                                      f["weights"]))
  palette = f.get("palette_fit")
  either = "" if palette is None else (
      f", or, where larger, sigmoid({palette[0]:.3f} x the palette's -log-likelihood {palette[1]:+.2f}) (the style "
      "domain's colours: G's colours between the style's levels in flat regions)")
  return [f"`detector` is the network's map fused with label-free maps, fitted on the reference photo: "
          f"sigmoid({terms} {f['bias']:+.2f}){either}, its image score the map's {100 * f['quantile']:.1f}th percentile "
          f"(synthetic artifacts weighted {f['synthetic_share']:g} in the fit: image AUROC "
          f"{f['reference_synthetic_auroc']:.3f} on the reference photo's crops); `{report.NETWORK_ALONE}` is the network's "
          "own score, calibrated the same way.", ""]


def _real(summary: dict) -> list[str]:
  real = summary.get("real", {})
  if "pool" not in real:
    return [f"G's real failures: skipped ({real.get('skipped', 'not in this run')}).", ""]
  return ["G's real failures on the test photos, against the true target S(x): " + report.real_pool_line(real["pool"])
          + " Thresholds: each scorer calibrated to 1% false positives on G's clean outputs of the reference photo "
          f"(whole, at three sizes) and of the train photos{report.calibration_count(real)}, never a test photo. Brackets: 95% intervals, "
          "resampling the source photos.", "",
          report.real_failure_table(summary["real_all_scorers"]), "",
          *_fusion(real),
          *(["Correcting them, against S(x) (whole test photos; the restorer trained toward S(x) on the train "
             "photos' real outputs):", "", report.real_correction_table(summary["correct_real"]), ""]
            if "psnr_before" in summary.get("correct_real", {}) else [])]


def tables(run: str) -> str:
  with open(os.path.join(run, "report", "summary.json")) as f:
    summary = json.load(f)
  s, d, c = summary["stylize"], summary["detect"], summary["correct"]
  crop = summary["data"]["crop_size"]
  with open(os.path.join(run, "gan", "config.json")) as f:
    train_crop = json.load(f)["data"].get("train_crop") or crop
  out = [
      f"Main job (`{summary['data']['name']}`, {crop}x{crop} test crops, {summary['train_steps']} GAN steps on "
      f"{train_crop}x{train_crop} crops):", "",
      report.stylization_table(s), "",
      *_real(summary),
      f"Synthetic artifacts pasted on the test photos' outputs, all types seen in training "
      f"({d['test_images']['clean']} clean, {d['test_images']['corrupted']} corrupted; the same "
      f"thresholds):", "",
      report.detection_table({"seen types": summary["detect_all_scorers"]}), "",
      *_whole_photos(d), 
      "Synthetic artifacts, corrected (a proxy: PSNR to G's own clean output, not to S(x)):", "",
      "| correction | value |", "|---|---|",
      f"| PSNR to the clean output: corrupted | {c['psnr_before']:.2f} dB |",
      f"| PSNR to the clean output: corrected (the restorer's or a regeneration's, whichever the detector scores lowest) | {c['psnr_after']:.2f} dB |",
      f"| PSNR to the clean output: restorer alone | {c['psnr_after_restorer_only']:.2f} dB |",
      f"| corrupted outputs flagged | {c['detected_rate']:.3f} |",
      f"| repair rate (flagged, and no longer flagged after correction) | {c['repair_rate']:.3f} |",
      f"| ... by the restorer / by regeneration / failed | {c['repaired_by_restorer']:.3f} / "
      f"{c['regenerated']:.3f} / {c['failed']:.3f} |",
      f"| clean outputs unchanged (bit for bit) | {c['clean_unchanged']:.3f} |",
  ]
  regen = c.get("regeneration_psnr_to_clean", {})
  if regen:
    out.append("| PSNR of each regeneration of a clean output, to it: "
                 + " / ".join(k.replace("_", " ") for k in regen) + " | "
                 + " / ".join(f"{v:.2f}" for v in regen.values()) + " dB |")
  det_path = os.path.join(run, "detection.json")
  if os.path.exists(det_path):
    with open(det_path) as f:
      det = json.load(f)
    out += ["", "All scorers x settings (`python -m experiments.evaluate_detection "
            "--config=experiments/configs/embedded.py --workdir=runs/embedded "
            "--config.detect.heldout_steps=300`): synthetic seen types as above; each type held out of the "
            "detector's training in turn, tested on that type alone (mean over the 10 types):", "",
            report.detection_table({k: v for k, v in det["results"].items() if k != "real failures"})]
    if "real failures" in det["results"]:
      out += ["", "G's real failures, with the detector that sees G(x) only (no x) as well:", "",
              report.real_failure_table(det["results"]["real failures"])]
  return "\n".join(out)


def video_table(out_dir: str) -> str:
  from stylegan_ad import video
  with open(os.path.join(out_dir, "frames.json")) as f:
    d = json.load(f)
  return video.truth_table(d["summary"], d["frames"])


def main(argv):
  args = [a for a in argv[1:] if not a.startswith("--")]
  video_dir = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--video=")), None)
  if len(args) != (0 if video_dir else 1):
    sys.exit("usage: python scripts/results.py RUN_DIR [--readme] | --video=OUT_DIR [--readme]")
  start, end = (VIDEO_START, VIDEO_END) if video_dir else (START, END)
  text = video_table(video_dir) if video_dir else tables(args[0])
  if "--readme" in argv:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    readme = open(path, encoding="utf-8").read()
    new = re.sub(re.escape(start) + ".*?" + re.escape(end), start + "\n" + text + "\n" + end, readme,
                 flags=re.S)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      f.write(new)
    os.replace(path + ".tmp", path)
  print(text)


if __name__ == "__main__":
  main(sys.argv)
