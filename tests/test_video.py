"""Video: reading and writing (PyAV), bad inputs, the embedded clip's exact flow, the time
checks and the streaming repair (with a stand-in for the image path; the whole command on a
trained run is in test_main_job_cli.py)."""
import fractions
import os

import av
import numpy as np
import pytest

from stylegan_ad import video
from stylegan_ad.data import clip as clip_lib
from stylegan_ad.errors import DataError


def _frames(n, w=64, h=48):
  """A smooth pattern panning 2 px per frame."""
  ys, xs = np.mgrid[0:h, 0:w + 2 * n]
  base = np.stack([128 + 100 * np.sin(xs / 7.0), 128 + 100 * np.cos(ys / 5.0), 128 + 60 * np.sin((xs + ys) / 9.0)], -1)
  base = np.clip(base, 0, 255).astype(np.uint8)
  return [np.ascontiguousarray(base[:, 2 * i:2 * i + w]) for i in range(n)]


def _write(path, frames, pts=None, fps=12):
  w = video.Writer(path, fractions.Fraction(fps), fractions.Fraction(1, 1000) if pts else None)
  for i, f in enumerate(frames):
    w.write(f, pts[i] if pts else None)
  w.close()
  return w


@pytest.mark.parametrize("ext", [".mp4", ".webm", ".gif"])
def test_each_format_round_trips(tmp_path, ext):
  frames = _frames(10)
  path = str(tmp_path / f"clip{ext}")
  _write(path, frames)
  assert os.listdir(tmp_path) == [f"clip{ext}"]   # no temporary file left
  src = video.open_input(path)
  got = [f.image for f in src.frames()]
  assert (src.width, src.height) == (64, 48) and len(got) == 10
  assert abs(float(src.fps) - 12) < 0.6          # GIF stores centiseconds: 12.5
  err = np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(got, frames)])
  # lossy codecs (GIF: 256 colours a frame), but the same pictures in the same order
  assert err < (10.0 if ext == ".gif" else 6.0), err
  assert np.abs(got[0].astype(float) - frames[9]).mean() > 3 * err


def test_timestamps_odd_sizes_and_a_single_frame(tmp_path):
  pts = [0, 83, 166, 400, 483, 566, 900, 983]    # variable frame rate (ms)
  _write(str(tmp_path / "vfr.mp4"), _frames(8), pts)
  got = [f.pts for f in video.open_input(str(tmp_path / "vfr.mp4")).frames()]
  src = video.open_input(str(tmp_path / "vfr.mp4"))
  assert [p * src.time_base for p in got] == pytest.approx([p / 1000 for p in pts], abs=2e-3)
  # an odd size: GIF keeps it, H.264 pads to even sides (said), every frame readable
  _write(str(tmp_path / "odd.gif"), _frames(3, 65, 47))
  src = video.open_input(str(tmp_path / "odd.gif"))
  assert (src.width, src.height) == (65, 47)
  w = _write(str(tmp_path / "odd.mp4"), [f.image for f in src.frames()])
  assert w.padded and video.open_input(str(tmp_path / "odd.mp4")).width == 66
  _write(str(tmp_path / "one.mp4"), _frames(1))
  assert len(list(video.open_input(str(tmp_path / "one.mp4")).frames())) == 1


def _audio_frame():
  f = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.float32), format="fltp", layout="mono")
  f.sample_rate = 8000
  return f


def test_audio_tracks_and_files_without_video(tmp_path):
  path = str(tmp_path / "with_audio.mp4")
  c = av.open(path, "w")
  vs = c.add_stream("libx264", rate=12)
  vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
  aus = c.add_stream("aac", rate=8000)
  for f in _frames(6):
    for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
      c.mux(p)
  for p in [*aus.encode(_audio_frame()), *aus.encode(), *vs.encode()]:
    c.mux(p)
  c.close()
  src = video.open_input(path)
  assert src.audio and len(src.notes) == 1 and "audio track is not carried over" in src.notes[0]
  assert len(list(src.frames())) == 6
  path = str(tmp_path / "sound.m4a")
  c = av.open(path, "w")
  aus = c.add_stream("aac", rate=8000)
  for p in [*aus.encode(_audio_frame()), *aus.encode()]:
    c.mux(p)
  c.close()
  with pytest.raises(DataError, match=r"sound.m4a: no video stream \(audio\)"):
    video.open_input(path)


def _read_all(path):
  return [f.image for f in video.open_input(path).frames()]


def test_bad_inputs_are_one_line_each(tmp_path):
  rng = np.random.default_rng(0)
  noisy = [(rng.random((96, 128, 3)) * 255).astype(np.uint8) for _ in range(48)]
  cases = {}
  for ext in (".mp4", ".webm", ".gif"):
    _write(str(tmp_path / f"long{ext}"), noisy, fps=24)
    data = (tmp_path / f"long{ext}").read_bytes()
    (tmp_path / f"cut{ext}").write_bytes(data[:int(len(data) * 0.6)])
  cases["cut.mp4"] = "not a readable video, or a truncated one"
  cases["cut.webm"] = r"truncated video: frames end at .* s of its 2.00 s"
  cases["cut.gif"] = "truncated GIF"
  (tmp_path / "garbage.mp4").write_bytes(rng.bytes(4000))
  cases["garbage.mp4"] = "not a readable video"
  (tmp_path / "empty.webm").write_bytes(b"")
  cases["empty.webm"] = "not a readable video"
  cases["missing.mp4"] = "no such file or folder"
  frames = tmp_path / "frames"
  frames.mkdir()
  for i, size in enumerate([(48, 64), (48, 64), (40, 64)]):
    from PIL import Image
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(frames / f"f{i:02d}.png")
  cases["frames"] = r"f02.png: frame is 64x40, the first frame 64x48"
  (tmp_path / "nothing").mkdir()
  (tmp_path / "nothing" / "notes.txt").write_text("hi")
  cases["nothing"] = "no image files"
  for name, pattern in cases.items():
    with pytest.raises(DataError, match=pattern) as e:
      _read_all(str(tmp_path / name))
    assert str(tmp_path / name) in str(e.value) and "\n" not in str(e.value), name
  assert len(_read_all(str(tmp_path / "long.webm"))) == 48   # the whole files read


def test_exact_and_estimated_flow_of_the_embedded_clip():
  c = clip_lib.make(degraded={})
  for t in (1, 12, 24, 47):
    exact = video.warping_error(c.clean[t], c.clean[t - 1], c.flow[t])
    still = float(np.abs(c.clean[t].astype(float) - c.clean[t - 1]).mean() / 255)
    assert exact < 0.012 and still > 3 * exact, (t, exact, still)   # the flow is the camera's
    epe = np.linalg.norm(video.estimate_flow(c.clean[t], c.clean[t - 1]) - c.flow[t], axis=-1).mean()
    assert epe < 0.5, (t, epe)
  # the frame between two others, from them and the flow across both
  mid = video.interpolate(c.clean[2], c.clean[4], video.estimate_flow(c.clean[4], c.clean[2]), 0.5)
  err = lambda a: float(np.abs(a.astype(float) - c.clean[3]).mean())
  assert err(mid) < 0.3 * min(err(c.clean[2]), err(c.clean[4]))


def _identity_g(trained, frame, settings):
  """A stand-in for the image path: the 'stylized' frame is the input, the detector flags
  nothing; counts frames made and the frame each was made at."""
  trained["made"].append(frame.index)
  x = frame.image
  return video.FrameResult(frame.index, frame.pts, x, x, x, np.zeros(x.shape[:2], np.float32), 0.0, False,
                           float("nan"), brightness=video.brightness(x))


def test_process_streams_flags_degraded_frames_and_repairs_them():
  c = clip_lib.make()
  state = {"made": []}
  s = video.Settings()
  out, lag = [], []
  for r in video.process(state, (video.Frame(i, f, i) for i, f in enumerate(c.frames)), s, _identity_g):
    lag.append(len(state["made"]) - 1 - r.index)   # frames read beyond the one emitted
    out.append(r)
  assert [r.index for r in out] == list(range(len(c.frames)))
  # streaming: each frame leaves at most lookahead + window // 2 frames after it was read
  assert max(lag) <= s.lookahead + s.window // 2 and min(lag[:-s.lookahead]) >= 1
  flagged = {r.index: r.reasons for r in out if r.flagged}
  assert set(flagged) == set(c.degraded), flagged      # every degraded frame, nothing else
  assert flagged[38] == "frozen"
  for t in c.degraded:
    r = out[t]
    assert r.repair == "neighbours"
    before = np.abs(r.stylized.astype(float) - c.clean[t]).mean()
    after = np.abs(r.output.astype(float) - c.clean[t]).mean()
    assert after < 0.6 * before, (t, c.degraded[t], before, after)
  for r in out:
    if not r.flagged:
      assert r.output is r.stylized   # unflagged frames pass through untouched
  # what is written is re-checked in time: repaired frames fit their neighbours again
  for t in c.degraded:
    assert out[t].warp_error_output < 0.7 * out[t].warp_error_stylized or c.degraded[t] == "duplicate", t
  # a single frame: nothing to compare in time, nothing flagged
  one = list(video.process({"made": []}, [video.Frame(0, c.frames[0], 0)], s, _identity_g))
  assert len(one) == 1 and not one[0].flagged and np.isnan(one[0].temporal)


def test_settings_are_checked():
  with pytest.raises(DataError, match="--repair=x"):
    video.Settings(repair="x")
  with pytest.raises(DataError, match="ratio > 1"):
    video.Settings(ratio=0.5)
  with pytest.raises(DataError, match="--format=avi"):
    video.output_format("a.mp4", "avi")
  assert video.output_format("a.webm", None) == ".webm" and video.output_format("frames/", None) == ".mp4"


def test_command_refuses_bad_folders_and_settings_before_any_work(tmp_path):
  frames = tmp_path / "frames"
  frames.mkdir()
  from PIL import Image
  Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(frames / "f0.png")
  with pytest.raises(DataError, match="is inside --input"):
    video.stylize_video("no_run", str(frames), str(frames / "out"))
  with pytest.raises(DataError, match="--format=avi"):
    video.stylize_video("no_run", str(frames), str(tmp_path / "out"), fmt="avi")
  from stylegan_ad.errors import CheckpointError
  with pytest.raises(CheckpointError, match="not a main-job run directory"):
    video.stylize_video(str(tmp_path), str(frames), str(tmp_path / "out"))
  assert not (tmp_path / "out" / "frames.json").exists()
