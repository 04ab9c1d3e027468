"""Stylize, score and correct a folder of your own photos with a finished main-job run.

  python -m experiments.stylize --workdir=runs/embedded --input=photos/ --output=out/

Or stylize them with a generator trained by the PyTorch CycleGAN reference code (its
`latest_net_G_A.pth`; read without PyTorch; stylization only):

  python -m experiments.stylize --generator=torch:latest_net_G_A.pth --input=photos/ --output=out/

Each file's outputs are written as soon as it is done; a re-run (after a kill, or with
new photos added) skips the files already done (`--overwrite` redoes them). Files that
are not images are listed as skipped.

Exit code 0 when every image was processed, 1 when some image could not be read (each
has its own error line), 2 when the run or the folders cannot be used.
"""
import sys

from absl import app, flags

from stylegan_ad.errors import or_exit as _call


_WORKDIR = flags.DEFINE_string("workdir", None, "a finished main-job run directory")
_GENERATOR = flags.DEFINE_string("generator", None, "instead of --workdir: torch:PATH.pth, a ResnetGenerator "
                                 "trained with the PyTorch CycleGAN reference code (stylization only)")
_INPUT = flags.DEFINE_string("input", None, "folder of images (never modified)")
_OUTPUT = flags.DEFINE_string("output", None, "folder for results (created if needed)")
_BATCH = flags.DEFINE_integer("batch", 8, "tiles per batch (large photos are cut into tiles)")
_MAX_SIDE = flags.DEFINE_integer("max_side", 1024, "photos with a longer side are downscaled to it first")
_TARGETS = flags.DEFINE_string("targets", None, "folder of true targets with the same file names (optional): "
                               "PSNR/SSIM to them before and after correction, and detection figures")
_SAVE_MAPS = flags.DEFINE_bool("save_maps", False, "also save each anomaly map as a float32 .npy at the "
                               "photo's own resolution")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "redo files that an earlier run into --output finished")
_ALLOW_MISMATCH = flags.DEFINE_bool("allow_stage_mismatch", False, "use a run whose checkpoints do not match its "
                                    "calibration (a damaged final checkpoint fell back) instead of refusing it")
flags.mark_flags_as_required(["input", "output"])
flags.register_multi_flags_validator(["workdir", "generator"], lambda f: (f["workdir"] is None) != (f["generator"] is None),
                                     "give --workdir (a main-job run) or --generator (torch:PATH.pth), one of them")


def main(argv):
  del argv
  from stylegan_ad import console, inference
  console.quiet_libraries()
  if _GENERATOR.value:  # an outside generator: stylization only
    summary = _call(inference.stylize_folder_with_generator, _GENERATOR.value, _INPUT.value, _OUTPUT.value,
                    _MAX_SIDE.value)
    for row in _done_rows(summary):
      print(f"{row['file']}: stylized at {row['out_width']}x{row['out_height']}")
    print(f"{summary['num_stylized']} stylized, {summary['num_skipped']} skipped (not images), "
          f"{summary['num_errors']} unreadable; results: {_OUTPUT.value}/results.csv")
    sys.exit(1 if summary["num_errors"] else 0)
  summary = _call(inference.stylize_folder, _WORKDIR.value, _INPUT.value, _OUTPUT.value, _BATCH.value,
                  _MAX_SIDE.value, _TARGETS.value, _SAVE_MAPS.value, _OVERWRITE.value, _ALLOW_MISMATCH.value)
  for row in _done_rows(summary):
    psnr = (f"; PSNR to target {row['psnr_stylized']:.2f} -> {row['psnr_corrected']:.2f} dB"
            if "psnr_stylized" in row else "")
    print(f"{row['file']}: {row['verdict']} (score {row['score_before']:.3f} -> {row['score_after']:.3f}{psnr})")
    if row.get("target_error"):
      print(f"error: {row['target_error']}", file=sys.stderr)
  for name in summary.get("targets", {}).get("targets_without_input", []):
    print(f"error: {_TARGETS.value}/{name}: a target with no input photo of that name", file=sys.stderr)
  v = summary["verdicts"]
  images = sum(v.values())
  print(f"{images} stylized ({v['clean']} passed the detector, {v['repaired'] + v['regenerated']} corrected, "
        f"{v['failed']} still flagged; {summary['num_reused']} done by an earlier run), "
        f"{summary['num_skipped']} skipped (not images), {summary['num_errors']} unreadable; "
        f"report: {_OUTPUT.value}/index.html")
  sys.exit(1 if summary["num_errors"] else 0)


def _done_rows(summary):
  """Prints the unreadable and skipped files' lines; yields the processed rows."""
  for row in summary["files"]:
    if row["verdict"] == "error":
      print(f"error: {row['error']}", file=sys.stderr)
    elif row["verdict"] == "skipped":
      print(f"skipped: {row['error']}")
    else:
      yield row


def run_main():
  app.run(main)


if __name__ == "__main__":
  run_main()
