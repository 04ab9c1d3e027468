"""Run logging from process 0: JSONL scalars, TensorBoard events, PNG grids, progress lines."""
from __future__ import annotations

import collections
import json
import os
import time
from typing import Mapping

import jax
import numpy as np
from PIL import Image

from stylegan_ad import console
from stylegan_ad.files import temporary_name


def save_png(path: str, image: np.ndarray) -> None:
  """Writes a uint8 image atomically (temporary file, then rename)."""
  tmp = temporary_name(path)
  Image.fromarray(image).save(tmp, format="PNG")
  os.replace(tmp, path)


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
    self.name = os.path.basename(os.path.normpath(workdir))
    self._t0, self._s0 = time.time(), start_step
    self._recent: collections.deque = collections.deque(maxlen=self.WINDOW + 1)
    self._next_line = start_step  # the console's next progress line at or after this step
    self._writer = None
    if self.active:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter
      self._writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def scalars(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.active:
      return
    values = {k: float(v) for k, v in metrics.items()}
    elapsed = time.time() - self._t0
    done = step - self._s0
    rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
    values["steps_per_sec"] = rate
    self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
    self._jsonl.flush()
    for k, v in values.items():
      self._writer.add_scalar(k, v, step)
    self._writer.flush()
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
    os.makedirs(os.path.join(self.workdir, "samples"), exist_ok=True)
    save_png(os.path.join(self.workdir, "samples", f"{name}_{step:07d}.png"), image)
    self._writer.add_image(name, image, step, dataformats="HWC")

  def close(self) -> None:
    if self.active:
      self._writer.close()
      self._jsonl.close()
