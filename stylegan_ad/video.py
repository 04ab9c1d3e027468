"""Video: read, stylize, check and repair frame sequences as they stream, and write them.

    for r in video.process(trained, video.open_input(path).frames()):   # one FrameResult per frame
        ...

Reading and writing go through PyAV (its wheels ship FFmpeg: mp4, webm, gif, ...); a
folder of frames is read in file-name order. Frames stream: each is read, processed and
written as it arrives, and at most `window` frames already written plus `lookahead +
window // 2` frames ahead are held, so memory does not grow with the clip's length.

Every frame is stylized, scored and corrected at its own size by the image path
(`inference.correct_photo`: the detector's verdict and map). On top of that the video
is checked in time, with the optical flow between consecutive input frames (OpenCV's
DIS; for the embedded clip the exact flow is known and used to measure):

- warping error e(t): mean |y_t - W(y_{t-1})| over pixels the flow maps inside the
  frame, y the stylized frames, W the backward warp. A frame's temporal score is
  min(e(t), e(t+1)) (a bad frame breaks consistency with both neighbours; a neighbour of
  a bad frame with only one), divided by the median of the scores around it: a frame is
  a *temporal outlier* when that ratio is over `ratio`;
- a *frozen* frame: an input frame (nearly) identical to the one before while the frames
  around it move (a duplicated frame);
- flicker: the change of the frame's mean brightness from the previous frame.

A frame is flagged when the detector flags it, or it is a temporal outlier, or frozen.
Repairs (`repair`): `restorer` keeps the image path's correction (the restorer inside
the map, then regenerations, each re-scored); `neighbours` replaces the frame by its
nearest neighbours not flagged in time, their stylized frames warped to it (the flow
between those two input frames, started from the one-frame flow times the gap, taken at
the frame's time); `auto` (the default, chosen by measuring both on the embedded clip:
README, Results) uses the neighbours for temporal and frozen flags and the restorer for
frames only the detector flagged. What is written is re-checked in time: each written
frame's warping error to the previous one along the flow estimated on the written frames
(`warp_error_output`, next to the same measure of G's frames, `warp_error_stylized`).
"""
from __future__ import annotations

import collections
import dataclasses
import fractions
import json
import os
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from stylegan_ad import fullres
from stylegan_ad.data import images as images_lib
from stylegan_ad.errors import DataError
from stylegan_ad.files import temporary_name

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
OUTPUT_FORMATS = {".mp4": ("mp4", "libx264", "yuv420p"), ".webm": ("webm", "libvpx-vp9", "yuv420p"),
                  ".gif": ("gif", "gif", "pal8")}
REPAIRS = ("auto", "restorer", "neighbours", "none")


# ----------------------------------------------------------------------------- reading

@dataclasses.dataclass
class Frame:
  index: int
  image: np.ndarray    # uint8 HxWx3
  pts: int | None      # presentation time in `time_base` units (None: a folder's frame)


@dataclasses.dataclass
class Source:
  """An opened input: its properties, and `frames()`, a generator of `Frame`s."""
  path: str
  width: int
  height: int
  fps: fractions.Fraction
  time_base: fractions.Fraction
  declared_frames: int      # 0 where the container does not say
  audio: bool
  notes: list[str]          # one line each: what was done about this input (audio, ...)
  _iter: Any = None

  def frames(self) -> Iterator[Frame]:
    return self._iter()


def open_input(path: str, fps: float = 24.0) -> Source:
  """A video file or a folder of frames (`fps`: a folder's frame rate). Raises DataError
  (one line naming the file) for anything that cannot be read as a video."""
  if os.path.isdir(path):
    return _open_folder(path, fps)
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file or folder")
  return _open_file(path)


def _open_folder(path: str, fps: float) -> Source:
  names = sorted(n for n in os.listdir(path) if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS))
  if not names:
    raise DataError(f"{path}: no image files (frames) in this folder")
  first = images_lib.read_rgb(os.path.join(path, names[0]))
  h, w = first.shape[:2]
  rate = fractions.Fraction(fps).limit_denominator(1001)

  def frames():
    for i, name in enumerate(names):
      im = first if i == 0 else images_lib.read_rgb(os.path.join(path, name))
      if im.shape != first.shape:
        raise DataError(f"{os.path.join(path, name)}: frame is {im.shape[1]}x{im.shape[0]}, the first frame "
                        f"{w}x{h}: every frame of a video must have one size")
      yield Frame(i, im, None)
  return Source(path, w, h, rate, 1 / rate, len(names), False, [], frames)


def _open_file(path: str) -> Source:
  import av
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
    raise DataError(f"{path}: not a readable video, or a truncated one ({_why(e)})") from None
  if not container.streams.video:
    kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
    container.close()
    raise DataError(f"{path}: no video stream ({kinds})")
  stream = container.streams.video[0]
  ctx = stream.codec_context
  w, h = ctx.width, ctx.height
  if not w or not h:
    container.close()
    raise DataError(f"{path}: its video stream has no frame size (corrupt header)")
  rate = stream.average_rate or stream.guessed_rate or fractions.Fraction(24)
  notes = []
  audio = bool(container.streams.audio)
  if audio:
    notes.append(f"{path}: its audio track is not carried over (the output is video only)")
  time_base = stream.time_base or 1 / rate

  declared = int(stream.frames or 0)
  # where the container says how long the video is but not how many frames (webm, mkv)
  duration = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
              else container.duration / 1e6 if container.duration else 0.0)

  def frames():
    i, last = 0, None
    try:
      for frame in container.decode(stream):
        yield Frame(i, frame.to_ndarray(format="rgb24"), frame.pts)
        last = frame.time if frame.time is not None else last
        i += 1
    except av.error.FFmpegError as e:
      raise DataError(f"{path}: corrupt or truncated video at frame {i} ({_why(e)})") from None
    finally:
      container.close()
    if i == 0:
      raise DataError(f"{path}: no frame could be decoded (corrupt or truncated video)")
    if container.format.name == "gif" and not _ends_with(path, b";"):   # GIF's trailer byte
      raise DataError(f"{path}: truncated GIF: {i} frames could be decoded, the file ends without its trailer")
    if declared and i < declared:
      raise DataError(f"{path}: truncated video: {i} of its {declared} frames could be decoded")
    if not declared and duration and last is not None and last + 2.5 / float(rate) < duration:
      raise DataError(f"{path}: truncated video: frames end at {last:.2f} s of its {duration:.2f} s")
  return Source(path, w, h, rate, time_base, declared, audio, notes, frames)


def _ends_with(path: str, tail: bytes) -> bool:
  with open(path, "rb") as f:
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - len(tail)))
    return f.read() == tail


def _why(e: BaseException) -> str:
  return (getattr(e, "strerror", None) or str(e)).strip().splitlines()[0][:160]


# ----------------------------------------------------------------------------- writing

class Writer:
  """Writes frames to a video file (by extension: .mp4, .webm, .gif) under a temporary
  name, renamed to `path` only by `close()`: a failed run never leaves a file that looks
  complete (`abort()` removes it). Frames keep their input timestamps, so a variable frame
  rate survives. H.264 and VP9 need even sides: an odd side is padded by repeating the last
  row or column (`padded`)."""

  def __init__(self, path: str, fps: fractions.Fraction, time_base: fractions.Fraction | None = None):
    import av
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
      raise DataError(f"{path}: unknown video format {ext or '(no extension)'}: give .mp4, .webm or .gif")
    self.path, self.fps = path, fps
    self._tmp = temporary_name(path)
    fmt, codec, self._pix = OUTPUT_FORMATS[ext]
    self._container = av.open(self._tmp, "w", format=fmt)
    self._stream = self._container.add_stream(codec, rate=fps)
    self._stream.pix_fmt = self._pix
    if codec == "libx264":
      self._stream.options = {"crf": "17", "preset": "veryfast"}
    self._time_base = time_base
    self._size = None
    self.padded = False
    self.frames = 0
    self._last_pts = None

  def write(self, image: np.ndarray, pts: int | None = None) -> None:
    import av
    h, w = image.shape[:2]
    if self._size is None:
      even = self._pix == "yuv420p"
      self._size = (w + (w % 2 if even else 0), h + (h % 2 if even else 0))
      self.padded = self._size != (w, h)
      self._stream.width, self._stream.height = self._size
      # the frames' time base, fixed here (the muxer changes the stream's own once it starts)
      self._frame_base = self._time_base if self._time_base is not None and pts is not None else 1 / self.fps
      self._stream.time_base = self._stream.codec_context.time_base = self._frame_base
    if (w, h) != self._size:
      image = np.pad(image, ((0, self._size[1] - h), (0, self._size[0] - w), (0, 0)), mode="edge")
    if self._pix == "pal8":   # GIF: each frame its own 256-colour palette (Pillow's median cut)
      frame = av.VideoFrame.from_ndarray(_palette(image), format="pal8")
    else:
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    if pts is None or self._time_base is None or (self._last_pts is not None and pts <= self._last_pts):
      pts = self.frames if self._time_base is None or self._last_pts is None else self._last_pts + 1
    frame.pts, frame.time_base = pts, self._frame_base
    self._last_pts = pts
    for packet in self._stream.encode(frame):
      self._container.mux(packet)
    self.frames += 1

  def close(self) -> None:
    for packet in self._stream.encode():
      self._container.mux(packet)
    self._container.close()
    os.replace(self._tmp, self.path)

  def abort(self) -> None:
    try:
      self._container.close()
    except Exception:  # noqa: BLE001 - the file is being thrown away
      pass
    if os.path.exists(self._tmp):
      os.remove(self._tmp)


def _palette(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  from PIL import Image
  q = Image.fromarray(image).quantize(256, dither=Image.Dither.NONE)
  rgb = np.zeros((256, 3), np.uint8)
  pal = np.frombuffer(bytes(q.getpalette()), np.uint8).reshape(-1, 3)[:256]
  rgb[:len(pal)] = pal
  argb = np.concatenate([np.full((256, 1), 255, np.uint8), rgb], axis=1)
  return np.asarray(q, np.uint8), argb


# ----------------------------------------------------------------------------- time

def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
  return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))


_DIS = None


def estimate_flow(now: np.ndarray, before: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
  """Backward flow [H, W, 2] (dx, dy): pixel p of `now` shows what `before` shows at p +
  flow(p). OpenCV's DIS optical flow (medium preset) on the gray frames (uint8 RGB in): on
  the embedded clip 0.06-0.14 px from the exact flow (Farneback: 1.3-6.4 px), 5 ms at 256x192.
  `init`: a first guess (over several frames, the one-frame flow times the gap: 0.35 px
  off over 3 frames, 2.9 px without it)."""
  global _DIS
  if _DIS is None:
    _DIS = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
  g1 = cv2.cvtColor(now, cv2.COLOR_RGB2GRAY)
  g0 = cv2.cvtColor(before, cv2.COLOR_RGB2GRAY)
  return _DIS.calc(g1, g0, None if init is None else np.array(init, np.float32))


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(image sampled at p + flow(p), mask of pixels whose source lies inside the frame)."""
  h, w = flow.shape[:2]
  xs, ys = _grid(h, w)
  mx, my = xs + flow[..., 0], ys + flow[..., 1]
  out = cv2.remap(np.asarray(image, np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
  valid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
  return out, valid


def warping_error(now: np.ndarray, before: np.ndarray, flow: np.ndarray) -> float:
  """Mean |now - W(before)| over the valid pixels, images in [0, 255] -> a value in [0, 1]."""
  warped, valid = warp(before, flow)
  if not valid.any():
    return float("nan")
  return float(np.abs(now.astype(np.float32) - warped)[valid].mean() / 255.0)


def brightness(image: np.ndarray) -> float:
  return float((image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).mean() / 255.0)


def interpolate(before: np.ndarray, after: np.ndarray, flow_after_to_before: np.ndarray, alpha: float
                ) -> np.ndarray:
  """The frame a fraction `alpha` of the way from `before` to `after`, each warped along
  the flow between them (constant motion assumed; the flow is taken at the frame's own
  pixel, exact for the smooth motion of a camera); uint8."""
  f = flow_after_to_before  # pixel p of `after` shows what `before` shows at p + f(p)
  from_before, vb = warp(before, alpha * f)
  from_after, va = warp(after, -(1 - alpha) * f)
  wb = np.where(vb, 1 - alpha, 0.0)[..., None] + 1e-6
  wa = np.where(va, alpha, 0.0)[..., None] + 1e-6
  out = (wb * from_before + wa * from_after) / (wb + wa)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- processing

@dataclasses.dataclass
class FrameResult:
  index: int
  pts: int | None
  input: np.ndarray         # as processed (downscaled to max_side)
  stylized: np.ndarray
  output: np.ndarray        # what is written
  map: np.ndarray
  score: float              # the detector's score of the stylized frame
  detector_flag: bool
  warp_error: float         # e(t) against the previous frame (nan for the first)
  temporal: float = float("nan")     # min(e(t), e(t+1)) / the median around it
  frozen: bool = False
  flagged: bool = False
  reasons: str = ""         # "detector", "temporal", "frozen", joined by "+"
  repair: str = ""          # what replaced the stylized frame: "restorer", "regenerated", "neighbours"
  restored: np.ndarray | None = None       # the image path's correction (flagged frames)
  neighbours: np.ndarray | None = None     # the neighbour interpolation (flagged frames with both sides)
  motion: float = 0.0       # mean |x_t - x_{t-1}| of the inputs
  flow: np.ndarray | None = None    # the estimated backward flow to the previous frame
  # the written frames re-checked in time, and G's frames measured the same way: warping error
  # to the previous frame along the flow estimated on these frames themselves
  warp_error_output: float = float("nan")
  warp_error_stylized: float = float("nan")
  brightness: float = 0.0
  min_error: float = float("nan")   # min(e(t), e(t+1))

  @property
  def in_time_flag(self) -> bool:
    """Flagged in time (a temporal outlier or frozen): not a neighbour to interpolate from."""
    return "temporal" in self.reasons or "frozen" in self.reasons


@dataclasses.dataclass(frozen=True)
class Settings:
  repair: str = "auto"
  ratio: float = 2.0         # temporal outlier: its score over `ratio` x the median around it
  frozen: float = 0.1        # frozen: input change under `frozen` x the median change around it
  window: int = 8            # frames before a frame that its median looks at
  lookahead: int = 4         # frames after it (the delay of the stream)
  max_side: int = fullres.DEFAULT_MAX_SIDE

  def __post_init__(self):
    if self.repair not in REPAIRS:
      raise DataError(f"--repair={self.repair}: choose one of {', '.join(REPAIRS)}")
    if self.ratio <= 1.0 or not 0.0 < self.frozen < 1.0 or self.window < 2 or self.lookahead < 1:
      raise DataError(f"video settings {self}: need ratio > 1, 0 < frozen < 1, window >= 2, lookahead >= 1")


def _per_frame(trained, frame: Frame, settings: Settings) -> FrameResult:
  from stylegan_ad import inference
  x = fullres.fit_max_side(frame.image, settings.max_side)[0]
  out = inference.correct_photo(trained, x, max_side=settings.max_side, batch=1)
  flagged = out["verdict"] != 0
  return FrameResult(frame.index, frame.pts, x, out["stylized"], out["stylized"], out["map"], out["score_before"],
                     flagged, float("nan"), restored=out["corrected"] if flagged else None,
                     repair=("restorer" if out["verdict"] == 1 else "regenerated") if out["verdict"] in (1, 2) else "",
                     brightness=brightness(out["stylized"]))


def _nanmin(a: float, b: float) -> float:
  finite = [v for v in (a, b) if np.isfinite(v)]
  return min(finite) if finite else float("nan")


def _written_error(now: np.ndarray, before: np.ndarray) -> float:
  return warping_error(now, before, estimate_flow(now, before))


def _nanmean(values) -> float | None:
  v = np.asarray(values, np.float64)
  return float(np.nanmean(v)) if np.isfinite(v).any() else None


def _median_excluding(values: list[float], i: int) -> float:
  rest = [v for j, v in enumerate(values) if j != i and np.isfinite(v)]
  return float(np.median(rest)) if rest else float("nan")


def _decide(buf: list[FrameResult], i: int, s: Settings) -> None:
  """Temporal and frozen flags of buf[i], from the frames around it in the buffer."""
  r = buf[i]
  errs = [b.min_error for b in buf]
  base = _median_excluding(errs, i)
  r.temporal = r.min_error / base if np.isfinite(base) and base > 0 and np.isfinite(r.min_error) else float("nan")
  moving = _median_excluding([b.motion if b.index > 0 else float("nan") for b in buf], i)
  r.frozen = bool(r.index > 0 and np.isfinite(moving) and moving > 0.01 and r.motion < s.frozen * moving)
  reasons = [name for name, on in (("detector", r.detector_flag), ("temporal", r.temporal > s.ratio),
                                   ("frozen", r.frozen)) if on]
  r.flagged, r.reasons = bool(reasons), "+".join(reasons)


def _repair(buf: list[FrameResult], i: int, s: Settings) -> None:
  """Sets buf[i].output from its candidates (buf[i] is flagged)."""
  r = buf[i]
  before = next((b for b in reversed(buf[:i]) if not b.in_time_flag), None)
  after = next((b for b in buf[i + 1:] if not b.in_time_flag), None)
  if before is not None and after is not None:
    alpha = (r.index - before.index) / (after.index - before.index)
    guess = None if before.flow is None else before.flow * (after.index - before.index)
    flow = estimate_flow(after.input, before.input, guess)
    r.neighbours = interpolate(before.stylized, after.stylized, flow, alpha)
  temporal = r.in_time_flag
  use = s.repair
  if use == "auto":
    use = "neighbours" if temporal else "restorer"
  if use == "neighbours" and r.neighbours is not None:
    r.output, r.repair = r.neighbours, "neighbours"
  elif use in ("restorer", "neighbours") and r.restored is not None and r.repair:
    r.output = r.restored
  else:
    r.output, r.repair = r.stylized, ""


def process(trained, frames: Iterable[Frame], settings: Settings = Settings(), per_frame=None
            ) -> Iterator[FrameResult]:
  """Stylizes, checks and repairs a stream of frames; yields one FrameResult per frame, in
  order. A frame is decided once `lookahead` frames after it are in; a flagged frame waits
  (at most `window // 2` frames more) for a frame after it not flagged in time to interpolate
  from. The buffer holds at most `window` emitted frames (for the medians and as the
  neighbour before) and the frames not yet emitted: memory is bounded by the settings,
  never by the clip's length. `per_frame(trained, frame, settings) -> FrameResult` is the
  image path (`_per_frame`; replaceable, for tests)."""
  s = settings
  per_frame = per_frame or _per_frame
  buf: collections.deque[FrameResult] = collections.deque()
  emitted = 0     # buf[:emitted] are emitted (history)
  last: list[FrameResult] = []   # the frame emitted last
  decided = 0     # buf[:decided] are decided
  previous: FrameResult | None = None

  def drain(final: bool) -> Iterator[FrameResult]:
    nonlocal emitted, decided
    newest = buf[-1].index if buf else -1
    while decided < len(buf) and (final or newest - buf[decided].index >= s.lookahead):
      _decide(list(buf), decided, s)
      decided += 1
    while emitted < decided:
      r = buf[emitted]
      if r.flagged:
        after = any(not b.in_time_flag for b in list(buf)[emitted + 1:decided])
        if not (after or final or newest - r.index >= s.lookahead + s.window // 2):
          break   # wait for an unflagged frame after it
        _repair(list(buf)[:decided], emitted, s)
      if last:   # the re-check in time of what is written, and the same measure of G's frames
        r.warp_error_stylized = _written_error(r.stylized, last[0].stylized)
        same = r.output is r.stylized and last[0].output is last[0].stylized
        r.warp_error_output = r.warp_error_stylized if same else _written_error(r.output, last[0].output)
      last[:] = [r]
      yield r
      emitted += 1
    while emitted > s.window:
      buf.popleft()
      emitted -= 1
      decided -= 1

  for frame in frames:
    r = per_frame(trained, frame, s)
    if previous is not None:
      r.flow = estimate_flow(r.input, previous.input)
      r.warp_error = warping_error(r.stylized, previous.stylized, r.flow)
      r.motion = float(np.abs(r.input.astype(np.float32) - previous.input).mean() / 255.0)
      previous.min_error = _nanmin(previous.min_error, r.warp_error)
      r.min_error = r.warp_error
    previous = r
    buf.append(r)
    yield from drain(final=False)
  yield from drain(final=True)


# ----------------------------------------------------------------------------- the embedded clip's truth

class ClipTruth:
  """Per-frame figures of a stream against the embedded clip's exact truth: PSNR of the
  stylized frame, of the output and of each repair candidate to S(clean frame); G's true
  failing area (the run's failure truth); warping errors with the exact flow (of S's own
  frames, the stylized and the output frames); brightness for the flicker index."""

  def __init__(self, clip, style: str, truth=None):
    from stylegan_ad.data import styles
    self.clip, self.truth, self._style = clip, truth, styles.get_style(style)
    self._prev: dict[str, np.ndarray] | None = None

  def add(self, r: FrameResult) -> dict[str, Any]:
    from stylegan_ad import metrics
    from stylegan_ad.data.pipeline import to_float
    target = self._style(self.clip.clean[r.index])
    psnr = lambda a: float(metrics.psnr_np(to_float(a)[None], to_float(target)[None])[0])
    row = {"psnr_stylized": psnr(r.stylized), "psnr_output": psnr(r.output),
           "degradation": self.clip.degraded.get(r.index, "")}
    if r.flagged:
      row["psnr_restorer"] = psnr(r.restored) if r.restored is not None else row["psnr_stylized"]
      if r.neighbours is not None:
        row["psnr_neighbours"] = psnr(r.neighbours)
    if self.truth is not None:
      area = float(self.truth.mask(to_float(r.stylized), to_float(target)).mean())
      row["true_failing_area"], row["true_anomalous"] = area, bool(area > self.truth.area_cut)
    now = {"target": target, "stylized": r.stylized, "output": r.output}
    if self._prev is not None:
      for k in now:
        row[f"exact_warp_{k}"] = warping_error(now[k], self._prev[k], self.clip.flow[r.index])
    row["brightness_target"] = brightness(target)
    self._prev = now
    return row


def clip_summary(rows: list[dict]) -> dict[str, Any]:
  """The clip's figures from its per-frame rows (`ClipTruth.add` merged into each)."""
  from stylegan_ad import metrics
  flagged = [r for r in rows if r["flagged"]]
  mean = lambda rs, k: float(np.nanmean([r[k] for r in rs if k in r])) if any(k in r for r in rs) else None
  flick = lambda k: float(np.mean(np.abs(np.diff([r[k] for r in rows])))) if len(rows) > 1 else 0.0
  out = {"frames": len(rows), "flagged": len(flagged),
         "psnr": {"stylized": mean(rows, "psnr_stylized"), "output": mean(rows, "psnr_output")},
         "psnr_flagged": {k: mean(flagged, f"psnr_{k}") for k in ("stylized", "output", "restorer", "neighbours")},
         "exact_warping_error": {k: mean(rows, f"exact_warp_{k}") for k in ("target", "stylized", "output")},
         "flicker": {"target": flick("brightness_target"), "stylized": flick("brightness_stylized"),
                     "output": flick("brightness")},
         "degraded_frames": {str(r["frame"]): r["degradation"] for r in rows if r["degradation"]}}
  touched = {r["frame"] for r in flagged} | {r["frame"] + 1 for r in flagged}
  near = [r for r in rows if r["frame"] in touched]
  out["exact_warping_error_at_flagged"] = {k: mean(near, f"exact_warp_{k}") for k in ("target", "stylized",
                                                                                       "output")}
  labelled = [r for r in rows if "true_anomalous" in r]
  if labelled:
    labels = np.array([r["true_anomalous"] for r in labelled])
    auroc = lambda k: (float(metrics.auroc(np.nan_to_num(np.array([r[k] for r in labelled], np.float64),
                                                        nan=0.0), labels))
                       if 0 < labels.sum() < len(labels) else None)
    flags = np.array([r["flagged"] for r in labelled])
    out["detection"] = {
        "true_anomalous": int(labels.sum()), "auroc_detector": auroc("score"), "auroc_temporal": auroc("time_score"),
        "auroc_combined": auroc("combined"),
        "tpr": float(flags[labels].mean()) if labels.any() else None,
        "fpr": float(flags[~labels].mean()) if (~labels).any() else None,
        "fpr_detector": float(np.array([r["detector_flag"] for r in labelled])[~labels].mean())
        if (~labels).any() else None}
  return out


# ----------------------------------------------------------------------------- the command

def _row(r: FrameResult, threshold: float, settings: Settings) -> dict[str, Any]:
  # one number to rank frames by: over 0 where the detector or the temporal check flags
  # the check in time as one number (a frozen frame ranks first), and both checks as one:
  # each over 0 exactly where it flags the frame
  time_score = FROZEN_SCORE if r.frozen else r.temporal if np.isfinite(r.temporal) else 0.0
  combined = max(r.score - threshold, float(np.log(max(time_score, 1e-6) / settings.ratio)))
  return {"frame": r.index, "pts": r.pts, "score": r.score, "detector_flag": r.detector_flag,
          "warp_error": r.warp_error, "warp_error_stylized": r.warp_error_stylized,
          "warp_error_output": r.warp_error_output, "temporal": r.temporal, "frozen": r.frozen, "time_score": float(time_score), "flagged": r.flagged,
          "reasons": r.reasons, "repair": r.repair if r.flagged else "", "combined": float(combined),
          "brightness": brightness(r.output), "brightness_stylized": r.brightness}


FROZEN_SCORE = 1e3   # a frozen frame's time score (its warping error says nothing: it did not move)
FIELDS = ("frame", "pts", "flagged", "reasons", "repair", "score", "detector_flag", "warp_error",
          "warp_error_stylized", "warp_error_output", "temporal", "time_score",
          "frozen", "combined", "brightness", "degradation", "psnr_stylized", "psnr_output", "psnr_restorer",
          "psnr_neighbours", "true_failing_area", "true_anomalous", "exact_warp_target", "exact_warp_stylized",
          "exact_warp_output")
EMBEDDED = "embedded"   # --input=embedded: the embedded clip, with its truth
VFR_NOTE = "variable frame rate: each output frame keeps its input frame's timestamp"
PAD_NOTE = "an odd side: the videos repeat the last row or column to make it even, as H.264 and VP9 need"


def output_format(input_path: str, fmt: str | None) -> str:
  if fmt:
    ext = "." + fmt.lower().lstrip(".")
    if ext not in OUTPUT_FORMATS:
      raise DataError(f"--format={fmt}: choose one of {', '.join(e[1:] for e in OUTPUT_FORMATS)}")
    return ext
  ext = os.path.splitext(input_path)[1].lower()
  return ext if ext in OUTPUT_FORMATS else ".mp4"


def stylize_video(workdir: str, input_path: str, output_dir: str, settings: Settings = Settings(),
                  fps: float = 24.0, fmt: str | None = None, allow_stage_mismatch: bool = False,
                  trained=None, say=print) -> dict[str, Any]:
  """Stylizes, checks and repairs a video (file, folder of frames, or `embedded`) into
  `output_dir`: `<name>.stylized<ext>` (G's frames) and `<name>.corrected<ext>` (flagged
  frames repaired), `frames.csv`/`frames.json` (per frame; `frames.jsonl` grows as frames
  are done), `timeline.png`, thumbnails of flagged frames under `flagged/`, and `index.html`.
  Returns the summary (also in `frames.json`). On an input that breaks mid-stream the
  videos are not written (their temporary files are removed), `frames.json` says
  `"complete": false` with the error, and the DataError is raised."""
  import time
  from stylegan_ad import inference
  from stylegan_ad.files import write_json, write_text
  from stylegan_ad.train.logger import save_png
  if os.path.realpath(output_dir) == os.path.realpath(input_path) or (
      os.path.isdir(input_path) and inference.is_inside(output_dir, input_path)):
    raise DataError(f"--output={output_dir} is inside --input={input_path}: give an output folder outside it")
  clip = None
  if input_path == EMBEDDED:
    from stylegan_ad.data import clip as clip_lib
    clip = clip_lib.make()
    h, w = clip.frames.shape[1:3]
    rate = fractions.Fraction(clip.fps)
    source = Source(EMBEDDED, w, h, rate, 1 / rate, len(clip.frames), False, [],
                    lambda: (Frame(i, f, i) for i, f in enumerate(clip.frames)))
  else:
    source = open_input(input_path, fps)
  ext = output_format(input_path, fmt)
  inference.check_writable(output_dir)
  trained = trained or inference.load_trained(workdir, allow_stage_mismatch)
  threshold = trained.corrector.threshold
  truth = ClipTruth(clip, trained.config.data.source.split(":")[-1], trained.truth) if clip is not None else None
  stem = inference.output_stem(os.path.splitext(os.path.basename(os.path.normpath(input_path)))[0])
  os.makedirs(os.path.join(output_dir, "flagged"), exist_ok=True)
  for note in source.notes:
    say(note)
  names = {"stylized": f"{stem}.stylized{ext}", "corrected": f"{stem}.corrected{ext}"}
  writers = {k: Writer(os.path.join(output_dir, n), source.fps, source.time_base) for k, n in names.items()}
  progress = os.path.join(output_dir, "frames.jsonl")
  rows, start, pts = [], time.time(), []
  summary = {"input": input_path, "width": source.width, "height": source.height, "fps": float(source.fps),
             "declared_frames": source.declared_frames, "audio": "dropped" if source.audio else "none",
             "settings": dataclasses.asdict(settings), "threshold": threshold, "videos": names}
  try:
    with open(progress, "w", encoding="utf-8") as log:
      for r in process(trained, source.frames(), settings):
        writers["stylized"].write(r.stylized, r.pts)
        writers["corrected"].write(r.output, r.pts)
        row = _row(r, threshold, settings)
        if truth is not None:
          row.update(truth.add(r))
        if r.flagged:
          row["thumbnail"] = f"flagged/frame_{r.index:06d}.png"
          save_png(os.path.join(output_dir, row["thumbnail"]), np.concatenate([r.input, r.stylized, r.output], 1))
        rows.append(row)
        pts.append(r.pts)
        log.write(json.dumps({k: row.get(k) for k in FIELDS if k in row}) + "\n")
        log.flush()
  except BaseException as e:
    for wr in writers.values():
      wr.abort()
    if not isinstance(e, (DataError, OSError)):
      raise
    message = str(e) if isinstance(e, DataError) else f"{output_dir}: {e}"
    summary.update(complete=False, error=message, frames_done=len(rows))
    write_json(os.path.join(output_dir, "frames.json"), {"summary": summary, "frames": rows})
    raise DataError(message) from None
  for wr in writers.values():
    wr.close()
  seconds = time.time() - start
  gaps = np.diff([p for p in pts if p is not None])
  summary.update(complete=True, frames=len(rows), flagged=sum(r["flagged"] for r in rows),
                 repaired=sum(bool(r["repair"]) for r in rows), seconds=seconds,
                 warping_error={"stylized": _nanmean([r["warp_error_stylized"] for r in rows]),
                                "output": _nanmean([r["warp_error_output"] for r in rows])},
                 frames_per_second=len(rows) / max(seconds, 1e-9),
                 out_width=int(r.output.shape[1]) if rows else 0, out_height=int(r.output.shape[0]) if rows else 0,
                 variable_frame_rate=bool(len(gaps) > 1 and gaps.max() - gaps.min() > 1),
                 padded_to_even=writers["corrected"].padded)
  if truth is not None:
    summary["truth"] = clip_summary(rows)
    write_text(os.path.join(output_dir, "figures.md"), truth_table(summary, rows) + "\n")
  from stylegan_ad import plots
  plots.video_timeline(os.path.join(output_dir, "timeline.png"), rows, threshold, settings.ratio)
  inference.write_csv(os.path.join(output_dir, "frames.csv"), rows, FIELDS)
  write_json(os.path.join(output_dir, "frames.json"), {"summary": summary, "frames": rows})
  write_text(os.path.join(output_dir, "index.html"), report_html(summary, rows))
  return summary


def summary_line(s: dict) -> str:
  """What the command prints when it is done."""
  we = s["warping_error"]
  line = (f"{s['frames']} frames ({s['out_width']}x{s['out_height']}), {s['flagged']} flagged, "
          f"{s['repaired']} repaired, {s['frames_per_second']:.2f} frames/s; warping error "
          f"{_f4(we['stylized'])} -> {_f4(we['output'])}")
  return line + ("; " + truth_line(s["truth"]) if "truth" in s else "")


def truth_line(t: dict) -> str:
  """The embedded clip's figures in one line."""
  f2 = lambda v, fmt=".2f": "n/a" if v is None else format(v, fmt)
  d, p, q, e = t.get("detection", {}), t["psnr"], t["psnr_flagged"], t["exact_warping_error"]
  return (f"against S(frame): PSNR {f2(p['stylized'])} -> {f2(p['output'])} dB (flagged frames "
          f"{f2(q['stylized'])} -> {f2(q['output'])}), warping error {f2(e['stylized'], '.4f')} -> "
          f"{f2(e['output'], '.4f')} (S's own {f2(e['target'], '.4f')}), truly failing frames flagged "
          f"{f2(d.get('tpr'), '.3f')}, others flagged {f2(d.get('fpr'), '.3f')}")


def truth_table(summary: dict, rows: list[dict]) -> str:
  """The embedded clip's figures as Markdown: per degradation and for the detector's own
  flags, PSNR to S of G's frame, each repair and what was written; then the clip's
  detection, warping-error and flicker figures."""
  t = summary["truth"]
  d, e, fl = t.get("detection", {}), t["exact_warping_error"], t["flicker"]
  f = lambda v, fmt=".2f": "n/a" if v is None or not np.isfinite(v) else format(v, fmt)
  groups: dict[str, list[dict]] = {}
  detector_only = sum(1 for q in rows if q["flagged"] and not q["degradation"])
  for r in rows:
    if r["degradation"]:
      groups.setdefault(f"{r['degradation'].replace('_', ' ')} (frame {r['frame']})", []).append(r)
    elif r["flagged"]:
      groups.setdefault(f"clean input, flagged by the detector ({detector_only} frames)", []).append(r)
  mean = lambda rs, k: float(np.mean([r.get(k, r["psnr_stylized"]) for r in rs]))
  out = ["| frames | flagged as | PSNR to S: G's frame | restorer | neighbours warped | written |",
         "|---|---|---|---|---|---|"]
  for name, rs in groups.items():
    reasons = "/".join(sorted({r["reasons"] or "not flagged" for r in rs}))
    nb = [r for r in rs if "psnr_neighbours" in r]
    out.append(f"| {name} | {reasons} | {mean(rs, 'psnr_stylized'):.2f} | {mean(rs, 'psnr_restorer'):.2f} | "
               f"{f(mean(nb, 'psnr_neighbours')) if nb else 'n/a'} | {mean(rs, 'psnr_output'):.2f} dB |")
  out += ["", "| the whole clip | value |", "|---|---|",
          f"| frames truly failing (G's frame against S, the run's failure truth) | {d.get('true_anomalous')} of "
          f"{t['frames']} |",
          f"| per-frame AUROC: detector / check in time / both | {f(d.get('auroc_detector'), '.3f')} / "
          f"{f(d.get('auroc_temporal'), '.3f')} / {f(d.get('auroc_combined'), '.3f')} |",
          f"| truly failing frames flagged / other frames flagged (by the detector alone) | "
          f"{f(d.get('tpr'), '.3f')} / {f(d.get('fpr'), '.3f')} ({f(d.get('fpr_detector'), '.3f')}) |",
          f"| PSNR to S, all frames: G's / written | {f(t['psnr']['stylized'])} / {f(t['psnr']['output'])} dB |",
          f"| PSNR to S, flagged frames: G's / written | {f(t['psnr_flagged']['stylized'])} / "
          f"{f(t['psnr_flagged']['output'])} dB |",
          f"| warping error, exact flow: S's own / G's / written | {f(e['target'], '.4f')} / "
          f"{f(e['stylized'], '.4f')} / {f(e['output'], '.4f')} |",
          f"| ... at the flagged frames and the frames after them | "
          f"{' / '.join(f(t['exact_warping_error_at_flagged'][k], '.4f') for k in ('target', 'stylized', 'output'))} |",
          f"| flicker (mean change of brightness between frames): S / G's / written | {fl['target']:.4f} / "
          f"{fl['stylized']:.4f} / {fl['output']:.4f} |",
          f"| frames per second (stylize, score, correct, check, write; {summary['out_width']}x"
          f"{summary['out_height']}) | {summary['frames_per_second']:.2f} |"]
  return "\n".join(out)


def _f4(v) -> str:
  return "n/a" if v is None else f"{v:.4f}"


def report_html(summary: dict, rows: list[dict]) -> str:
  """The video's page: what was done, the timeline, the flagged frames' thumbnails, the
  embedded clip's figures where there is truth."""
  import html
  from stylegan_ad.report import html_page
  esc = lambda s: html.escape(str(s), quote=True)
  s = summary
  vfr = f" ({VFR_NOTE})" if s.get("variable_frame_rate") else ""
  vfr += f" ({PAD_NOTE})" if s.get("padded_to_even") else ""
  body = [f"<h1>stylegan_ad: video {esc(os.path.basename(str(s['input'])))}</h1>",
          f"<p><b>{s['frames']} frames, {s['flagged']} flagged, {s['repaired']} repaired</b>; "
          f"{s['out_width']}x{s['out_height']} at {s['fps']:.3f} frames/s{vfr}; processed at "
          f"{s['frames_per_second']:.2f} frames/s; audio: {s['audio']}. Warping error between consecutive "
          f"frames (estimated flow): stylized {_f4(s['warping_error']['stylized'])}, written "
          f"{_f4(s['warping_error']['output'])}.</p>",
          "<p>Videos: " + ", ".join(f"<a href='{esc(v)}'>{esc(k)}</a>" for k, v in s["videos"].items()) + "</p>",
          "<p>A frame is flagged when the detector's score is over its threshold "
          f"({s['threshold']:.3f}), when it breaks the video's consistency in time (its warping error to its "
          f"neighbours over {s['settings']['ratio']}x the median around it), or when it is frozen (a repeated "
          "input frame while the video moves).</p>",
          "<img class='plot' style='max-width:98%' src='timeline.png'>"]
  if s.get("truth"):
    from stylegan_ad.report import markdown_to_html
    body.append("<h2>Against the true target S(frame)</h2>" + markdown_to_html(truth_table(s, rows)))
  flagged = [r for r in rows if r["flagged"]]
  body.append(f"<h2>Flagged frames ({len(flagged)})</h2><p>Each: input | stylized | output.</p><table>"
              "<tr><th>frame</th><th>why</th><th>repair</th><th>score</th><th>temporal</th><th>frames</th></tr>")
  for r in flagged:
    temporal = "n/a" if not np.isfinite(r["temporal"]) else f"{r['temporal']:.2f}"
    body.append(f"<tr><td>{r['frame']}</td><td>{esc(r['reasons'])}</td><td>{esc(r['repair'] or 'none')}</td>"
                f"<td>{r['score']:.3f}</td><td>{temporal}</td>"
                f"<td><img src='{esc(r['thumbnail'])}' width='480'></td></tr>")
  body.append("</table>")
  return html_page(f"stylegan_ad: video {os.path.basename(str(s['input']))}", "".join(body))
