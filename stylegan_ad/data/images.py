"""Reading user image files safely into uint8 RGB arrays (never writing them)."""
from __future__ import annotations

import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps

from stylegan_ad.errors import DataError

MAX_PIXELS = 64_000_000  # larger images are refused as decompression bombs


def _to_rgb(im: Image.Image) -> np.ndarray:
  """Converts any Pillow mode to uint8 RGB: 16-bit and float are rescaled, alpha dropped."""
  if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
    arr = np.asarray(im).astype(np.float64)
    top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
    if im.mode == "F":
      top = max(float(arr.max()), 1.0) if arr.max() > 1.0 else 1.0
    gray = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
    im = im.convert("RGBA")
    background = Image.new("RGBA", im.size, (255, 255, 255, 255))
    im = Image.alpha_composite(background, im)
  arr = np.asarray(im.convert("RGB"))
  return np.ascontiguousarray(arr, dtype=np.uint8)


def read_rgb(path: str) -> np.ndarray:
  """Reads an image file as HxWx3 uint8, EXIF orientation applied.

  Raises:
    DataError: one line naming the file, for anything that is not a readable image
      (missing, a directory, zero bytes, truncated, not an image, too many pixels,
      a symlink loop, no permission).
  """
  try:
    if os.path.isdir(path):
      raise DataError(f"{path}: is a directory, not an image")
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO, socket or device: never opened (it could block)
      raise DataError(f"{path}: not a regular file")
    if os.path.getsize(path) == 0:
      raise DataError(f"{path}: empty file (0 bytes)")
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(path) as im:
        if im.width * im.height > MAX_PIXELS:
          raise DataError(f"{path}: {im.width}x{im.height} pixels is over the limit of {MAX_PIXELS}")
        im.load()
        im = ImageOps.exif_transpose(im)
        return _to_rgb(im)
  except DataError:
    raise
  except Image.UnidentifiedImageError:
    raise DataError(f"{path}: not an image Pillow can read") from None
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise DataError(f"{path}: refused as a decompression bomb ({e})") from None
  except (OSError, SyntaxError, ValueError) as e:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise DataError(f"{path}: cannot read image ({reason})") from None


def resize_short_side(image: np.ndarray, short: int) -> np.ndarray:
  """Resizes so the short side is `short` (bicubic), keeping the aspect ratio."""
  h, w = image.shape[:2]
  if min(h, w) == short:
    return image
  factor = short / min(h, w)
  size = (max(short, int(round(w * factor))), max(short, int(round(h * factor))))
  return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
