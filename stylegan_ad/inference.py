"""Loading a finished main-job run for inference, and stylizing a folder of photos.

    python -m experiments.stylize --workdir=RUN --input=DIR --output=DIR

Every readable image of DIR (any size and format Pillow reads, EXIF orientation
applied) is resized to the model's size, stylized, scored, corrected, and written to
the output folder with its anomaly map; `results.csv`, `results.json` and a sortable
`index.html` list every file with its scores and verdict (a score is the detector's
full `detect.views` score, or its 1-view screen score where the screen already cleared
the image; either way above the threshold means flagged). A file that cannot be read
gets its own error row and the rest go on. Inputs are never written; every output
is written atomically.
"""
from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from stylegan_ad import configs, correct, detect
from stylegan_ad.data import images as images_lib
from stylegan_ad.data.pipeline import to_float, to_uint8
from stylegan_ad.errors import CheckpointError, DataError
from stylegan_ad.report import heat, write_json, write_text
from stylegan_ad.train import aux_trainer, loop, stages, steps
from stylegan_ad.train.checkpoint import Checkpointer
from stylegan_ad.train.logger import save_png


@dataclasses.dataclass
class Trained:
  config: ml_collections.ConfigDict
  corrector: correct.Corrector
  g_params: Any
  det_params: Any
  res_params: Any


def _restore(directory: str, abstract: Any) -> Any:
  if not os.path.isdir(os.path.join(directory, "checkpoints")):
    raise CheckpointError(f"{directory}: no checkpoints (run the main job first)")
  ckpt = Checkpointer(directory)
  try:
    restored = ckpt.restore(abstract)
  finally:
    ckpt.close()
  if restored is None:
    raise CheckpointError(f"{directory}/checkpoints: empty (run the main job first)")
  return jax.device_get(restored[1])


def load_trained(workdir: str) -> Trained:
  """The EMA generator, detector (with its calibrated threshold) and restorer of a run."""
  config_path = os.path.join(workdir, "gan", "config.json")
  if not os.path.isfile(config_path):
    raise CheckpointError(f"{workdir}: not a main-job run directory (no gan/config.json)")
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  if "screen_rate" not in config.detect:  # a run from before the screen: none (its calibration has none)
    config.detect.screen_rate = 0.0
  configs.validate(config)
  loop.enable_compilation_cache(os.path.join(workdir, "gan"))  # the run's cache: compile once
  models = steps.make_models(config)
  gan_abstract = jax.eval_shape(lambda k: steps.init_state(models, k), jax.random.key(0))
  gan = _restore(os.path.join(workdir, "gan"), gan_abstract)
  crop = config.data.crop_size
  det, res = stages.make_detector(config), stages.make_restorer(config)

  def abstract(model, tx, *inputs):
    def init(key):
      p = model.init(key, *inputs)["params"]
      return aux_trainer.AuxState(step=jnp.zeros((), jnp.int32), params=p, opt=tx.init(p))
    return jax.eval_shape(init, jax.random.key(0))

  zeros = jnp.zeros((1, crop, crop, 3))
  det_state = _restore(os.path.join(workdir, "detector"),
                       abstract(det, stages.optimizer(config.detect), zeros))
  res_state = _restore(os.path.join(workdir, "restorer"),
                       abstract(res, stages.optimizer(config.correct), zeros, zeros[..., 0], zeros))
  scorer = stages.make_detector_scorer(config, det_state.params)
  calibration = os.path.join(workdir, "detector", "calibration.json")
  if not os.path.isfile(calibration):
    raise CheckpointError(f"{calibration}: missing (the main job did not finish calibration)")
  detect.load_calibration(calibration, [scorer])
  corrector = correct.Corrector.build(config, models, scorer)
  return Trained(config, corrector, gan.ema["ab"], det_state.params, res_state.params)


def _is_inside(path: str, root: str) -> bool:
  path, root = os.path.realpath(path), os.path.realpath(root)
  return path == root or path.startswith(root + os.sep)


def list_inputs(input_dir: str, output_dir: str) -> list[str]:
  """Regular entries of `input_dir` (sorted, hidden ones and the output folder skipped)."""
  if not os.path.isdir(input_dir):
    raise DataError(f"{input_dir}: no such folder")
  out = []
  for name in sorted(os.listdir(input_dir)):
    path = os.path.join(input_dir, name)
    if name.startswith(".") or _is_inside(path, output_dir):
      continue
    if os.path.isdir(path) and not os.path.islink(path):
      continue
    out.append(path)
  return out


def _check_writable(output_dir: str) -> None:
  try:
    os.makedirs(output_dir, exist_ok=True)
    probe = os.path.join(output_dir, ".write_probe")
    with open(probe, "w") as f:
      f.write("")
    os.remove(probe)
  except OSError as e:
    raise DataError(f"{output_dir}: output folder is not writable ({e.strerror or e})") from None


def _resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
  return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC))


def stylize_folder(workdir: str, input_dir: str, output_dir: str, batch: int = 8,
                   max_side: int = 512) -> dict[str, Any]:
  """Stylizes and corrects every image of `input_dir` into `output_dir`; returns the results.

  Raises:
    DataError / CheckpointError: the folders or the run cannot be used (nothing written).
  """
  trained = load_trained(workdir)
  paths = list_inputs(input_dir, output_dir)
  _check_writable(output_dir)
  crop = trained.config.data.crop_size
  rows, ok_paths, ok_images = [], [], []
  for path in paths:
    try:
      im = images_lib.read_rgb(path)
      ok_paths.append(path)
      ok_images.append(im)
    except DataError as e:
      rows.append({"file": os.path.basename(path), "verdict": "error", "error": str(e)})
  results = []
  if ok_images:
    x = to_float(np.stack([_resize(im, crop, crop) for im in ok_images]))
    c = trained.corrector
    results = correct.run_batched(c, trained.det_params, trained.res_params, trained.g_params, x, None,
                                  batch=batch)
  for i, (path, im) in enumerate(zip(ok_paths, ok_images)):
    name = os.path.basename(path)
    h, w = im.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    stylized = _resize(to_uint8(results["stylized"][i]), *size)
    corrected = _resize(to_uint8(results["output"][i]), *size)
    amap = _resize(heat(results["map"][i]), *size)
    files = {"stylized": f"{name}.stylized.png", "corrected": f"{name}.corrected.png",
             "map": f"{name}.map.png"}
    for key, arr in (("stylized", stylized), ("corrected", corrected), ("map", amap)):
      save_png(os.path.join(output_dir, files[key]), arr)
    k = int(results["attempt"][i])
    rows.append({"file": name, "verdict": correct.VERDICTS[int(results["verdict"][i])],
                 "regeneration": correct.REGENERATIONS[k % len(correct.REGENERATIONS)] if k >= 0 else "",
                 "score_before": float(results["score_before"][i]),
                 "score_after": float(results["score_after"][i]),
                 "width": w, "height": h, **files})
  rows.sort(key=lambda r: r["file"])
  summary = {"threshold": trained.corrector.threshold, "num_files": len(rows),
             "num_errors": sum(r["verdict"] == "error" for r in rows), "files": rows}
  write_json(os.path.join(output_dir, "results.json"), summary)
  _write_csv(os.path.join(output_dir, "results.csv"), rows)
  write_text(os.path.join(output_dir, "index.html"), folder_report_html(rows, trained.corrector.threshold))
  return summary


def _write_csv(path: str, rows: list[dict]) -> None:
  fields = ["file", "verdict", "regeneration", "score_before", "score_after", "width", "height", "stylized",
            "corrected", "map", "error"]
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
  w.writeheader()
  w.writerows(rows)
  write_text(path, buf.getvalue())


def folder_report_html(rows: list[dict], threshold: float) -> str:
  """A sortable table: file | verdict | scores | before | after | heat map (names escaped)."""
  from stylegan_ad.report import _html_page
  from urllib.parse import quote
  esc = lambda s: html.escape(str(s), quote=True)
  img = lambda f: f"<img src='{esc(quote(f))}' width='128'>" if f else ""
  body = [f"<h1>stylegan_ad: stylized folder</h1><p>Detector threshold {threshold:.3f}; "
          "click a column to sort.</p><table><tr><th>file</th><th>verdict</th><th>score before</th>"
          "<th>score after</th><th>stylized</th><th>corrected</th><th>anomaly map</th></tr>"]
  for r in rows:
    if r["verdict"] == "error":
      body.append(f"<tr><td>{esc(r['file'])}</td><td>error</td><td data-v='-1e9'></td><td></td>"
                  f"<td colspan='3'>{esc(r['error'])}</td></tr>")
      continue
    kept = f" ({esc(r['regeneration'])})" if r.get("regeneration") else ""
    body.append(f"<tr><td>{esc(r['file'])}</td><td>{esc(r['verdict'])}{kept}</td>"
                f"<td data-v='{r['score_before']:.6f}'>{r['score_before']:.3f}</td>"
                f"<td data-v='{r['score_after']:.6f}'>{r['score_after']:.3f}</td>"
                f"<td>{img(r['stylized'])}</td><td>{img(r['corrected'])}</td><td>{img(r['map'])}</td></tr>")
  body.append("</table>")
  return _html_page("stylegan_ad: stylized folder", "".join(body))
