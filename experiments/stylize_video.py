"""Stylize, check and repair a video with a finished main-job run.

  python -m experiments.stylize_video --workdir=runs/embedded --input=clip.mp4 --output=out/
  python -m experiments.stylize_video --workdir=runs/embedded --input=embedded --output=runs/video

--input is a video file (mp4, webm, gif, mov, mkv, ...), a folder of frames (read in
file-name order, at --fps), or `embedded`: the embedded test clip, whose true targets and
flow are known, so the report adds its figures against the truth. Frames stream: each is
read, processed and written as it arrives. Writes `<name>.stylized.<ext>` and
`<name>.corrected.<ext>`, `frames.csv`/`frames.json`, `timeline.png`, `flagged/` and
`index.html` into --output.

Exit code 0 when the whole video was processed, 2 when the input, the run or the output
folder cannot be used (one line; no video left looking complete).
"""
import sys

from absl import app, flags

from stylegan_ad.errors import or_exit as _call

_WORKDIR = flags.DEFINE_string("workdir", None, "a finished main-job run directory")
_INPUT = flags.DEFINE_string("input", None, "a video file, a folder of frames, or `embedded` (the embedded clip)")
_OUTPUT = flags.DEFINE_string("output", None, "folder for results (created if needed)")
_FORMAT = flags.DEFINE_string("format", None, "output video format: mp4, webm or gif (default: the input's, "
                              "else mp4)")
_FPS = flags.DEFINE_float("fps", 24.0, "frame rate of a folder of frames")
_MAX_SIDE = flags.DEFINE_integer("max_side", 1024, "frames with a longer side are downscaled to it first")
_REPAIR = flags.DEFINE_enum("repair", "auto", ["auto", "restorer", "neighbours", "none"],
                            "how flagged frames are repaired (auto: neighbours for frames flagged in time, the "
                            "restorer for frames only the detector flagged)")
_RATIO = flags.DEFINE_float("ratio", 2.0, "a frame whose warping error to its neighbours is over this times the "
                            "median around it is a temporal outlier")
_ALLOW_MISMATCH = flags.DEFINE_bool("allow_stage_mismatch", False, "use a run whose checkpoints do not match its "
                                    "calibration instead of refusing it")
flags.mark_flags_as_required(["workdir", "input", "output"])


def main(argv):
  del argv
  from stylegan_ad import console, video
  console.quiet_libraries()
  settings = _call(video.Settings, _REPAIR.value, _RATIO.value, max_side=_MAX_SIDE.value)
  s = _call(video.stylize_video, _WORKDIR.value, _INPUT.value, _OUTPUT.value, settings, _FPS.value,
            _FORMAT.value, _ALLOW_MISMATCH.value)
  print(video.summary_line(s))
  for key, note in (("variable_frame_rate", video.VFR_NOTE), ("padded_to_even", video.PAD_NOTE)):
    if s[key]:
      print(note)
  print(f"report: {_OUTPUT.value}/index.html")
  sys.exit(0)


def run_main():
  app.run(main)


if __name__ == "__main__":
  run_main()
