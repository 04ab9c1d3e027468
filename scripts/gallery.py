"""The README gallery: input | G(x) | true S(x), whole photos at their own resolution.

  python scripts/gallery.py --runs=runs/embedded,runs/ink_wash --out=docs/gallery

For every run (a main-job or GAN-stage run directory on an embedded style) and every
test photo, plus one photo that no split uses (scikit-image's `camera`, grayscale),
writes OUT/<style>_<photo>.jpg: the photo, G's output from the run's EMA weights, and
the true S(photo) side by side, each at the photo's own size; and OUT/gallery.json
with each panel's PSNR/SSIM against S(photo).
"""
from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags
from PIL import Image

_RUNS = flags.DEFINE_list("runs", ["runs/embedded"], "run directories (main job or GAN stage)")
_OUT = flags.DEFINE_string("out", "docs/gallery", "output folder")
_QUALITY = flags.DEFINE_integer("quality", 88, "JPEG quality")


def _photos() -> list[tuple[str, np.ndarray]]:
  from skimage import data as skdata
  from stylegan_ad.data import embedded
  out = [(p.name, p.load()) for p in embedded.PHOTOS if p.split == "test"]
  camera = np.asarray(skdata.camera())
  return out + [("camera_unseen", np.repeat(camera[..., None], 3, axis=-1))]


def _gan_dir(run: str) -> str:
  return os.path.join(run, "gan") if os.path.isdir(os.path.join(run, "gan")) else run


def main(argv):
  del argv
  import jax
  import ml_collections
  from stylegan_ad import configs, metrics
  from stylegan_ad.data import pipeline, styles
  from stylegan_ad.train import loop, steps
  from stylegan_ad.train.checkpoint import Checkpointer

  os.makedirs(_OUT.value, exist_ok=True)
  figures = {}
  for run in _RUNS.value:
    gan = _gan_dir(run)
    config = ml_collections.ConfigDict(json.load(open(os.path.join(gan, "config.json"))))
    configs.validate(config)
    style = config.data.source.split(":", 1)[1]
    models = steps.make_models(config)
    abstract = jax.eval_shape(lambda k: steps.init_state(models, k), jax.random.key(0))
    ckpt = Checkpointer(gan)
    try:
      _, state, _ = ckpt.restore(abstract)
    finally:
      ckpt.close()
    params = jax.device_get(state.ema["ab"])
    operator = styles.get_style(style)
    for name, photo in _photos():
      target = operator(photo)
      y = loop.stylize_photo(models, params, photo)
      t, x = pipeline.to_float(target), pipeline.to_float(photo)
      q = lambda a: {"psnr": float(metrics.psnr_np(a[None], t[None])[0]), "ssim": float(metrics.ssim_np(a[None], t[None])[0])}
      figures[f"{style}/{name}"] = {"size": list(photo.shape[:2]), "G": q(y), "identity": q(x)}
      gap = np.full((photo.shape[0], 8, 3), 255, np.uint8)
      panel = np.concatenate([photo, gap, pipeline.to_uint8(y), gap, target], axis=1)
      Image.fromarray(panel).save(os.path.join(_OUT.value, f"{style}_{name}.jpg"), quality=_QUALITY.value)
      print(f"{style}/{name} {photo.shape[1]}x{photo.shape[0]}: G {figures[f'{style}/{name}']['G']}, "
            f"identity {figures[f'{style}/{name}']['identity']}")
  with open(os.path.join(_OUT.value, "gallery.json"), "w") as f:
    json.dump(figures, f, indent=2)


if __name__ == "__main__":
  app.run(main)
