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
import functools
import hashlib
import html
import io
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stylegan_ad import configs, console, correct, detect, failures, files, fullres, metrics, stages
from stylegan_ad.data import images as images_lib
from stylegan_ad.data.pipeline import to_float, to_uint8
from stylegan_ad.errors import CheckpointError, DataError
from stylegan_ad.models import detector as detector_lib
from stylegan_ad.files import write_json, write_text
from stylegan_ad.report import heat
from stylegan_ad.train import aux_trainer, loop, steps
from stylegan_ad.train.checkpoint import Checkpointer
from stylegan_ad.train.logger import save_png


# the artifact types (and their order) of every run from before `detect.artifact_types`
LEGACY_ARTIFACT_TYPES = ("noise", "blur", "color_cast", "checkerboard", "blotch", "warp", "impure_style", "banding",
                         "blocks", "texture_patch")


@dataclasses.dataclass
class Trained:
  config: ml_collections.ConfigDict
  corrector: correct.Corrector
  g_params: Any
  det_params: Any
  res_params: Any
  truth: failures.Truth | None = None   # the run's real-failure thresholds, for `--targets`


def _load_checkpoint(directory: str, abstract: Any) -> tuple[int, Any]:
  """(step, state) of the newest good checkpoint of a stage (the run is not modified)."""
  if not files.isdir(os.path.join(directory, "checkpoints")):
    raise CheckpointError(f"{directory}: no checkpoints (run the main job first)")
  ckpt = Checkpointer(directory)
  try:
    restored = ckpt.restore(abstract)
  finally:
    ckpt.close()
  if restored is None:
    raise CheckpointError(f"{directory}/checkpoints: empty (run the main job first)")
  return restored[0], jax.device_get(restored[1])


def check_stages(workdir: str, restored: dict[str, int], expected: dict[str, int], calibrated: dict[str, int],
                 allow_mismatch: bool = False) -> None:
  """Refuses a run whose restored checkpoints are not the ones its config trains to and
  its calibration was made for (a damaged final checkpoint falls back to an older step:
  its verdicts would use thresholds calibrated for other networks)."""
  problems = [f"{name} checkpoint at step {step}, not its final step {expected[name]}"
              for name, step in restored.items() if step != expected[name]]
  problems += [f"the detector's calibration was made for {name} step {calibrated[name]}, the {name} restored "
               f"is at step {restored[name]}" for name in calibrated if calibrated[name] != restored.get(name)]
  if not problems:
    return
  message = (f"{workdir}: its stages do not match ({'; '.join(problems)}), a damaged or missing "
             "checkpoint fell back to an older one")
  if not allow_mismatch:
    raise CheckpointError(f"{message}: run the main job on this folder again to repair it, or pass "
                          "--allow_stage_mismatch to use it as it is")
  console.say(f"warning: {message}; used as it is (--allow_stage_mismatch)")


def load_trained(workdir: str, allow_stage_mismatch: bool = False) -> Trained:
  """The EMA generator, detector (with its calibrated threshold) and restorer of a run;
  refuses a run whose checkpoints do not match its calibration (`check_stages`) unless
  `allow_stage_mismatch`."""
  config_path = os.path.join(workdir, "gan", "config.json")
  if not files.exists(config_path):
    raise CheckpointError(f"{workdir}: not a main-job run directory (no gan/config.json)")
  config = ml_collections.ConfigDict(files.read_json(config_path))
  if "screen_rate" not in config.detect:  # a run from before the screen: none (its calibration has none)
    config.detect.screen_rate = 0.0
  if "depth" not in config.model:  # runs from before the residual U-Net: the pix2pix U-Net's depth
    config.model.depth = 5
  if "symmetries" not in config.data:
    config.data.symmetries = 2
  if "sees_input" not in config.detect:  # runs from before the detector saw x
    config.detect.sees_input = False
  if "sees_tta" not in config.detect:  # runs from before it saw G's TTA spread
    config.detect.sees_tta = False
  if "fuse" not in config.detect:  # runs from before the fused score (their calibration has no fusion)
    config.detect.fuse, config.detect.fuse_synthetic_auroc = False, 0.99
  if "fuse_palette" not in config.detect:  # runs from before the palette's model (their fusion has none)
    config.detect.fuse_palette = False
  if "imported" not in config.model:  # runs from before imported generators
    config.model.imported = ""
  if "dtype" not in config.model:  # runs from before the compute dtype: float32
    config.model.dtype = "float32"
  if "d_highpass" not in config.model:  # runs from before D's high-pass view
    config.model.d_highpass = 0
  for group, key, name in (("model", "discriminator", "patchgan"), ("detect", "arch", "unet"),
                           ("correct", "arch", "unet")):   # runs from before the registries
    if key not in config[group]:
      config[group][key] = name
  if "artifact_types" not in config.detect:  # ... whose detector's type head has these classes
    config.detect.artifact_types = LEGACY_ARTIFACT_TYPES
  if "natural_threshold" in config.detect:  # a key of runs from before the real-failure benchmark
    del config.detect["natural_threshold"]
  configs.validate(config)
  loop.enable_compilation_cache(os.path.join(workdir, "gan"))  # the run's cache: compile once
  models = steps.make_models(config)
  crop = config.data.crop_size
  if config.model.imported:  # a generator trained elsewhere: its weights alone (`imported.fit`)
    side = fullres.run_tiling(config).bucket
    g_abstract = jax.eval_shape(lambda k: {"ab": models.generator.init(k, jnp.zeros((1, side, side, 3)))["params"]},
                                jax.random.key(0))
    gan_step, g = _load_checkpoint(os.path.join(workdir, "gan"), g_abstract)
    g_params, style, gan_expected = g["ab"], None, 0
  else:
    gan_abstract = jax.eval_shape(lambda k: steps.init_state(models, k), jax.random.key(0))
    gan_step, gan = _load_checkpoint(os.path.join(workdir, "gan"), gan_abstract)
    g_params, gan_expected = gan.ema["ab"], config.train.num_steps
    style = detect.StyleStatisticsScorer(models.discriminator, gan.d_params["b"], conditional=models.paired)
  det, res = stages.make_detector(config), stages.make_restorer(config)

  def abstract(model, tx, *inputs):
    def init(key):
      p = model.init(key, *inputs)["params"]
      return aux_trainer.AuxState(step=jnp.zeros((), jnp.int32), params=p, opt=tx.init(p))
    return jax.eval_shape(init, jax.random.key(0))

  zeros = jnp.zeros((1, crop, crop, 3))
  det_step, det_state = _load_checkpoint(os.path.join(workdir, "detector"),
                       abstract(det, stages.optimizer(config.detect),
                                jnp.zeros((1, crop, crop, detector_lib.input_channels(
                                    config.detect.sees_input, config.detect.sees_tta)))))
  res_step, res_state = _load_checkpoint(os.path.join(workdir, "restorer"),
                       abstract(res, stages.optimizer(config.correct), zeros, zeros[..., 0], zeros))
  scorer = stages.make_detector_scorer(config, det_state.params, lambda v: steps.generate(models, g_params, v))
  calibration = os.path.join(workdir, "detector", "calibration.json")
  if not files.exists(calibration):
    raise CheckpointError(f"{calibration}: missing (the main job did not finish calibration)")
  detect.load_calibration(calibration, [scorer], style)   # (the style statistics of a fused score)
  calibrated = files.read_json(calibration).get("stages", {})
  check_stages(workdir, {"gan": gan_step, "detector": det_step, "restorer": res_step},
               {"gan": gan_expected, "detector": config.detect.steps, "restorer": config.correct.steps},
               calibrated, allow_stage_mismatch)
  corrector = correct.Corrector.build(config, models, scorer)
  truth = None
  truth_path = os.path.join(workdir, "detector", "failure_truth.json")
  if files.exists(truth_path):
    truth = failures.Truth(**files.read_json(truth_path))
  return Trained(config, corrector, g_params, det_state.params, res_state.params, truth)


def is_inside(path: str, root: str) -> bool:
  path, root = os.path.realpath(path), os.path.realpath(root)
  return path == root or path.startswith(root + os.sep)


def list_inputs(input_dir: str, output_dir: str) -> list[str]:
  """Entries of `input_dir` (sorted; hidden ones and folders skipped). Overlapping input
  and output folders (the same, or one inside the other) are refused."""
  if not os.path.isdir(input_dir):
    raise DataError(f"{input_dir}: no such folder")
  if is_inside(output_dir, input_dir) or is_inside(input_dir, output_dir):
    raise DataError(f"--output={output_dir} overlaps --input={input_dir} (the same folder, or one inside the "
                    "other): give an output folder outside the input folder")
  out = []
  for name in sorted(os.listdir(input_dir)):
    path = os.path.join(input_dir, name)
    if name.startswith("."):
      continue
    if os.path.isdir(path) and not os.path.islink(path):
      continue
    out.append(path)
  return out


NAME_BYTES = 150  # an output name's stem at most (UTF-8 bytes): with ".corrected.png" and a temporary
                 # suffix, well under the 255 bytes most filesystems allow


def display_name(name: str) -> str:
  """A file name as the report shows it: bytes that are not UTF-8 become U+FFFD."""
  return os.fsencode(name).decode("utf-8", "replace")


def output_stem(name: str) -> str:
  """The stem of a file's outputs (`{stem}.stylized.png`, ...): its own name where that is
  printable UTF-8 of at most NAME_BYTES bytes; otherwise a printable, shortened form of it
  with 8 hex digits of its hash (distinct names keep distinct outputs)."""
  raw = os.fsencode(name)
  text = raw.decode("utf-8", "replace")
  if "\ufffd" not in text and text.isprintable() and len(raw) <= NAME_BYTES:
    return name
  safe = "".join(c if c.isprintable() and c != "\ufffd" else "_" for c in text)
  safe = safe.encode("utf-8")[:NAME_BYTES - 9].decode("utf-8", "ignore")
  return f"{safe}-{hashlib.sha256(raw).hexdigest()[:8]}"


def check_writable(output_dir: str) -> None:
  try:
    os.makedirs(output_dir, exist_ok=True)
    probe = os.path.join(output_dir, ".write_probe")
    with open(probe, "w") as f:
      f.write("")
    os.remove(probe)
  except OSError as e:
    raise DataError(f"{output_dir}: output folder is not writable ({e.strerror or e})") from None


def correct_photo(trained: Trained, image: np.ndarray, *, max_side: int = fullres.DEFAULT_MAX_SIDE,
                  tiling: fullres.Tiling | None = None, batch: int = 8) -> dict[str, Any]:
  """Stylizes, scores and corrects one photo (uint8 HxWx3) at its own size.

  Photos with a side over `max_side` are first downscaled to it (`scale` < 1). Large
  photos are tiled (`fullres`); a photo's score is the highest of its tiles', its
  verdict the worst. Returns the stylized and corrected images (uint8), the anomaly
  map (float [0, 1]) at the processed size, and the scores."""
  small, scale = fullres.fit_max_side(image, max_side)
  c = trained.corrector
  res = fullres.apply(lambda x: correct.run_batched(c, trained.det_params, trained.res_params,
                                                    trained.g_params, x, None, batch=min(batch, len(x))),
                      to_float(small), fullres.run_tiling(trained.config) if tiling is None else tiling)
  return {"stylized": to_uint8(res["stylized"]), "corrected": to_uint8(res["output"]),
          "map": np.asarray(res["map"], np.float32), "scale": scale,
          "score_before": float(np.max(res["score_before"])), "score_after": float(np.max(res["score_after"])),
          "verdict": int(np.max(res["verdict"])), "attempt": int(np.max(res["attempt"])),
          "tiles": int(np.asarray(res["verdict"]).size)}


def _targets(targets_dir: str | None, input_dir: str, output_dir: str, names: list[str]) -> tuple[dict, list[str]]:
  """{input file name: target path} and the target files that match no input."""
  if targets_dir is None:
    return {}, []
  if not os.path.isdir(targets_dir):
    raise DataError(f"--targets: {targets_dir}: no such folder")
  for other, what in ((input_dir, "input"), (output_dir, "output")):
    if os.path.realpath(targets_dir) == os.path.realpath(other):
      raise DataError(f"--targets: {targets_dir} is the {what} folder; give the true targets their own folder")
  present = {n for n in os.listdir(targets_dir) if not n.startswith(".")
             and os.path.isfile(os.path.join(targets_dir, n))}
  return ({n: os.path.join(targets_dir, n) for n in names if n in present},
          sorted(present - set(names)))


def _measure(row: dict, out: dict, target: np.ndarray, truth: failures.Truth | None, pixels: list) -> None:
  """PSNR/SSIM of the stylized and corrected outputs to the target (at the processed
  size), and, with the run's failure truth, the output's true failing area."""
  y, z, t = to_float(out["stylized"]), to_float(out["corrected"]), to_float(target)
  for key, a in (("stylized", y), ("corrected", z)):
    row[f"psnr_{key}"] = float(metrics.psnr_np(a[None], t[None])[0])
    row[f"ssim_{key}"] = float(metrics.ssim_np(a[None], t[None])[0])
  if truth is not None:
    mask = truth.mask(y, t)
    row["true_failing_area"] = float(mask.mean())
    row["true_anomalous"] = bool(mask.mean() > truth.area_cut)
    pixels.append(failures.pixel_sample([out["map"]], [mask], 4096, len(pixels))[0])


def _target_summary(rows: list[dict], pixels: list, extra: list[str]) -> dict:
  measured = [r for r in rows if "psnr_stylized" in r]
  out = {"measured": len(measured), "targets_without_input": extra,
         "target_errors": [r["target_error"] for r in rows if r.get("target_error")]}
  if measured:
    for k in ("psnr_stylized", "psnr_corrected", "ssim_stylized", "ssim_corrected"):
      out[k] = float(np.mean([r[k] for r in measured]))
  labelled = [r for r in measured if "true_anomalous" in r]
  if labelled:
    labels = np.array([r["true_anomalous"] for r in labelled])
    out["true_anomalous"] = int(labels.sum())
    out["image_auroc"] = failures.auroc_or_nan([r["score_before"] for r in labelled], labels)
    out["pixel_auroc"] = failures.auroc_or_nan(np.concatenate([p[0] for p in pixels]),
                                                np.concatenate([p[1] for p in pixels]))
  return out


def _save_npy(path: str, array: np.ndarray) -> None:
  buf = io.BytesIO()
  np.save(buf, array)
  files.write_bytes(path, buf.getvalue())


def _map_at(amap: np.ndarray, width: int, height: int) -> np.ndarray:
  """The anomaly map (float) at the photo's own resolution (upsampled where the photo
  was processed downscaled)."""
  if amap.shape == (height, width):
    return amap.astype(np.float32)
  from PIL import Image
  return np.asarray(Image.fromarray(amap.astype(np.float32), "F").resize((width, height), Image.Resampling.BILINEAR))


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
PROGRESS = "results.jsonl"   # one row per finished file, appended as each is done


def _stamp(path: str, settings: list) -> list:
  """What a finished file's row must match to be reused: the file's size and modification
  time, and the settings it was processed with (run, threshold, --max_side, --save_maps)."""
  st = os.stat(path)
  return [st.st_size, st.st_mtime_ns, *settings]


def _finished(output_dir: str) -> dict[str, dict]:
  """Rows of files a previous run finished (its results.jsonl), whose outputs are all there."""
  path = os.path.join(output_dir, PROGRESS)
  if not os.path.exists(path):
    return {}
  rows = {}
  for line in open(path, encoding="utf-8"):
    try:
      row = json.loads(line)
    except json.JSONDecodeError:  # a line cut by a kill
      continue
    if all(os.path.exists(os.path.join(output_dir, row[k])) for k in ("input", "stylized", "corrected", "map", "map_npy")
           if k in row):
      rows[row["file"]] = row
  return rows


def stylize_folder(workdir: str, input_dir: str, output_dir: str, batch: int = 8,
                   max_side: int = fullres.DEFAULT_MAX_SIDE, targets_dir: str | None = None,
                   save_maps: bool = False, overwrite: bool = False, allow_stage_mismatch: bool = False
                   ) -> dict[str, Any]:
  """Stylizes and corrects every image of `input_dir` into `output_dir`, each at its own
  resolution (up to `max_side`); returns the results.

  One file at a time: each file's outputs are written, and its row appended to
  `results.jsonl`, as soon as it is done, so a killed run loses at most one file. A
  re-run skips the files a previous run finished (same file size and modification
  time, outputs present) unless `overwrite`; with `targets_dir` every file is redone
  (the detection figures need every map). Files that are not images (no image
  extension and not readable as one) are listed as skipped; an image that cannot be
  read is an error.

  `targets_dir`: true targets with the same file names (a paired test set): each
  photo's PSNR/SSIM to its target before and after correction, and (with the run's
  failure truth) detection figures. A missing, unreadable or differently sized target
  is named in its row; the rest are still measured. `save_maps`: each anomaly map as a
  float32 `.npy` at the photo's own resolution, next to the outputs.

  Raises:
    DataError / CheckpointError: the folders or the run cannot be used (nothing written).
  """
  if max_side < 8:
    raise DataError(f"--max_side must be at least 8, got {max_side}")
  trained = load_trained(workdir, allow_stage_mismatch)
  paths = list_inputs(input_dir, output_dir)
  targets, extra = _targets(targets_dir, input_dir, output_dir, [os.path.basename(p) for p in paths])
  check_writable(output_dir)
  progress_path = os.path.join(output_dir, PROGRESS)
  if overwrite and os.path.exists(progress_path):
    os.remove(progress_path)
  done = {} if targets_dir is not None else _finished(output_dir)
  rows, pixels, reused = [], [], 0
  settings = [files.absolute(workdir), trained.corrector.threshold, max_side, save_maps]
  if os.path.exists(progress_path) and os.path.getsize(progress_path):
    with open(progress_path, "rb+") as f:  # a line cut short by a kill ends here: start on a new line
      f.seek(-1, os.SEEK_END)
      if f.read(1) != b"\n":
        f.write(b"\n")
  with open(progress_path, "a", encoding="utf-8") as progress:
    for i, path in enumerate(console.progress(paths, "stylizing", unit="file")):
      name = display_name(os.path.basename(path))
      t0 = time.time()
      try:
        stamp = _stamp(path, settings)
      except OSError:
        stamp = None
      if stamp is not None and name in done and done[name].get("source") == stamp:
        rows.append(done[name])
        reused += 1
        console.say(f"[{i + 1}/{len(paths)}] {name}: {done[name]['verdict']} (done by an earlier run)")
        continue
      row = _process(trained, path, output_dir, max_side, batch, save_maps)
      image, out = row.pop("_image", None), row.pop("_out", None)
      if image is not None:
        row["source"] = stamp
        if targets_dir is not None:
          _target_row(row, targets.get(os.path.basename(path)), targets_dir, image, out, max_side, trained.truth,
                      pixels)
      rows.append(row)
      progress.write(json.dumps(row, default=float) + "\n")
      progress.flush()
      console.say(f"[{i + 1}/{len(paths)}] {name}: {row['verdict']} ({time.time() - t0:.1f} s)")
  rows.sort(key=lambda r: r["file"])
  count = lambda v: sum(r["verdict"] == v for r in rows)
  summary = {"threshold": trained.corrector.threshold, "max_side": max_side, "num_files": len(rows),
             "num_errors": count("error"), "num_skipped": count("skipped"), "num_reused": reused,
             "verdicts": {v: count(v) for v in correct.VERDICTS}, "files": rows}
  if targets_dir is not None:
    summary["targets"] = _target_summary(rows, pixels, extra)
  write_json(os.path.join(output_dir, "results.json"), summary)
  write_csv(os.path.join(output_dir, "results.csv"), rows)
  write_text(os.path.join(output_dir, "index.html"), folder_report_html(rows, trained.corrector.threshold))
  return summary


GENERATOR_SCHEMES = ("torch",)


def load_generator(spec: str):
  """A generator from outside this project, as `SCHEME:PATH`: `torch:FILE.pth`, the
  PyTorch CycleGAN reference's ResnetGenerator or UnetGenerator (`interop`). Returns a
  jitted photo-batch function (NHWC in [-1, 1]), a one-line description, and how it
  meets a photo (`generator_tiling`)."""
  scheme, _, path = spec.partition(":")
  if scheme not in GENERATOR_SCHEMES or not path:
    raise DataError(f"--generator={spec}: expected torch:PATH.pth")
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file")
  from stylegan_ad import interop
  module, params = interop.load_torch_generator(path)
  fn = functools.partial(jax.jit(lambda p, x: module.apply({"params": p}, x)), params)   # weights not constants
  arch = "reference_unet" if hasattr(module, "depth") else "resnet"
  tiling = fullres.generator_tiling(arch, getattr(module, "depth", 0), True)
  return fn, f"{path}: {interop.describe(module)}", tiling


def stylize_whole(fn, image: np.ndarray, tiling: fullres.Tiling, max_side: int = fullres.DEFAULT_MAX_SIDE
                  ) -> np.ndarray:
  """`fn` (a photo-batch generator, `load_generator`) on one photo (uint8), whole, at its
  own size up to `max_side`; float [-1, 1] out."""
  small, _ = fullres.fit_max_side(image, max_side)
  return fullres.apply(lambda x: {"y": fn(jnp.asarray(x))}, to_float(small), tiling)["y"]


def stylize_folder_with_generator(spec: str, input_dir: str, output_dir: str,
                                  max_side: int = fullres.DEFAULT_MAX_SIDE) -> dict[str, Any]:
  """Every image of `input_dir` through an outside generator (`load_generator`) at its own
  resolution (up to `max_side`), into `output_dir` (`NAME.stylized.png`,
  `results.csv`): stylization only, as no detector has been fitted for that generator."""
  fn, about, tiling = load_generator(spec)
  names = list_inputs(input_dir, output_dir)
  check_writable(output_dir)
  console.say(about)
  rows = []
  for path in console.progress(names, "stylizing", unit="image"):
    shown, stem = display_name(os.path.basename(path)), output_stem(os.path.basename(path))
    try:
      im = images_lib.read_rgb(path)
    except DataError as e:
      verdict = "error" if shown.lower().endswith(IMAGE_EXTENSIONS) else "skipped"
      rows.append({"file": shown, "verdict": verdict, "error": display_name(str(e))})
      continue
    y = stylize_whole(fn, im, tiling, max_side)
    out = f"{stem}.stylized.png"
    save_png(os.path.join(output_dir, out), to_uint8(y))
    rows.append({"file": shown, "verdict": "stylized", "width": im.shape[1], "height": im.shape[0],
                 "out_width": int(y.shape[1]), "out_height": int(y.shape[0]), "stylized": out})
  write_csv(os.path.join(output_dir, "results.csv"), rows, STYLIZE_ONLY_FIELDS)
  return {"generator": about, "files": rows,
          "num_stylized": sum(r["verdict"] == "stylized" for r in rows),
          "num_skipped": sum(r["verdict"] == "skipped" for r in rows),
          "num_errors": sum(r["verdict"] == "error" for r in rows)}


def _process(trained: Trained, path: str, output_dir: str, max_side: int, batch: int, save_maps: bool) -> dict:
  """One file: its outputs written, its row (with the image and results under `_image`,
  `_out` for the caller's target measurement)."""
  name, stem = display_name(os.path.basename(path)), output_stem(os.path.basename(path))
  try:
    im = images_lib.read_rgb(path)
  except DataError as e:
    # a file with no image extension that does not read as one is not an image: skipped
    verdict = "error" if name.lower().endswith(IMAGE_EXTENSIONS) else "skipped"
    return {"file": name, "verdict": verdict, "error": display_name(str(e))}
  out = correct_photo(trained, im, max_side=max_side, batch=batch)
  h, w = im.shape[:2]
  written = {"input": f"{stem}.input.png", "stylized": f"{stem}.stylized.png", "corrected": f"{stem}.corrected.png",
           "map": f"{stem}.map.png"}
  # the input as the networks saw it (RGB, at the processed size): any format shows in a browser
  for key, arr in (("input", fullres.fit_max_side(im, max_side)[0]), ("stylized", out["stylized"]),
                   ("corrected", out["corrected"]), ("map", heat(out["map"]))):
    save_png(os.path.join(output_dir, written[key]), arr)
  if save_maps:
    written["map_npy"] = f"{stem}.map.npy"
    _save_npy(os.path.join(output_dir, written["map_npy"]), _map_at(out["map"], w, h))
  k = out["attempt"]
  return {"file": name, "verdict": correct.VERDICTS[out["verdict"]],
          "regeneration": correct.REGENERATIONS[k % len(correct.REGENERATIONS)] if k >= 0 else "",
          "score_before": out["score_before"], "score_after": out["score_after"],
          "width": w, "height": h, "out_width": int(out["stylized"].shape[1]),
          "out_height": int(out["stylized"].shape[0]), **written, "_image": im, "_out": out}


def _target_row(row: dict, target_path: str | None, targets_dir: str, im: np.ndarray, out: dict, max_side: int,
                truth: failures.Truth | None, pixels: list) -> None:
  if target_path is None:
    row["target_error"] = f"{os.path.join(targets_dir, row['file'])}: no target with this file name"
    return
  try:
    target = images_lib.read_rgb(target_path)
  except DataError as e:
    row["target_error"] = str(e)
    return
  if target.shape != im.shape:
    row["target_error"] = (f"{target_path}: the target is {target.shape[1]}x{target.shape[0]}, the photo "
                           f"{im.shape[1]}x{im.shape[0]}")
    return
  _measure(row, out, fullres.fit_max_side(target, max_side)[0], truth, pixels)


CSV_FIELDS = ("file", "verdict", "regeneration", "score_before", "score_after", "width", "height", "out_width",
              "out_height", "input", "stylized", "corrected", "map", "map_npy", "psnr_stylized", "psnr_corrected",
              "ssim_stylized", "ssim_corrected", "true_failing_area", "true_anomalous", "target_error", "error")
STYLIZE_ONLY_FIELDS = ("file", "verdict", "width", "height", "out_width", "out_height", "stylized", "error")


def write_csv(path: str, rows: list[dict], fields=CSV_FIELDS) -> None:
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


def _target_cell(r: dict) -> str:
  if "psnr_stylized" in r:
    return (f"<td data-v='{r['psnr_corrected'] - r['psnr_stylized']:.6f}'>{r['psnr_stylized']:.2f} -> "
            f"{r['psnr_corrected']:.2f}</td>")
  return f"<td data-v='-1e9'>{html.escape(r.get('target_error', ''))}</td>"


VERDICT_WORDS = {"clean": "passed", "repaired": "corrected by the restorer", "regenerated": "regenerated",
                 "failed": "still flagged (best output kept)", "error": "unreadable", "skipped": "skipped: not an image"}


def folder_report_html(rows: list[dict], threshold: float) -> str:
  """A sortable table: file | input | verdict | scores (each with its distance to the
  threshold) | size | stylized | corrected | the map over the output, with a legend and
  a summary line on top (names escaped)."""
  from stylegan_ad.report import html_page
  from urllib.parse import quote
  esc = lambda s: html.escape(str(s), quote=True)
  img = lambda f: f"<img src='{esc(quote(f))}' width='160'>" if f else ""
  paired = any("psnr_stylized" in r or r.get("target_error") for r in rows)
  target_th = "<th>PSNR to target: stylized -> corrected (dB)</th>" if paired else ""
  count = lambda *vs: sum(r["verdict"] in vs for r in rows)
  images = count(*correct.VERDICTS)
  body = [f"<h1>stylegan_ad: stylized folder</h1><p><b>{images} images: {count('clean')} passed the detector, "
          f"{count('repaired', 'regenerated')} corrected, {count('failed')} still flagged; other files: "
          f"{count('skipped')} skipped (not images), {count('error')} unreadable.</b></p>"
          f"<p>A score is the detector's estimate that an output failed; above the threshold "
          f"({threshold:.3f}) an output is flagged and corrected; each score says how far over or under the "
          "threshold it is. The last column shows the output with the detector's map over it: "
          "<span style='display:inline-block;width:160px;height:12px;vertical-align:middle;"
          "background:linear-gradient(to right,#000,#f00,#ff0)'></span> 0 (clean) to 1 (failed). "
          "Click a column header to sort.</p>"
          "<table><tr><th>file</th><th>input</th><th>verdict</th><th>score before</th><th>score after</th>"
          f"<th>size</th>{target_th}<th>stylized</th><th>corrected</th><th>map over the output</th></tr>"]
  score = lambda v: (f"<td data-v='{v:.6f}'>{v:.3f} <small>({'over' if v > threshold else 'under'} by "
                     f"{abs(v - threshold):.2f})</small></td>")
  for r in rows:
    word = VERDICT_WORDS.get(r["verdict"], r["verdict"])
    if r["verdict"] in ("error", "skipped"):
      body.append(f"<tr><td>{esc(r['file'])}</td><td></td><td>{word}</td><td data-v='-1e9'></td><td></td>"
                  f"<td colspan='{5 if paired else 4}'>{esc(r['error'])}</td></tr>")
      continue
    kept = f" ({esc(r['regeneration'])})" if r.get("regeneration") else ""
    overlay = (f"<div style='position:relative;display:inline-block'>{img(r['corrected'])}"
               f"<img src='{esc(quote(r['map']))}' width='160' style='position:absolute;left:0;top:0;"
               "opacity:0.6;mix-blend-mode:screen'></div>")
    body.append(f"<tr><td>{esc(r['file'])}</td><td>{img(r.get('input', ''))}</td><td>{esc(word)}{kept}</td>"
                f"{score(r['score_before'])}{score(r['score_after'])}"
                f"<td data-v='{r['width'] * r['height']}'>{_size(r)}</td>{_target_cell(r) if paired else ''}"
                f"<td>{img(r['stylized'])}</td><td>{img(r['corrected'])}</td><td>{overlay}</td></tr>")
  body.append("</table>")
  return html_page("stylegan_ad: stylized folder", "".join(body))
