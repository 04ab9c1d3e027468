"""Data sources behind one API: `embedded:<style>`, a TFDS name, or an image folder.

    load("embedded:cartoon", crop_size=128, data_dir=...)      # offline default
    load("cycle_gan/monet2photo", crop_size=256, data_dir=...)  # TFDS, prepared in data_dir
    load("folder:/data/horse2zebra", crop_size=256)            # trainA/ trainB/ testA/ testB/

Every source gives the same `Dataset`: random-access image sets (uint8 HxWx3) for
train A, train B, test A (and test B), with true targets S(x) where they are known.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Sequence

import numpy as np

from stylegan_ad.data import embedded, images, styles
from stylegan_ad.errors import ConfigError, DataError


CACHE_BYTES = 512 << 20   # decoded records kept in memory, all FieldViews of the process together
_cached_bytes = 0


class FieldView(Sequence):
  """Random access to one feature of selected records of a TFDS data source.

  Decoding a record costs about 0.4 ms, more than drawing a crop from it, so decoded
  features are kept (read-only) until the process holds `CACHE_BYTES` of them: a small
  dataset (the embedded one: 30 MB) is decoded once, a large one stays on disk."""

  def __init__(self, source: Any, key: str, indices: Sequence[int] | None = None):
    self._source, self._key = source, key
    self._indices = list(range(len(source))) if indices is None else list(indices)
    self._cache: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, i: int) -> np.ndarray:
    global _cached_bytes
    value = self._cache.get(i)
    if value is None:
      value = np.array(self._source[self._indices[i]][self._key])
      if _cached_bytes + value.nbytes <= CACHE_BYTES:
        value.setflags(write=False)
        self._cache[i] = value
        _cached_bytes += value.nbytes
    return value

  def __del__(self):
    global _cached_bytes
    if isinstance(_cached_bytes, int):  # (at interpreter exit the module's globals may be gone)
      _cached_bytes -= sum(v.nbytes for v in getattr(self, "_cache", {}).values())


@dataclasses.dataclass
class ImageSet:
  """Images of one domain and split; `targets[i]` is the true S(images[i]) where known."""
  name: str
  images: Sequence[np.ndarray]
  targets: Sequence[np.ndarray] | None = None

  def __len__(self) -> int:
    return len(self.images)


@dataclasses.dataclass
class Dataset:
  """A style-transfer dataset: A -> B, unpaired for training, tested on A."""
  name: str
  crop_size: int
  load_size: int
  train_a: ImageSet
  train_b: ImageSet
  test_a: ImageSet
  test_b: ImageSet | None = None
  style: Callable[[np.ndarray], np.ndarray] | None = None  # the true operator, if known
  train_pairs: ImageSet | None = None  # every train image with its target (paired training)
  test_photos: ImageSet | None = None  # whole test photos at their own size, with S(photo)
  reference_photos: ImageSet | None = None  # whole photos neither trained nor tested on, with S
  train_photos: ImageSet | None = None  # the whole train photos, with S

  def summary(self) -> dict[str, Any]:
    out = {"name": self.name, "crop_size": self.crop_size, "load_size": self.load_size}
    for field in ("train_a", "train_b", "test_a", "test_b"):
      s = getattr(self, field)
      if s is not None:
        out[field] = len(s)
    out["paired_targets"] = self.test_a.targets is not None
    return out


_SOURCE_HELP = ("use 'embedded:<style>' (styles: " + ", ".join(styles.STYLES) +
                "), a TFDS name such as 'cycle_gan/monet2photo', or 'folder:<path>'")


def default_data_dir() -> str:
  return os.environ.get("STYLEGAN_AD_DATA", os.path.join(os.path.expanduser("~"), ".stylegan_ad", "data"))


def load(spec: str, *, crop_size: int, data_dir: str | None = None) -> Dataset:
  """Opens the source named by `spec`.

  Raises:
    ConfigError: unknown source kind, style or crop size (one line naming it).
    DataError: a folder or file that cannot be used (one line naming it).
  """
  if not isinstance(spec, str) or not spec:
    raise ConfigError(f"data.source must be a non-empty string, got {spec!r}")
  if crop_size < 8:
    raise ConfigError(f"data.crop_size must be >= 8, got {crop_size}")
  data_dir = data_dir or default_data_dir()
  if spec.startswith("embedded:"):
    return _load_embedded(spec.split(":", 1)[1], crop_size, data_dir)
  if spec.startswith("folder:"):
    return load_folder(spec.split(":", 1)[1], crop_size)
  if re.fullmatch(r"[a-z0-9_]+(/[\w.\-]+)?(:[\d.]+)?", spec.removeprefix("tfds:")):
    return _load_tfds(spec.removeprefix("tfds:"), crop_size, data_dir)
  raise ConfigError(f"unknown data source {spec!r}: {_SOURCE_HELP}")


def _load_embedded(style: str, crop_size: int, data_dir: str) -> Dataset:
  operator = styles.get_style(style)
  builder = embedded.prepare(style, crop_size, data_dir)
  train = builder.as_data_source(split="train")
  test = builder.as_data_source(split="test")
  domains = np.array([int(train[i]["domain"]) for i in range(len(train))])
  a_idx, b_idx = np.flatnonzero(domains == 0), np.flatnonzero(domains == 1)
  return Dataset(
      name=f"embedded:{style}", crop_size=crop_size, load_size=embedded.load_size(crop_size),
      train_a=ImageSet("train_a", FieldView(train, "image", a_idx), FieldView(train, "target", a_idx)),
      train_b=ImageSet("train_b", FieldView(train, "target", b_idx)),
      test_a=ImageSet("test_a", FieldView(test, "image"), FieldView(test, "target")),
      test_b=ImageSet("test_b", FieldView(test, "target")),
      style=operator,
      train_pairs=ImageSet("train_pairs", FieldView(train, "image"), FieldView(train, "target")),
      test_photos=_whole_photos("test", operator),
      reference_photos=_whole_photos("reference", operator),
      train_photos=_whole_photos("train", operator))


class _LazyPhotos(Sequence):
  """Whole embedded photos of one split (or their S), loaded and styled on first access."""

  def __init__(self, photo_ids: list[int], operator: Callable[[np.ndarray], np.ndarray] | None):
    self._ids, self._operator, self._cache = photo_ids, operator, {}

  def __len__(self) -> int:
    return len(self._ids)

  def __getitem__(self, i: int) -> np.ndarray:
    if i not in self._cache:
      photo = embedded.PHOTOS[self._ids[i]].load()
      self._cache[i] = photo if self._operator is None else self._operator(photo)
    return self._cache[i]


def _whole_photos(split: str, operator) -> ImageSet:
  ids = [i for i, p in enumerate(embedded.PHOTOS) if p.split == split]
  return ImageSet(f"{split}_photos", _LazyPhotos(ids, None), _LazyPhotos(ids, operator))


def _load_tfds(name: str, crop_size: int, data_dir: str) -> Dataset:
  """A TFDS dataset with trainA/trainB/testA/testB splits and an `image` feature."""
  import tensorflow_datasets as tfds
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # tfds raises several types for unknown names
    raise ConfigError(f"unknown data source {name!r} (not a TFDS dataset: {type(e).__name__}): "
                      f"{_SOURCE_HELP}") from None
  splits = {}
  for split in ("trainA", "trainB", "testA", "testB"):
    try:
      splits[split] = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:
      raise DataError(
          f"TFDS dataset {name!r} split {split!r} is not prepared in {data_dir} "
          f"(prepare it once with `tfds build {name} --data_dir={data_dir}`): {type(e).__name__}") from None
  del builder
  return Dataset(
      name=name, crop_size=crop_size, load_size=crop_size + crop_size // 8,
      train_a=ImageSet("train_a", FieldView(splits["trainA"], "image")),
      train_b=ImageSet("train_b", FieldView(splits["trainB"], "image")),
      test_a=ImageSet("test_a", FieldView(splits["testA"], "image")),
      test_b=ImageSet("test_b", FieldView(splits["testB"], "image")))


def _read_folder_split(root: str, split: str, crop_size: int, load_size: int,
                       required: bool) -> ImageSet | None:
  path = os.path.join(root, split)
  if not os.path.isdir(path):
    if required:
      raise DataError(f"{root}: no {split}/ folder (expected trainA/ trainB/ testA/ testB/ "
                      "as in the CycleGAN layout)")
    return None
  names = sorted(n for n in os.listdir(path) if not n.startswith("."))
  if not names:
    if required:
      raise DataError(f"{path}: empty folder")
    return None
  loaded, bad = [], []
  for name in names:
    file = os.path.join(path, name)
    try:
      image = images.read_rgb(file)
      if min(image.shape[:2]) < crop_size:
        raise DataError(f"{file}: {image.shape[1]}x{image.shape[0]} is smaller than the "
                        f"{crop_size}x{crop_size} crop (data.crop_size)")
      loaded.append(images.resize_short_side(image, load_size))
    except DataError as e:
      bad.append(str(e))
  if bad:
    more = f" (and {len(bad) - 1} more bad files)" if len(bad) > 1 else ""
    raise DataError(bad[0] + more)
  return ImageSet(split, loaded)


def load_folder(root: str, crop_size: int) -> Dataset:
  """A folder laid out as the PyTorch CycleGAN code expects; nothing in it is written."""
  if not os.path.isdir(root):
    raise DataError(f"{root}: no such folder")
  if not [n for n in os.listdir(root) if not n.startswith(".")]:
    raise DataError(f"{root}: empty folder")
  load_size = crop_size + crop_size // 8
  sets = {s: _read_folder_split(root, s, crop_size, load_size, required=s.startswith("train"))
          for s in ("trainA", "trainB", "testA", "testB")}
  test_a = sets["testA"] or ImageSet("testA", [])
  return Dataset(name=f"folder:{root}", crop_size=crop_size, load_size=load_size,
                 train_a=sets["trainA"], train_b=sets["trainB"], test_a=test_a,
                 test_b=sets["testB"])
