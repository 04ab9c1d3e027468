"""Loading a finished main-job run for inference, and stylizing a folder of photos.

    python -m experiments.stylize --workdir=RUN --input=DIR --output=DIR

Every readable image of DIR (any size and format Pillow reads, EXIF orientation
applied) is stylized, scored and corrected at its own resolution (photos with a side
over `max_side` are first downscaled to it; large ones are tiled, `fullres`), and
written to the output folder with its anomaly map, one file after another; `results.csv`, `results.json` and a sortable
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

from stylegan_ad import configs, correct, detect, fullres
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
  if "depth" not in config.model:  # runs from before the residual U-Net: the pix2pix U-Net's depth
    config.model.depth = 5
  if "symmetries" not in config.data:
    config.data.symmetries = 2
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


def correct_photo(trained: Trained, image: np.ndarray, *, max_side: int = fullres.DEFAULT_MAX_SIDE,
                  tiling: fullres.Tiling = fullres.Tiling(), batch: int = 8) -> dict[str, Any]:
  """Stylizes, scores and corrects one photo (uint8 HxWx3) at its own size.

  Photos with a side over `max_side` are first downscaled to it (`scale` < 1). Large
  photos are tiled (`fullres`); a photo's score is the highest of its tiles', its
  verdict the worst. Returns the stylized and corrected images (uint8), the anomaly
  map (float [0, 1]) at the processed size, and the scores."""
  small, scale = fullres.fit_max_side(image, max_side)
  c = trained.corrector
  res = fullres.apply(lambda x: correct.run_batched(c, trained.det_params, trained.res_params,
                                                    trained.g_params, x, None, batch=batch),
                      to_float(small), tiling)
  return {"stylized": to_uint8(res["stylized"]), "corrected": to_uint8(res["output"]),
          "map": np.asarray(res["map"], np.float32), "scale": scale,
          "score_before": float(np.max(res["score_before"])), "score_after": float(np.max(res["score_after"])),
          "verdict": int(np.max(res["verdict"])), "attempt": int(np.max(res["attempt"])),
          "tiles": int(np.asarray(res["verdict"]).size)}


def stylize_folder(workdir: str, input_dir: str, output_dir: str, batch: int = 8,
                   max_side: int = fullres.DEFAULT_MAX_SIDE) -> dict[str, Any]:
  """Stylizes and corrects every image of `input_dir` into `output_dir`, each at its own
  resolution (up to `max_side`); returns the results.

  Raises:
    DataError / CheckpointError: the folders or the run cannot be used (nothing written).
  """
  if max_side < 8:
    raise DataError(f"--max_side must be at least 8, got {max_side}")
  trained = load_trained(workdir)
  paths = list_inputs(input_dir, output_dir)
  _check_writable(output_dir)
  rows = []
  for path in paths:
    name = os.path.basename(path)
    try:
      im = images_lib.read_rgb(path)
    except DataError as e:
      rows.append({"file": name, "verdict": "error", "error": str(e)})
      continue
    out = correct_photo(trained, im, max_side=max_side, batch=batch)
    h, w = im.shape[:2]
    files = {"stylized": f"{name}.stylized.png", "corrected": f"{name}.corrected.png",
             "map": f"{name}.map.png"}
    for key, arr in (("stylized", out["stylized"]), ("corrected", out["corrected"]), ("map", heat(out["map"]))):
      save_png(os.path.join(output_dir, files[key]), arr)
    k = out["attempt"]
    rows.append({"file": name, "verdict": correct.VERDICTS[out["verdict"]],
                 "regeneration": correct.REGENERATIONS[k % len(correct.REGENERATIONS)] if k >= 0 else "",
                 "score_before": out["score_before"], "score_after": out["score_after"],
                 "width": w, "height": h, "out_width": int(out["stylized"].shape[1]),
                 "out_height": int(out["stylized"].shape[0]), **files})
  rows.sort(key=lambda r: r["file"])
  summary = {"threshold": trained.corrector.threshold, "max_side": max_side, "num_files": len(rows),
             "num_errors": sum(r["verdict"] == "error" for r in rows), "files": rows}
  write_json(os.path.join(output_dir, "results.json"), summary)
  _write_csv(os.path.join(output_dir, "results.csv"), rows)
  write_text(os.path.join(output_dir, "index.html"), folder_report_html(rows, trained.corrector.threshold))
  return summary


def _write_csv(path: str, rows: list[dict]) -> None:
  fields = ["file", "verdict", "regeneration", "score_before", "score_after", "width", "height", "out_width",
            "out_height", "stylized",
            "corrected", "map", "error"]
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
  w.writeheader()
  w.writerows(rows)
  write_text(path, buf.getvalue())


def _size(row: dict) -> str:
  size = f"{row['width']}x{row['height']}"
  if (row["out_width"], row["out_height"]) != (row["width"], row["height"]):
    size += f" (processed at {row['out_width']}x{row['out_height']}, --max_side)"
  return size


def folder_report_html(rows: list[dict], threshold: float) -> str:
  """A sortable table: file | verdict | scores | before | after | heat map (names escaped)."""
  from stylegan_ad.report import _html_page
  from urllib.parse import quote
  esc = lambda s: html.escape(str(s), quote=True)
  img = lambda f: f"<img src='{esc(quote(f))}' width='128'>" if f else ""
  body = [f"<h1>stylegan_ad: stylized folder</h1><p>Detector threshold {threshold:.3f}; "
          "click a column to sort.</p><table><tr><th>file</th><th>verdict</th><th>score before</th>"
          "<th>score after</th><th>size</th><th>stylized</th><th>corrected</th><th>anomaly map</th></tr>"]
  for r in rows:
    if r["verdict"] == "error":
      body.append(f"<tr><td>{esc(r['file'])}</td><td>error</td><td data-v='-1e9'></td><td></td>"
                  f"<td colspan='4'>{esc(r['error'])}</td></tr>")
      continue
    kept = f" ({esc(r['regeneration'])})" if r.get("regeneration") else ""
    body.append(f"<tr><td>{esc(r['file'])}</td><td>{esc(r['verdict'])}{kept}</td>"
                f"<td data-v='{r['score_before']:.6f}'>{r['score_before']:.3f}</td>"
                f"<td data-v='{r['score_after']:.6f}'>{r['score_after']:.3f}</td>"
                f"<td data-v='{r['width'] * r['height']}'>{_size(r)}</td>"
                f"<td>{img(r['stylized'])}</td><td>{img(r['corrected'])}</td><td>{img(r['map'])}</td></tr>")
  body.append("</table>")
  return _html_page("stylegan_ad: stylized folder", "".join(body))
