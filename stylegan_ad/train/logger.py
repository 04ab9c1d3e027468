"""Run logging from process 0: JSONL scalars, TensorBoard events, PNG grids, progress lines."""
from __future__ import annotations

import collections
import io
import json
import os
import shutil
import tempfile
import time
from typing import Mapping

import jax
import numpy as np
from PIL import Image

from stylegan_ad import console
from stylegan_ad import files


def save_png(path: str, image: np.ndarray) -> None:
  """Writes a uint8 image atomically (`files.write_bytes`)."""
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  files.write_bytes(path, buf.getvalue())


def grid(rows: list[list[np.ndarray]]) -> np.ndarray:
  """Tiles rows of equal-size uint8 images into one image."""
  return np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)


class RunLogger:
  """metrics.jsonl, TensorBoard events and sample grids of one training stage, and its
  progress line: `<stage> step 50/1300  3.10 steps/s  ETA 06:10  <losses>`, where the
  rate and ETA come from the recent window of logged steps (so not from the first
  interval, which holds the compilation). `steps_per_sec` in metrics.jsonl is the
  stage's overall rate, compilation included. The console gets about LINES of them per
  stage (the first logged step, then one per tenth of the stage, and the last); every
  logged step goes to metrics.jsonl and TensorBoard."""

  WINDOW = 5  # logged points the console's rate is taken over
  LINES = 10

  def __init__(self, workdir: str, total_steps: int, start_step: int = 0):
    self.active = jax.process_index() == 0
    self.workdir, self.total = workdir, total_steps
    self.name = files.name(workdir)
    self._t0, self._s0 = time.time(), start_step
    self._recent: collections.deque = collections.deque(maxlen=self.WINDOW + 1)
    self._next_line = start_step  # the console's next progress line at or after this step
    self._writer = None
    if self.active:
      files.makedirs(workdir)
      from tensorboardX import SummaryWriter
      self._jsonl_path = os.path.join(workdir, "metrics.jsonl")
      self._events = os.path.join(workdir, "tensorboard")
      if files.is_remote(workdir):
        # an object store cannot append: the events are written to a local folder and
        # uploaded whole at each log, and so is metrics.jsonl
        self._local_events = tempfile.mkdtemp(prefix="stylegan_ad_events_")
        self._writer = SummaryWriter(self._local_events)
        self._jsonl, self._lines = None, (files.read_text(self._jsonl_path).splitlines(keepends=True)
                                          if files.exists(self._jsonl_path) else [])
      else:
        self._local_events = None
        self._writer = SummaryWriter(self._events)
        self._jsonl = open(self._jsonl_path, "a")

  def scalars(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.active:
      return
    values = {k: float(v) for k, v in metrics.items()}
    elapsed = time.time() - self._t0
    done = step - self._s0
    rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
    values["steps_per_sec"] = rate
    line = json.dumps({"step": step, **values}) + "\n"
    if self._jsonl is None:
      self._lines.append(line)
      files.write_text(self._jsonl_path, "".join(self._lines))
    else:
      self._jsonl.write(line)
      self._jsonl.flush()
    for k, v in values.items():
      self._writer.add_scalar(k, v, step)
    self._flush_events()
    progress = self._progress(step)
    if step >= self._next_line or step >= self.total:
      self._next_line = step + max(1, self.total // self.LINES)
      losses = "  ".join(f"{k} {v:.4f}" for k, v in values.items() if k.endswith("loss"))
      console.say(f"{self.name} step {step}/{self.total}  {progress}  {losses}")

  def _progress(self, step: int) -> str:
    """Rate and ETA over the recent window of logged steps (none at the first one)."""
    now = time.time()
    self._recent.append((now, step))
    if len(self._recent) < 2:  # the interval up to the first logged step holds the compilation
      return "(rate from the next step on)"
    (t0, s0), (t1, s1) = self._recent[0], self._recent[-1]
    rate = (s1 - s0) / max(t1 - t0, 1e-9)
    return f"{rate:.2f} steps/s  ETA {console.clock((self.total - step) / rate)}"

  def image(self, name: str, step: int, image: np.ndarray) -> None:
    if not self.active:
      return
    files.makedirs(os.path.join(self.workdir, "samples"))
    save_png(os.path.join(self.workdir, "samples", f"{name}_{step:07d}.png"), image)
    self._writer.add_image(name, image, step, dataformats="HWC")
    self._flush_events()

  def _flush_events(self) -> None:
    self._writer.flush()
    if self._local_events is not None:
      for name in os.listdir(self._local_events):
        with open(os.path.join(self._local_events, name), "rb") as f:
          files.write_bytes(os.path.join(self._events, name), f.read())

  def close(self) -> None:
    if self.active:
      self._writer.close()
      if self._local_events is not None:
        self._flush_events()
        shutil.rmtree(self._local_events, ignore_errors=True)
      if self._jsonl is not None:
        self._jsonl.close()
