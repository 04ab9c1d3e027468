"""The embedded default dataset: photos bundled in scikit-image / scikit-learn, stylized.

Built offline, deterministically, as a TFDS builder (array_record files, uint8 Tensor
features, no TensorFlow needed). Train and test are split by source photo; the
stereo motorcycle pair counts as one photo. A third, "reference" photo is in neither:
G never trains on it and no figure is tested on it; the real-failure benchmark fixes
its thresholds and the detector its calibration on it (`sources.Dataset.reference_photos`). Inside the train split, photos are
assigned to domain A (content) or domain B (stylized) so that unpaired training
never sees a photo on both sides; every example also carries its true target S(x).

Features of one example:
  image:    the photo crop x (train: load size = crop + crop//8, test: crop size)
  target:   S(x), the true stylized crop
  photo_id: index into PHOTOS
  domain:   0 (A, content) or 1 (B, style) for train; 0 for test
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from stylegan_ad.data import styles


@dataclasses.dataclass(frozen=True)
class Photo:
  name: str
  load: Callable[[], np.ndarray]
  split: str   # "train", "test" or "reference" (whole photo only, not in the TFDS splits)
  domain: int  # 0 = A (content side), 1 = B (style side); test photos use 0


def _skimage(name: str) -> Callable[[], np.ndarray]:
  def load() -> np.ndarray:
    from skimage import data as skdata
    return np.asarray(getattr(skdata, name)())[..., :3]
  return load


def _stereo(which: int) -> Callable[[], np.ndarray]:
  def load() -> np.ndarray:
    from skimage import data as skdata
    return np.asarray(skdata.stereo_motorcycle()[which])[..., :3]
  return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
  def load() -> np.ndarray:
    from sklearn.datasets import load_sample_image
    return np.asarray(load_sample_image(filename))[..., :3]
  return load


PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", _skimage("astronaut"), "train", 0),
    Photo("coffee", _skimage("coffee"), "reference", 0),
    Photo("china", _sklearn("china.jpg"), "train", 0),
    Photo("hubble_deep_field", _skimage("hubble_deep_field"), "train", 0),
    Photo("rocket", _skimage("rocket"), "train", 1),
    Photo("immunohistochemistry", _skimage("immunohistochemistry"), "train", 1),
    Photo("retina", _skimage("retina"), "train", 1),
    Photo("chelsea", _skimage("chelsea"), "test", 0),
    Photo("flower", _sklearn("flower.jpg"), "test", 0),
    Photo("motorcycle_left", _stereo(0), "test", 0),
    Photo("motorcycle_right", _stereo(1), "test", 0),
)

SIZES = (64, 128, 256)
CROPS_PER_PHOTO = {"train": 96, "test": 16}
# Short side of the resized photo, in crop sizes; None: the photo at its own resolution.
# Train crops also come at the photo's own scale, the one people stylize at (the test
# crops keep the three small scales, so their figures compare across versions).
SCALES = {"train": (1.0, 1.6, 2.5, 4.0, None), "test": (1.0, 1.6, 2.5)}
GRAY_EVERY = 8  # every 8th train crop is made grayscale


def load_size(crop: int) -> int:
  """Size of stored train crops: room for a random crop, as CycleGAN's 286 -> 256."""
  return crop + crop // 8


def photo_crops(photo_id: int, crop: int, split: str) -> list[np.ndarray]:
  """Deterministic multi-scale crops of one photo (uint8)."""
  photo = PHOTOS[photo_id]
  image = photo.load()
  side = load_size(crop) if split == "train" else crop
  n = CROPS_PER_PHOTO[split]
  rng = np.random.default_rng([photo_id, crop, 0 if split == "train" else 1])
  out = []
  scales = SCALES[split]
  for s_idx, scale in enumerate(scales):
    h, w = image.shape[:2]
    factor = 1.0 if scale is None else int(round(side * scale)) / min(h, w)
    size = (max(side, int(round(w * factor))), max(side, int(round(h * factor))))
    resized = image if size == (w, h) else np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
    count = n // len(scales) + (1 if s_idx < n % len(scales) else 0)
    for _ in range(count):
      y = int(rng.integers(0, resized.shape[0] - side + 1))
      x = int(rng.integers(0, resized.shape[1] - side + 1))
      out.append(np.ascontiguousarray(resized[y:y + side, x:x + side]))
  if split == "train":  # a share of grayscale crops: a gray photo must stay gray (no learnt tint)
    for i in range(0, len(out), GRAY_EVERY):
      gray = np.rint(out[i].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
      out[i] = np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
  return out


def builder_config_name(style: str, crop: int) -> str:
  return f"{style}_{crop}"


class EmbeddedStyle(tfds.core.GeneratorBasedBuilder):
  """Bundled photos and their stylized targets; one config per (style, crop size)."""

  VERSION = tfds.core.Version("1.3.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.", "1.1.0": "64 train crops per photo.",
                   "1.2.0": "96 train crops per photo, also at 4x and at the photo's own scale; "
                            "every 8th train crop grayscale.",
                   "1.3.0": "coffee moves from train to the reference split (no crops)."}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name=builder_config_name(style, size),
                              description=f"{style} style, {size}x{size} crops")
      for style in styles.STYLES for size in SIZES
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    image = lambda: tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding="bytes")
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": image(),
            "target": image(),
            "photo_id": tfds.features.Scalar(dtype=np.int32),
            "domain": tfds.features.Scalar(dtype=np.int32),
        }),
        description=__doc__,
    )

  def _style_and_crop(self) -> tuple[str, int]:
    style, crop = self.builder_config.name.rsplit("_", 1)
    return style, int(crop)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded
    return {"train": self._generate_examples("train"), "test": self._generate_examples("test")}

  def _generate_examples(self, split: str):
    style, crop = self._style_and_crop()
    operator = styles.get_style(style)
    for photo_id, photo in enumerate(PHOTOS):
      if photo.split != split:
        continue
      for i, x in enumerate(photo_crops(photo_id, crop, split)):
        yield f"{photo.name}_{i:04d}", {
            "image": x,
            "target": operator(x),
            "photo_id": photo_id,
            "domain": photo.domain,
        }


def prepare(style: str, crop: int, data_dir: str) -> tfds.core.DatasetBuilder:
  """Builds the dataset into `data_dir` once (reused afterwards) and returns the builder."""
  styles.get_style(style)  # one-line error for an unknown style
  if crop not in SIZES:
    from stylegan_ad.errors import ConfigError
    raise ConfigError(f"embedded crop size must be one of {SIZES}, got {crop}")
  builder = EmbeddedStyle(config=builder_config_name(style, crop), data_dir=data_dir,
                          file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  return builder
