"""G's real failures, measured against the true target S(x).

A `Pool` holds G's real outputs on whole photos (downscaled to `max_side`), with the
variety a user's photos meet:
  - generators: the final G (EMA weights, and the raw weights) and under-trained
    snapshots of the same run (`train.snapshots`, e.g. 10%, 25%, 50% of the steps);
  - input shifts, given to the final G: noise, blur, JPEG, under-exposure, low
    contrast, a hue rotation, grayscale, and a 2x zoom (the central half magnified to
    the photo's size: a scale beyond the trained ones).
The truth for an output y = G(x') is S(x'), the style operator on the shifted photo:

  pixel truth   e = channel-mean |y - S(x')|, box-smoothed; failing where e > tau, with
                tau the `quantile` of the final G's e on the reference photos (a split
                G never trained on and nothing is tested on); regions smaller than
                `min_region` pixels dropped.
  image truth   anomalous where the failing area fraction exceeds `area_cut`, fixed on
                the reference pool too (`area_factor` x the final G's own fraction).
  second truth  "worse than doing nothing": e > e_identity + `delta`, e_identity the
                smoothed |x' - S(x')|.

`evaluate` gives the threshold-free figures of a scorer against that truth: Spearman
rank correlation between image score and true error (-PSNR to S(x')), pixel AUROC,
AUPRO, image AUROC, each (but AUPRO) with a 95% bootstrap interval that resamples
source photos; and, for a calibrated scorer, its false- and true-positive rates.
"""
from __future__ import annotations

import dataclasses
import io
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage, stats

from stylegan_ad import console, metrics

# x' = shift(photo); "none" first. Each is a deterministic uint8 -> uint8 function.
SHIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {}


def _shift(name: str):
  def register(fn):
    SHIFTS[name] = fn
    return fn
  return register


def _u8(a: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(a), 0, 255).astype(np.uint8)


@_shift("none")
def _none(p):
  return p


@_shift("noise")
def _noise(p):
  rng = np.random.default_rng(list(p.shape))
  return _u8(p.astype(np.float32) + rng.normal(0.0, 30.0, p.shape))


@_shift("blur")
def _blur(p):
  return _u8(ndimage.gaussian_filter(p.astype(np.float32), (2.0, 2.0, 0)))


@_shift("jpeg")
def _jpeg(p):
  buf = io.BytesIO()
  Image.fromarray(p).save(buf, "JPEG", quality=10)
  return np.asarray(Image.open(buf).convert("RGB"))


@_shift("dark")
def _dark(p):
  return _u8(255.0 * (p / 255.0) ** 2.2 * 0.7)


@_shift("low_contrast")
def _low_contrast(p):
  f = p.astype(np.float32)
  return _u8(f.mean() + 0.4 * (f - f.mean()))


@_shift("hue")
def _hue(p):
  hsv = np.asarray(Image.fromarray(p).convert("HSV")).copy()
  hsv[..., 0] = (hsv[..., 0].astype(np.int32) + 85) % 256
  return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


@_shift("gray")
def _gray(p):
  g = _u8(p.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
  return np.repeat(g[..., None], 3, axis=-1)


@_shift("zoom")
def _zoom(p):
  h, w = p.shape[:2]
  box = (w // 4, h // 4, w // 4 + w // 2, h // 4 + h // 2)
  return np.asarray(Image.fromarray(p).resize((w, h), Image.Resampling.BICUBIC, box=box))


def _float(a: np.ndarray) -> np.ndarray:
  return a.astype(np.float32) / 127.5 - 1.0


@dataclasses.dataclass
class Pool:
  """G's outputs on whole photos, one item per (photo, generator, shift)."""
  inputs: list[np.ndarray]          # x' = shift(photo), float [-1, 1]
  outputs: list[np.ndarray]         # G(x')
  targets: list[np.ndarray] | None  # S(x'); None where the data has no true targets
  photo: np.ndarray                 # [N] index of the source photo
  generator: list[str]
  shift: list[str]
  alts: list[np.ndarray] | None = None  # G's alternate views of each input (detect.tta_alternates), once set

  def __len__(self) -> int:
    return len(self.outputs)

  def where(self, generator: str | None = None, shift: str | None = None) -> np.ndarray:
    return np.array([(generator is None or g == generator) and (shift is None or s == shift)
                     for g, s in zip(self.generator, self.shift)], bool)


def build_pool(photos: Sequence[np.ndarray], generators: dict[str, Callable[[np.ndarray], np.ndarray]],
               style: Callable[[np.ndarray], np.ndarray] | None, max_side: int,
               shifts: Sequence[str] = tuple(SHIFTS), scales: Sequence[float] = (1.0,), desc: str = "pool") -> Pool:
  """Every generator on each photo as it is, and the first generator (the final G) on
  every shift of it; each photo first downscaled to `max_side` times each of `scales`.

  `generators`: name -> stylize(uint8 photo) -> float [-1, 1] output of the same size.
  `style`: the true operator S (uint8 -> uint8), or None for data without targets."""
  from stylegan_ad import fullres
  names = list(generators)
  combos = [(g, "none") for g in names] + [(names[0], s) for s in shifts if s != "none"]
  pool = Pool([], [], None if style is None else [], np.zeros(0, np.int32), [], [])
  photo_ids = []
  bar = console.progress(desc=f"{desc}: G's outputs", total=len(photos) * len(scales) * len(combos), unit="output")
  for i, photo in enumerate(photos):
    for scale in scales:
      base, _ = fullres.fit_max_side(np.asarray(photo), int(round(max_side * scale)))
      shifted: dict[str, tuple] = {}   # each shift's input and S of it, once per photo and scale
      for g, s in combos:
        if s not in shifted:
          x = SHIFTS[s](base)
          shifted[s] = (x, _float(x), None if style is None else _float(style(x)))
        x, xf, t = shifted[s]
        pool.inputs.append(xf)
        pool.outputs.append(np.asarray(generators[g](x), np.float32))
        if style is not None:
          pool.targets.append(t)
        pool.generator.append(g)
        pool.shift.append(s)
        photo_ids.append(i)
        bar.update()
  bar.close()
  pool.photo = np.asarray(photo_ids, np.int32)
  return pool


@dataclasses.dataclass(frozen=True)
class Truth:
  """The failure truth's thresholds, fixed on the reference split (`fit_truth`)."""
  pixel_threshold: float
  area_cut: float
  min_region: int = 16
  smooth: int = 5
  delta: float = 0.05

  def error(self, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    return ndimage.uniform_filter(np.abs(y - t).mean(-1), self.smooth, mode="reflect")

  def _drop_specks(self, mask: np.ndarray) -> np.ndarray:
    labeled, n = ndimage.label(mask)
    if n == 0:
      return mask
    sizes = np.bincount(labeled.ravel())
    keep = sizes >= self.min_region
    keep[0] = False
    return keep[labeled]

  def mask(self, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Failing pixels of output y against target t."""
    return self._drop_specks(self.error(y, t) > self.pixel_threshold)

  def worse_than_identity(self, x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Pixels where G's output is further from S(x) than x itself (by `delta`)."""
    return self._drop_specks(self.error(y, t) > self.error(x, t) + self.delta)


def fit_truth(reference: Pool, quantile: float = 99.0, area_factor: float = 2.0, min_area: float = 0.01,
              **kwargs) -> Truth:
  """Thresholds from the reference pool only: tau from the final G's (first generator,
  no shift) pixel errors, the area cut from that output's own failing fraction."""
  if reference.targets is None or not len(reference):
    raise ValueError("the failure truth needs reference photos with true targets")
  final = reference.where(reference.generator[0], "none")
  probe = Truth(0.0, 0.0, **kwargs)
  errors = np.concatenate([probe.error(reference.outputs[i], reference.targets[i]).ravel()
                           for i in np.flatnonzero(final)])
  tau = float(np.percentile(errors, quantile))
  truth = dataclasses.replace(probe, pixel_threshold=tau)
  own = max(float(truth.mask(reference.outputs[i], reference.targets[i]).mean()) for i in np.flatnonzero(final))
  return dataclasses.replace(truth, area_cut=max(min_area, area_factor * own))


@dataclasses.dataclass
class Labels:
  masks: list[np.ndarray]       # failing pixels
  worse: list[np.ndarray]       # worse than doing nothing
  area: np.ndarray              # [N] failing fraction
  anomalous: np.ndarray         # [N] bool
  psnr: np.ndarray              # [N] PSNR of G(x') to S(x')


def label(pool: Pool, truth: Truth) -> Labels:
  if pool.targets is None:
    raise ValueError("labels need true targets")
  masks = [truth.mask(y, t) for y, t in zip(pool.outputs, pool.targets)]
  worse = [truth.worse_than_identity(x, y, t) for x, y, t in zip(pool.inputs, pool.outputs, pool.targets)]
  area = np.array([m.mean() for m in masks])
  psnr = np.array([float(metrics.psnr_np(y[None], t[None])[0]) for y, t in zip(pool.outputs, pool.targets)])
  return Labels(masks, worse, area, area > truth.area_cut, psnr)


def pixel_sample(maps, masks, per_image: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """A fixed random subset of each image's pixels (scores, labels), for pixel AUROC."""
  rng = np.random.default_rng(seed)
  out = []
  for m, t in zip(maps, masks):
    m, t = np.asarray(m).ravel(), np.asarray(t).ravel()
    idx = rng.choice(m.size, min(per_image, m.size), replace=False)
    out.append((m[idx], t[idx]))
  return out


def auroc_or_nan(scores, labels) -> float:
  labels = np.asarray(labels, bool)
  return metrics.auroc(scores, labels) if labels.any() and (~labels).any() else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
    return float("nan")
  return float(stats.spearmanr(a, b)[0])


def _figures(idx, score, psnr, anomalous, pixels) -> dict[str, float]:
  ps = np.concatenate([pixels[i][0] for i in idx])
  pt = np.concatenate([pixels[i][1] for i in idx])
  return {"pixel_auroc": auroc_or_nan(ps, pt), "image_auroc": auroc_or_nan(score[idx], anomalous[idx]),
          "spearman": spearman(score[idx], -psnr[idx])}


def evaluate(score: np.ndarray, maps: Sequence[np.ndarray], pool: Pool, labels: Labels,
             threshold: float | None = None, boot: int = 200, seed: int = 0,
             pixels_per_image: int = 4096, boot_pixels: int = 1024) -> dict:
  """A scorer's figures on the pool against the truth; intervals resample photos (the
  pixel AUROC's on `boot_pixels` of each image's sampled pixels)."""
  score = np.asarray(score, np.float64)
  pixels = pixel_sample(maps, labels.masks, pixels_per_image, seed)
  everything = np.arange(len(pool))
  out = _figures(everything, score, labels.psnr, labels.anomalous, pixels)
  out["image_scores"] = [round(float(v), 5) for v in score]   # per pool item: the report's ROC and histogram
  if any(m.any() for m in labels.masks):
    fpr, pro = metrics.pro_curve([m[::2, ::2] for m in maps], [t[::2, ::2] for t in labels.masks])
    out["aupro"] = float(np.trapezoid(pro, fpr) / fpr[-1])
    keep = np.unique(np.linspace(0, len(fpr) - 1, 60).astype(int))
    out["pro_curve"] = {"fpr": [round(float(v), 5) for v in fpr[keep]], "pro": [round(float(v), 5) for v in pro[keep]]}
  else:
    out["aupro"] = float("nan")
  worse = pixel_sample(maps, labels.worse, pixels_per_image, seed)
  out["pixel_auroc_worse_than_identity"] = auroc_or_nan(np.concatenate([w[0] for w in worse]),
                                                         np.concatenate([w[1] for w in worse]))
  rng = np.random.default_rng(seed)
  photos = np.unique(pool.photo)
  by_photo = {p: np.flatnonzero(pool.photo == p) for p in photos}
  samples = {k: [] for k in ("pixel_auroc", "image_auroc", "spearman")}
  few = [(s[:boot_pixels], t[:boot_pixels]) for s, t in pixels]  # (already a random subset)
  ranked = metrics.RankedScores(np.concatenate([s for s, _ in few]), np.concatenate([t for _, t in few]),
                                np.repeat(np.arange(len(few)), [len(s) for s, _ in few]))
  for _ in range(boot):
    idx = np.concatenate([by_photo[p] for p in rng.choice(photos, len(photos), replace=True)])
    samples["pixel_auroc"].append(ranked.auroc(np.bincount(idx, minlength=len(few))))
    samples["image_auroc"].append(auroc_or_nan(score[idx], labels.anomalous[idx]))
    samples["spearman"].append(spearman(score[idx], -labels.psnr[idx]))
  for k, v in samples.items():
    v = np.asarray(v)
    v = v[np.isfinite(v)]
    out[k + "_ci"] = [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) else None
  if threshold is not None:
    flagged = score > threshold
    a = labels.anomalous
    out["fpr"] = float(flagged[~a].mean()) if (~a).any() else float("nan")
    out["tpr"] = float(flagged[a].mean()) if a.any() else float("nan")
    out["threshold"] = float(threshold)
  return out


def describe(pool: Pool, labels: Labels, truth: Truth) -> dict:
  """The pool's make-up and the truth's thresholds (for the report)."""
  per_variant = {}
  for g, s, a, p in zip(pool.generator, pool.shift, labels.anomalous, labels.psnr):
    v = per_variant.setdefault(f"{g}/{s}", {"images": 0, "anomalous": 0, "psnr": []})
    v["images"] += 1
    v["anomalous"] += int(a)
    v["psnr"].append(float(p))
  for v in per_variant.values():
    v["psnr"] = float(np.mean(v["psnr"]))
  rate = float(labels.anomalous.mean())
  return {"images": len(pool), "photos": int(len(np.unique(pool.photo))), "anomalous": int(labels.anomalous.sum()),
          "anomalous_rate": rate, "rate_in_bounds": bool(0.10 <= rate <= 0.80),
          "pixel_threshold": truth.pixel_threshold, "area_cut": truth.area_cut,
          "min_region": truth.min_region, "variants": per_variant,
          "items": {"variant": [f"{g}/{s}" for g, s in zip(pool.generator, pool.shift)],
                    "photo": [int(p) for p in pool.photo], "anomalous": [bool(a) for a in labels.anomalous],
                    "psnr": [round(float(p), 4) for p in labels.psnr]}}


def canvas_tiling(max_side: int):
  """A `fullres.Tiling` that runs every photo up to `max_side` whole on one fixed canvas:
  one compiled program for all of them."""
  from stylegan_ad import fullres
  canvas = -(-(max_side + 2 * fullres.Tiling.border) // fullres.Tiling.bucket) * fullres.Tiling.bucket
  return fullres.Tiling(bucket=canvas, window=2 * canvas)


def apply_pool(fn: Callable[[np.ndarray], dict], pool: Pool, max_side: int, desc: str | None = None) -> list[dict]:
  """`fn` on each item's [x, y] ([1, h, w, 6]; [x, alts, y], 15 channels, once the pool
  has its alternate views: `context(v)` and `v[..., -3:]` split it), on the pool's
  canvas (`canvas_tiling`): per-pixel outputs come back at the photo's size. `desc`:
  the label of a progress bar (none without it)."""
  from stylegan_ad import fullres
  tiling = canvas_tiling(max_side)
  alts = pool.alts or [None] * len(pool)
  items = zip(pool.inputs, alts, pool.outputs)
  if desc:
    items = console.progress(items, desc, total=len(pool), unit="image")
  return [fullres.apply(fn, np.concatenate([x] + ([] if a is None else [a]) + [y], axis=-1), tiling)
          for x, a, y in items]


def context(v):
  """The input's context (`detect.Scorer`) of an `apply_pool` item."""
  return v[..., :-3]


def unique_inputs(pool: Pool) -> np.ndarray:
  """[N] for each item, the first item with the same input (the generators on one
  photo as it is share it), so per-input work runs once."""
  first: dict[tuple, int] = {}
  return np.array([first.setdefault((int(p), s, x.shape), i)
                   for i, (p, s, x) in enumerate(zip(pool.photo, pool.shift, pool.inputs))])


def score_pool(scorer, pool: Pool, max_side: int, desc: str | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
  """A `detect.Scorer`'s (score [N], maps) on every item of the pool (`desc`: a progress bar)."""
  outs = apply_pool(lambda v: dict(zip(("score", "map"), scorer._jit(v[..., -3:], context(v)))), pool, max_side,
                    desc)
  return (np.asarray([float(np.max(o["score"])) for o in outs]),
          [np.asarray(o["map"], np.float32) for o in outs])


def take(pool: Pool, idx) -> Pool:
  idx = np.flatnonzero(idx) if np.asarray(idx).dtype == bool else np.asarray(idx)
  pick = lambda a: None if a is None else [a[i] for i in idx]
  return Pool(pick(pool.inputs), pick(pool.outputs), pick(pool.targets), pool.photo[idx],
              pick(pool.generator), pick(pool.shift), pick(pool.alts))
