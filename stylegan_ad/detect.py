"""Anomaly scorers for stylized outputs, calibration, and the detection benchmark.

Scorers behind one interface, each giving a score per image (higher = more
anomalous), a map per pixel, and, once calibrated, a verdict:
  - `DetectorScorer`: the learned segmentation detector (of y, or of [x, y]), where a
    reference split with true targets exists fused with two label-free maps (`Fusion`);
  label-free (no true targets needed):
  - `DiscriminatorScorer`: the seed's first method, low realism under the trained D;
  - `FeatureDistanceScorer`: a Gaussian over D's features of clean outputs;
  - `StyleStatisticsScorer`: D-feature patch statistics against real style images;
  - `TTAScorer`: G's disagreement with itself on the input turned half a turn;
  - `DisagreementScorer`: raw vs EMA weights, or cycle inconsistency (unpaired).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stylegan_ad import artifacts, files, metrics
from stylegan_ad.errors import CheckpointError
from stylegan_ad.models import detector as detector_lib
from stylegan_ad.models.discriminator import image_score


@dataclasses.dataclass
class Scores:
  score: np.ndarray             # [N], higher = more anomalous
  map: np.ndarray               # [N, H, W]
  flagged: np.ndarray | None    # [N] bool, when calibrated


def _batched(fn, *arrays: np.ndarray, batch: int = 32):
  from stylegan_ad.train.aux_trainer import batched
  return batched(fn, *arrays, batch=batch)


class Scorer:
  """Base: subclasses define `_fn(y, x) -> (score [N], map [N,H,W])` (jit-able).

  `y` are the stylized outputs, `x` the generator inputs: a paired (pix2pix)
  discriminator judges the pair, G-based scorers run G on it. `x` may also be the
  input's *context*, [x, G's alternate view of x] (6 channels, `context`), where a
  caller scores the same inputs several times: the scorers that need the alternate
  view (TTA, a detector that sees it) take it from the context instead of running G.
  """
  name = "scorer"

  def __init__(self):
    self.threshold: float | None = None
    self.screen_threshold: float | None = None   # see DetectorScorer
    self._jit = jax.jit(self._fn)

  def _fn(self, y: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    raise NotImplementedError

  def __call__(self, images: np.ndarray, content: np.ndarray, batch: int = 32) -> Scores:
    score, amap = _batched(self._jit, np.asarray(images, np.float32), np.asarray(content, np.float32),
                           batch=batch)
    flagged = None if self.threshold is None else score > self.threshold
    return Scores(score, amap, flagged)

  def calibrate(self, clean_images: np.ndarray, content: np.ndarray, fpr: float = 0.01) -> float:
    """Sets the threshold to flag a fraction `fpr` of clean images."""
    self.threshold = threshold_for_fpr(self(clean_images, content).score, fpr)
    return self.threshold


def threshold_for_fpr(clean_scores: np.ndarray, fpr: float) -> float:
  """Smallest threshold t with mean(clean_scores > t) <= fpr."""
  s = np.sort(np.asarray(clean_scores, np.float64))
  k = int(np.ceil(len(s) * (1.0 - fpr))) - 1
  return float(s[min(max(k, 0), len(s) - 1)])


def _d_input(y: jax.Array, x: jax.Array, conditional: bool) -> jax.Array:
  return jnp.concatenate([photo(x), y], axis=-1) if conditional else y


def photo(x: jax.Array) -> jax.Array:
  """The photo x of an input or of its context."""
  return x[..., :3]


def alternates(g, x: jax.Array) -> jax.Array:
  """G's alternate view of x: from its context where it has it, else computed."""
  return x[..., 3:] if x.shape[-1] == CONTEXT_CHANNELS else tta_alternates(g, photo(x))


def context(g, x: jax.Array) -> jax.Array:
  """[x, G's alternate view of x] (`CONTEXT_CHANNELS`): see `Scorer`."""
  return jnp.concatenate([photo(x), alternates(g, x)], axis=-1)


class DiscriminatorScorer(Scorer):
  """Anomaly = low realism: minus D's patch logits (map upsampled to the image)."""
  name = "discriminator"

  def __init__(self, discriminator: Any, d_params: Any, conditional: bool = False):
    self.discriminator, self.d_params, self.conditional = discriminator, d_params, conditional
    super().__init__()

  def _fn(self, y, x):
    logits, _ = self.discriminator.apply({"params": self.d_params}, _d_input(y, x, self.conditional))
    amap = -jax.image.resize(logits[0][..., 0], y.shape[:3], "linear")
    return -image_score(logits), amap


class DetectorScorer(Scorer):
  """The learned detector: image logit as the score, pixel probabilities as the map,
  averaged over `views` flips and quarter turns of the image.

  With `screen_rate` > 0 (and several views), calibration also sets the threshold of
  a 1-view screen: the score of one view that a fraction `screen_rate` of the clean
  calibration outputs exceed (never above the full score's threshold). The correction
  path (`correct.Corrector`) gives the full score only to images that pass the screen;
  the rest are clean on their 1-view score. Scoring here is always the full score.

  `generator` (x -> G(x), jit-able) is given to a detector that sees G's test-time
  disagreement (`detect.sees_tta`): the scorer runs G's alternate views of x itself, and
  its image score adds `spread_weight` times the log of G's mean spread over the image
  (`detect.spread_weight`: G's own uncertainty ranks its real errors; it is saved with
  the thresholds, so a run calibrated without it is scored without it)."""
  name = "detector"

  def __init__(self, detector: Any, params: Any, views: int = 1, screen_rate: float = 0.0,
               sees_input: bool = False, generator: Any = None, spread_weight: float = 0.0,
               fusion: "Fusion | None" = None):
    self.detector, self.params, self.views, self.screen_rate = detector, params, views, screen_rate
    self.sees_input, self.generator = sees_input, generator
    self.spread_weight = spread_weight if generator is not None else 0.0
    self.fusion = fusion
    super().__init__()

  def set_fusion(self, fusion: "Fusion | None") -> None:
    """Scores from now on with `fusion` (None: the network alone); a fused score has no
    1-view screen (it is not an average over views)."""
    if fusion is not None and not self.sees_tta:
      raise ValueError("a fused detector score needs G's alternate views: detect.sees_tta")
    self.fusion = fusion
    self.screen_threshold = None
    self._jit = jax.jit(self._fn)

  @property
  def sees_tta(self) -> bool:
    return self.generator is not None

  def _fn(self, y, x):
    alts = alternates(self.generator, x) if self.sees_tta else None
    return judge(self.detector, self.params, y, photo(x), alts, self.views, sees_input=self.sees_input,
                 spread_weight=self.spread_weight, fusion=self.fusion)

  def one_view(self) -> "DetectorScorer":
    return DetectorScorer(self.detector, self.params, sees_input=self.sees_input, generator=self.generator,
                          spread_weight=self.spread_weight, fusion=self.fusion)

  def network_alone(self) -> "DetectorScorer":
    """The same detector without its fusion (for the comparison row of the benchmark)."""
    return DetectorScorer(self.detector, self.params, self.views, self.screen_rate, self.sees_input,
                          self.generator, self.spread_weight)

  def calibrate(self, clean_images: np.ndarray, content: np.ndarray, fpr: float = 0.01) -> float:
    super().calibrate(clean_images, content, fpr)
    self.screen_threshold = None
    if self.views > 1 and self.screen_rate > 0 and self.fusion is None:
      one_view = self.one_view()(clean_images, content).score
      self.set_screen(one_view)
    return self.threshold

  def set_screen(self, one_view_clean_scores: np.ndarray) -> None:
    """The 1-view screen's threshold from clean 1-view scores (after the threshold)."""
    self.screen_threshold = min(threshold_for_fpr(one_view_clean_scores, self.screen_rate), self.threshold)


def judge(detector: Any, params: Any, y: jax.Array, x: jax.Array, alts: jax.Array | None, views: int,
          skip: int = 0, sees_input: bool = False, spread_weight: float = 0.0, fusion: "Fusion | None" = None
          ) -> tuple[jax.Array, jax.Array]:
  """The detector's (image score [N], map [N, H, W]) of outputs y of photos x (`alts`:
  G's alternate views of x, for a detector that sees them): the network's
  (`detector.predict`) or, with `fusion`, the fused ones."""
  if fusion is not None:
    _, prob = detector_lib.predict(detector, params, y, views, skip, x=x if sees_input else None, alts=alts)
    return fusion(prob, y, x, alts)
  return detector_lib.predict(detector, params, y, views, skip, x=x if sees_input else None, alts=alts,
                              spread_weight=spread_weight)


FUSION_FEATURES = ("detector", "style_statistics", "tta_spread")


def fusion_features(prob: jax.Array, style_map: jax.Array, spread_map: jax.Array,
                    palette_map: jax.Array | None = None) -> jax.Array:
  """[N, H, W, 3] per-pixel features of `Fusion`: the detector's logit, and the logs of
  the style-statistics distance and of G's (smoothed) test-time spread; with
  `palette_map`, a fourth: the palette's negative log-likelihood (`Palette`)."""
  p = jnp.clip(prob, 1e-4, 1.0 - 1e-4)
  f = [jnp.log(p / (1.0 - p)), jnp.log(style_map + 1e-4), jnp.log(spread_map + 1e-4)]
  return jnp.stack(f + ([] if palette_map is None else [palette_map]), axis=-1)


def tta_spread_map(y: jax.Array, alts: jax.Array) -> jax.Array:
  """G's per-pixel spread over y and its alternate views (channel mean, 5x5 smoothed):
  `TTAScorer`'s map."""
  views = [y] + jnp.split(alts, alts.shape[-1] // 3, axis=-1)
  return _smooth(jnp.stack(views).std(axis=0).mean(axis=-1))


@dataclasses.dataclass(eq=False)
class Palette:
  """The style domain's colours: a 3-D histogram of its real images' RGB values
  (`bins` per channel, lightly smoothed). Its map is each pixel's negative
  log-likelihood under it, averaged over a `window` x `window` neighbourhood: high
  where G paints colours the style never uses, as where G settles between two of a
  quantising style's levels (impure style in flat regions, which G's spread and the
  detector do not see: there G is sure of itself)."""
  log_p: np.ndarray            # [bins, bins, bins]
  window: int = 9

  BINS = 16

  @classmethod
  def fit(cls, style_images: np.ndarray, bins: int = BINS, window: int = 9) -> "Palette":
    """`style_images`: real images of the style domain, float [-1, 1], [..., 3]."""
    from scipy import ndimage
    cols = (np.asarray(style_images, np.float32).reshape(-1, 3) + 1.0) / 2.0
    hist, _ = np.histogramdd(cols, bins=(bins,) * 3, range=((0.0, 1.0),) * 3)
    hist = ndimage.gaussian_filter(hist, 0.5) + 1e-7 * hist.sum()
    return cls(np.log(hist / hist.sum()).astype(np.float32), window)

  def map(self, y: jax.Array) -> jax.Array:
    """[N, H, W]: the windowed negative log-likelihood of y's colours ([N, H, W, 3])."""
    bins = self.log_p.shape[0]
    i = jnp.clip(jnp.floor((y + 1.0) / 2.0 * bins).astype(jnp.int32), 0, bins - 1)
    nll = -jnp.asarray(self.log_p)[i[..., 0], i[..., 1], i[..., 2]]
    r = self.window // 2
    # the mean over the window's pixels inside the image (separable sums; counts by hand)
    count = lambda n: (jnp.minimum(jnp.arange(n) + r, n - 1) - jnp.maximum(jnp.arange(n) - r, 0) + 1)
    total = jax.lax.reduce_window(nll, 0.0, jax.lax.add, (1, self.window, 1), (1, 1, 1), "SAME")
    total = jax.lax.reduce_window(total, 0.0, jax.lax.add, (1, 1, self.window), (1, 1, 1), "SAME")
    return total / (count(nll.shape[1])[:, None] * count(nll.shape[2])[None, :]).astype(nll.dtype)

  def to_json(self) -> dict[str, Any]:
    return {"log_p": np.round(self.log_p, 4).ravel().tolist(), "bins": int(self.log_p.shape[0]),
            "window": self.window}

  @classmethod
  def from_json(cls, data: dict[str, Any]) -> "Palette":
    b = int(data["bins"])
    return cls(np.asarray(data["log_p"], np.float32).reshape(b, b, b), int(data["window"]))


@dataclasses.dataclass(eq=False)   # hashed by identity: it is a static part of the correction path
class Fusion:
  """The detector's map fused with two label-free maps that see what it misses, by a
  logistic regression fitted on the reference split's pixel truth (stacking on photos
  G never trained on, as the test photos are):

    map   = sigmoid(w . [logit(detector's probability), log(style-statistics distance),
                         log(G's test-time spread)] + b)
    score = the `quantile` of the map over the image (1 - the truth's area cut: the
            image label is "more than the area cut fails", so the score is the
            probability reached by the area-cut-th most suspect pixels).

  The detector learns from G's errors on the train photos, where G is nearly right; the
  style statistics see impure style on new photos, G's spread sees where G is unsure.

  With a `palette` (and its `palette_fit`: the weight and bias of a logistic model of the
  failure on the palette's map alone), the map is the larger of the two models'
  probabilities: a pixel fails if either finds it. G's own failures on new photos are
  mostly colours between the style's levels in flat regions, where the detector and G's
  spread are lowest; in a linear model they outvote the palette there."""
  weights: tuple[float, float, float]
  bias: float
  quantile: float
  style: "StyleStatisticsScorer"
  notes: dict = dataclasses.field(default_factory=dict)   # how it was fitted (for the report)
  palette: Palette | None = None
  palette_fit: tuple[float, float] | None = None

  def __call__(self, prob: jax.Array, y: jax.Array, x: jax.Array, alts: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.from_features(fusion_features(prob, self.style._fn(y, x)[1], tta_spread_map(y, alts),
                                              None if self.palette_fit is None else self.palette.map(y)))

  def from_features(self, f: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(score [N], map [N, H, W]) from `fusion_features` [N, H, W, 3 or 4]."""
    amap = jax.nn.sigmoid(f[..., :3] @ jnp.asarray(self.weights, jnp.float32) + self.bias)
    if self.palette_fit is not None:
      amap = jnp.maximum(amap, jax.nn.sigmoid(self.palette_fit[0] * f[..., 3] + self.palette_fit[1]))
    return metrics.row_quantile(amap.reshape(amap.shape[0], -1), self.quantile), amap

  def to_json(self) -> dict[str, Any]:
    out = {"features": list(FUSION_FEATURES), "weights": list(self.weights), "bias": self.bias,
           "quantile": self.quantile, "style_mean": self.style.stats["mean"].tolist(),
           "style_std": self.style.stats["std"].tolist()}
    if self.palette_fit is not None:
      out.update(palette_fit=list(self.palette_fit), palette=self.palette.to_json())
    return out

  @classmethod
  def from_json(cls, data: dict[str, Any], style: "StyleStatisticsScorer") -> "Fusion":
    """`style`: a style-statistics scorer with the run's discriminator (its statistics
    come from the file). A file without `palette_fit` (fitted before the palette): the
    linear model alone."""
    style.stats = {"mean": np.asarray(data["style_mean"], np.float32), "std": np.asarray(data["style_std"], np.float32)}
    style._jit = jax.jit(style._fn)
    fit = data.get("palette_fit")
    return cls(tuple(float(w) for w in data["weights"]), float(data["bias"]), float(data["quantile"]), style,
               palette=None if fit is None else Palette.from_json(data["palette"]),
               palette_fit=None if fit is None else (float(fit[0]), float(fit[1])))


def fit_fusion(features: Sequence[np.ndarray], masks: Sequence[np.ndarray], style: "StyleStatisticsScorer",
               quantile: float, image_weights: Sequence[float] | None = None, stride: int = 4, ridge: float = 1e-3,
               iterations: int = 50) -> Fusion:
  """A `Fusion` by `fit_logistic` of the failure masks on the `fusion_features` ([H, W, 3]
  per image; of a fourth, the palette's, only the first three)."""
  weights, bias = fit_logistic([f[..., :3] for f in features], masks, image_weights, stride, ridge, iterations)
  return Fusion(tuple(float(v) for v in weights), bias, float(quantile), style)


def fit_logistic(features: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                 image_weights: Sequence[float] | None = None, stride: int = 4, ridge: float = 1e-3,
                 iterations: int = 50) -> tuple[np.ndarray, float]:
  """(weights [K], bias) of a ridge-regularised logistic regression (Newton's method) of
  the failure masks ([H, W] per image) on per-pixel features ([H, W, K] per image), every
  `stride`-th pixel of each image in both directions, each pixel weighted by its image's
  `image_weights`; the weights are in the features' own units."""
  k = np.asarray(features[0]).shape[-1]
  X = np.concatenate([np.asarray(f, np.float64)[::stride, ::stride].reshape(-1, k) for f in features])
  t = np.concatenate([np.asarray(m)[::stride, ::stride].ravel() for m in masks]).astype(np.float64)
  if not (t.any() and (~t.astype(bool)).any()):
    raise ValueError("fitting the fusion needs failing and clean pixels in the reference pool")
  weights = np.ones(len(features)) if image_weights is None else np.asarray(image_weights, np.float64)
  sw = np.concatenate([np.full(np.asarray(m)[::stride, ::stride].size, wi) for m, wi in zip(masks, weights)])
  sw = sw / sw.mean()
  mean, scale = X.mean(0), X.std(0) + 1e-6
  Z = np.concatenate([(X - mean) / scale, np.ones((len(X), 1))], axis=1)
  w = np.zeros(k + 1)
  for _ in range(iterations):
    p = 1.0 / (1.0 + np.exp(-(Z @ w)))
    grad = Z.T @ (sw * (p - t)) / len(t) + ridge * w
    hess = (Z * (sw * p * (1.0 - p))[:, None]).T @ Z / len(t) + ridge * np.eye(k + 1)
    step = np.linalg.solve(hess, grad)
    w -= step
    if np.abs(step).max() < 1e-8:
      break
  weights = w[:k] / scale   # back to the features' own units
  return weights, float(w[k] - (weights * mean).sum())


class FeatureDistanceScorer(Scorer):
  """Mahalanobis distance of D's first two feature layers to the clean outputs' statistics
  (one Gaussian shared by every location, so it scores crops and whole photos alike)."""
  name = "feature_distance"

  def __init__(self, discriminator: Any, d_params: Any, conditional: bool = False,
               stats: dict[str, np.ndarray] | None = None):
    self.discriminator, self.d_params, self.conditional = discriminator, d_params, conditional
    self.stats = stats
    super().__init__()

  def _features(self, y, x):
    _, feats = self.discriminator.apply({"params": self.d_params}, _d_input(y, x, self.conditional))
    f0, f1 = feats[0], feats[1]
    n, h, w, c = f0.shape
    f0 = f0.reshape(n, f1.shape[1], h // f1.shape[1], f1.shape[2], w // f1.shape[2], c).mean((2, 4))
    return jnp.concatenate([f0, f1], axis=-1)

  def fit(self, clean_images: np.ndarray, content: np.ndarray, max_dims: int = 96, reg: float = 0.01,
          seed: int = 0) -> None:
    feats = _batched(jax.jit(self._features), np.asarray(clean_images, np.float32),
                     np.asarray(content, np.float32))
    c = feats.shape[-1]
    dims = np.sort(np.random.default_rng(seed).choice(c, min(c, max_dims), replace=False))
    f = feats[..., dims].reshape(-1, len(dims)).astype(np.float64)
    mean = f.mean(0)
    cov = np.cov(f, rowvar=False) + reg * np.eye(len(dims))
    self.stats = {"mean": mean.astype(np.float32), "inv_cov": np.linalg.inv(cov).astype(np.float32),
                  "dims": dims.astype(np.int32)}
    self._jit = jax.jit(self._fn)

  def _fn(self, y, x):
    if self.stats is None:
      raise RuntimeError("FeatureDistanceScorer.fit must run before scoring")
    f = self._features(y, x)[..., self.stats["dims"]]
    d = f - self.stats["mean"]
    dist = jnp.sqrt(jnp.maximum(jnp.einsum("nhwc,cd,nhwd->nhw", d, self.stats["inv_cov"], d), 0.0))
    amap = jax.image.resize(dist, y.shape[:3], "linear")
    return dist.reshape(dist.shape[0], -1).max(axis=-1), amap


class StyleStatisticsScorer(Scorer):
  """Impure style: per-patch mean and spread of D's first features, as z-scores against
  the same statistics of the style domain's real images (the seed's style statistics)."""
  name = "style_statistics"

  def __init__(self, discriminator: Any, d_params: Any, conditional: bool = False, patch: int = 8):
    self.discriminator, self.d_params, self.conditional, self.patch = discriminator, d_params, conditional, patch
    self.stats: dict[str, np.ndarray] | None = None
    self.palette: Palette | None = None
    super().__init__()

  def _patch_stats(self, y, x):
    _, feats = self.discriminator.apply({"params": self.d_params}, _d_input(y, x, self.conditional))
    f = feats[0]
    # the patch x patch box sum as two 1-D sums (rows, then columns): 4x fewer adds
    box = lambda a, window: jax.lax.reduce_window(a, 0.0, jax.lax.add, window, (1, 1, 1, 1), "SAME")
    pool = lambda a: box(box(a, (1, self.patch, 1, 1)), (1, 1, self.patch, 1)) / self.patch ** 2
    mean = pool(f)
    return jnp.concatenate([mean, jnp.sqrt(jnp.maximum(pool(f * f) - mean ** 2, 1e-8))], axis=-1)

  def fit(self, style_images: np.ndarray, content: np.ndarray) -> None:
    """`style_images`: real images of the style domain (with their inputs, for a paired D)."""
    st = _batched(jax.jit(self._patch_stats), np.asarray(style_images, np.float32),
                  np.asarray(content, np.float32))
    st = st.reshape(-1, st.shape[-1]).astype(np.float64)
    self.stats = {"mean": st.mean(0).astype(np.float32), "std": (st.std(0) + 1e-3).astype(np.float32)}
    self.palette = Palette.fit(style_images)   # the same images' colours, for `Fusion`
    self._jit = jax.jit(self._fn)

  def _fn(self, y, x):
    if self.stats is None:
      raise RuntimeError("StyleStatisticsScorer.fit must run before scoring")
    z = (self._patch_stats(y, x) - self.stats["mean"]) / self.stats["std"]
    dist = jnp.sqrt(jnp.mean(z * z, axis=-1))
    amap = jax.image.resize(dist, y.shape[:3], "linear")
    return amap.mean(axis=(1, 2)), amap


class PaletteScorer(Scorer):
  """Impure style by colour: the style `Palette`'s map (each pixel's windowed negative
  log-likelihood under the style domain's colours), its mean as the image score."""
  name = "palette"

  def __init__(self, palette: Palette):
    self.palette = palette
    super().__init__()

  def _fn(self, y, x):
    amap = self.palette.map(y)
    return amap.mean(axis=(1, 2)), amap


def _smooth(amap: jax.Array, size: int = 5) -> jax.Array:
  return jax.lax.reduce_window(amap, 0.0, jax.lax.add, (1, size, size), (1, 1, 1), "SAME") / size ** 2


# G's alternate view of x: one generator pass. G on x turned half a turn (mirrored and
# flipped) and turned back disagrees with G(x) where G is unsure of itself: its spread
# around G(x) finds G's real failures as well as the spread over three views (mirrored,
# flipped and (3, 5)-shifted) did, at a third of the cost (`scripts/views_probe.py`;
# docs/performance.md).
ALTERNATE_VIEW = "half_turn"   # stamped in a run's calibration: its detector saw this view
CONTEXT_CHANNELS = 6           # [x, G's alternate view of x]


def tta_alternates(g, x: jax.Array) -> jax.Array:
  """[N, H, W, 3]: G on x turned by 180 degrees (mirrored and flipped), turned back.
  A detector with `detect.sees_tta` sees its spread around the output it judges."""
  return g(x[:, ::-1, ::-1])[:, ::-1, ::-1]


def tta_views(g, x: jax.Array, gx: jax.Array | None = None, alts: jax.Array | None = None) -> list[jax.Array]:
  """G on x and on x turned half a turn (`tta_alternates`), mapped back; their mean is
  `correct.tta_average`. `gx`: G(x), `alts`: the alternate view, where the caller has
  them: the correction path has both, so its TTA average costs no generator pass. (The
  mirrored and flipped views as well move the average's PSNR to S(x) by 0.07 dB on the
  test pool's real outputs, for two more passes: docs/performance.md.)"""
  alts = tta_alternates(g, x) if alts is None else alts
  return [g(x) if gx is None else gx, alts]


class TTAScorer(Scorer):
  """Test-time-augmentation disagreement: the per-pixel spread of the output and G on
  the input turned half a turn (`tta_alternates`). Needs G."""
  name = "tta_variance"

  def __init__(self, generator: Any, g_params: Any):
    self.generator, self.g_params = generator, g_params
    super().__init__()

  def _fn(self, y, x):
    g = lambda v: self.generator.apply({"params": self.g_params}, v)
    amap = tta_spread_map(y, alternates(g, x))
    return amap.mean(axis=(1, 2)), amap


class DisagreementScorer(Scorer):
  """|G'(x) - y|: the output against another generator's (the raw weights against the
  EMA ones: `raw_vs_ema`; the backward generator's reconstruction: `cycle`, where y is
  mapped back and compared with x)."""

  def __init__(self, name: str, generator: Any, params: Any, cycle: bool = False):
    self.name, self.generator, self.params, self.cycle = name, generator, params, cycle
    super().__init__()

  def _fn(self, y, x):
    g = lambda v: self.generator.apply({"params": self.params}, v)
    x = photo(x)
    diff = jnp.abs(g(y) - x) if self.cycle else jnp.abs(g(x) - y)
    amap = _smooth(diff.mean(axis=-1))
    return amap.mean(axis=(1, 2)), amap


# -- synthetic test sets -------------------------------------------------------------

def corrupt_batch(clean: jax.Array, content: jax.Array, other: jax.Array, key: jax.Array,
                  types: Sequence[int], p_anomalous: float = 0.5) -> dict[str, jax.Array]:
  """Applies a random artifact (among `types`) to a fraction of the images.

  Returns images, masks [N,H,W], is_anomalous [N] (float) and kind [N]; an image whose
  artifact changed no pixel visibly is labelled clean.
  """
  n = clean.shape[0]
  k_which, k_art = jax.random.split(key)
  keys = jax.random.split(k_art, n)
  out, mask, kind = jax.vmap(lambda x, k, c, o: artifacts.random_artifact(x, k, tuple(types), c, o))(
      clean, keys, content, other)
  chosen = jax.random.uniform(k_which, (n,)) < p_anomalous
  chosen = chosen & (mask.sum(axis=(1, 2)) > 0)
  images = jnp.where(chosen[:, None, None, None], out, clean)
  return {"images": images, "masks": mask * chosen[:, None, None],
          "is_anomalous": chosen.astype(jnp.float32), "kind": kind}


def make_test_set(clean: np.ndarray, content: np.ndarray, types: Sequence[int], seed: int,
                  copies: int = 1) -> dict[str, np.ndarray]:
  """Every clean image once as is, plus `copies` corrupted versions (fixed keys).

  Each row also carries its clean original ("clean") and the generator input ("content").
  """
  fn = jax.jit(corrupt_all(tuple(types)))
  parts = [{"images": clean, "masks": np.zeros(clean.shape[:3], np.float32),
            "is_anomalous": np.zeros(len(clean), np.float32), "kind": np.full(len(clean), -1, np.int32),
            "clean": clean, "content": content}]
  for c in range(copies):
    other = np.roll(clean, 1 + c, axis=0)
    out = jax.device_get(fn(clean, content, other, jax.random.key(seed * 1000 + c)))
    keep = np.asarray(out["is_anomalous"]) > 0
    part = {k: np.asarray(v)[keep] for k, v in out.items()}
    part.update(clean=clean[keep], content=content[keep])
    parts.append(part)
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def corrupt_all(types: tuple[int, ...]):
  """(clean, content, other, key) -> `corrupt_batch` with every image corrupted."""
  def fn(clean, content, other, key):
    return corrupt_batch(clean, content, other, key, types, p_anomalous=1.0)
  return fn


# -- evaluation -------------------------------------------------------------------------

def evaluate_scorer(scores: Scores, test: dict[str, np.ndarray]) -> dict[str, Any]:
  """Image AUROC/AP, pixel AUROC, AUPRO (30% FPR), overall and per artifact type."""
  labels = test["is_anomalous"] > 0
  masks = test["masks"] > 0
  out: dict[str, Any] = {
      "image_auroc": metrics.auroc(scores.score, labels),
      "image_ap": metrics.average_precision(scores.score, labels),
      "pixel_auroc": metrics.auroc(scores.map, masks) if masks.any() else float("nan"),
      "aupro": metrics.aupro(scores.map, masks) if masks.any() else float("nan"),
  }
  if scores.flagged is not None:
    out["fpr"] = float(np.mean(scores.flagged[~labels]))
    out["tpr"] = float(np.mean(scores.flagged[labels]))
  per_type = {}
  clean = ~labels
  for t in sorted(set(test["kind"][labels].tolist())):
    sel = clean | (labels & (test["kind"] == t))
    sub = masks[sel]
    per_type[artifacts.names()[t]] = {
        "image_auroc": metrics.auroc(scores.score[sel], labels[sel]),
        "aupro": metrics.aupro(scores.map[sel], sub) if sub.any() else float("nan"),
    }
  out["per_type"] = per_type
  return out


def save_calibration(path: str, scorers: Sequence[Scorer], fpr: float, stages: dict[str, int] | None = None
                     ) -> None:
  """The thresholds, and `stages`: the steps of the networks they were calibrated for
  (loading a run refuses other checkpoints: `inference.load_trained`)."""
  data = {"fpr": fpr, "thresholds": {s.name: s.threshold for s in scorers},
          "screen_thresholds": {s.name: s.screen_threshold for s in scorers
                                if s.screen_threshold is not None},
          "spread_weights": {s.name: s.spread_weight for s in scorers if isinstance(s, DetectorScorer)},
          "fusions": {s.name: s.fusion.to_json() for s in scorers
                      if isinstance(s, DetectorScorer) and s.fusion is not None}}
  if stages is not None:
    data["stages"] = stages
  files.write_json(path, data | {"alternate_view": ALTERNATE_VIEW})


def check_alternate_view(path: str, data: dict | None = None) -> None:
  """Refuses a run whose detector (calibrated in `path`, where it exists; `data`: the
  file, where the caller has read it) saw other alternate views of G than this build
  computes: its spread input would change meaning."""
  if data is None:
    if not files.exists(path):
      return
    data = files.read_json(path)
  view = data.get("alternate_view", "mirrored, flipped and shifted")
  if view != ALTERNATE_VIEW:
    raise CheckpointError(f"{path}: this run's detector saw G's {view} views of each photo (an older build), "
                          f"this build computes one ({ALTERNATE_VIEW}): run the main job on a new --workdir")


def load_calibration(path: str, scorers: Sequence[Scorer], style: "StyleStatisticsScorer | None" = None) -> float:
  """Thresholds (and a detector's fusion: `style` is a style-statistics scorer with the
  run's discriminator, needed where the file has one) from `save_calibration`'s file."""
  data = files.read_json(path)
  if any(isinstance(s, DetectorScorer) and s.sees_tta for s in scorers):
    check_alternate_view(path, data)
  for s in scorers:
    if isinstance(s, DetectorScorer):  # absent: calibrated before the image score had the term
      s.spread_weight = float(data.get("spread_weights", {}).get(s.name, 0.0))
      fusion = data.get("fusions", {}).get(s.name)   # absent: the network's score
      if fusion is not None and style is None:
        raise ValueError(f"{path}: the detector's score is fused with style statistics: loading it needs the "
                         "run's discriminator")
      s.set_fusion(None if fusion is None else Fusion.from_json(fusion, style))
    s.threshold = data["thresholds"].get(s.name)
    s.screen_threshold = data.get("screen_thresholds", {}).get(s.name)  # absent: no screen
  return float(data["fpr"])
