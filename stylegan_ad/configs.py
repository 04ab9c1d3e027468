"""The default run configuration and its validation.

Experiment configs (`experiments/configs/*.py`) start from `default_config()` and
change values; `validate` rejects unknown keys, wrong types and impossible values
before anything is compiled, naming the key.
"""
from __future__ import annotations

import math
from typing import Any

import ml_collections

from stylegan_ad import artifacts, registry
from stylegan_ad.errors import ConfigError


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.source = "embedded:cartoon"
  c.data.crop_size = 128
  c.data.train_crop = 0           # the GAN's training crops (0: data.crop_size); smaller ones are cheaper steps
  c.data.data_dir = ""            # default: $STYLEGAN_AD_DATA or ~/.stylegan_ad/data
  c.data.batch_size = 1           # global, over all devices and processes
  c.data.symmetries = 2           # augmentation: 2 = horizontal flips, 8 = flips and quarter turns
  c.data.unpaired_split = "photos"  # unpaired mode's domains: "photos" (A and B from different photos) |
                                  # "shuffled" (every train photo on both sides, x and S(x) drawn apart:
                                  # CycleGAN's protocol for paired sets such as Cityscapes; needs targets)

  c.model = ml_collections.ConfigDict()
  c.model.generator = "resnet"    # a name in registry.GENERATORS: resnet | unet | residual_unet | reference_unet
  c.model.ngf = 64
  c.model.n_blocks = 9            # resnet: residual blocks
  c.model.depth = 5               # unet, residual_unet: levels (downsamplings)
  c.model.upsample = "resize_conv"  # resize_conv | subpixel | transpose
  c.model.input_blur = 0.0        # residual_unet: sigma (px) of a fixed Gaussian G sees its input through
  c.model.discriminator = "patchgan"  # a name in registry.DISCRIMINATORS: "patchgan" or "convnet"
  c.model.ndf = 64
  c.model.d_layers = 3            # 3 -> 70x70 PatchGAN
  c.model.d_scales = 1
  c.model.spectral_norm = False
  c.model.d_highpass = 0          # > 0: D sees the image minus its k x k local mean (texture and edges only)
  c.model.dtype = "float32"       # compute dtype of every network in training: float32 | bfloat16 (for GPU/TPU;
                                  # parameters and optimizer state stay float32)
  c.model.imported = ""           # a generator trained elsewhere (torch:PATH.pth) whose weights the run holds:
                                  # no GAN stage (experiments.fit_generator); its run loads as step 0

  c.train = ml_collections.ConfigDict()
  c.train.mode = "unpaired"       # unpaired (CycleGAN) | paired (pix2pix)
  c.train.num_steps = 1000
  c.train.lr = 2e-4
  c.train.d_lr_scale = 1.0        # D's learning rate over G's (the two time-scale rule: 4 = D learns 4x as fast)
  c.train.d_warmup = 0            # first steps in which only D learns, each domain's own images its fakes
                                  # (a D that tells photo from style before G's first step); G's schedule
                                  # spans the remaining steps
  c.train.b1 = 0.5
  c.train.b2 = 0.999
  c.train.decay_start = 0.5       # fraction of steps after which lr decays linearly to 0
  c.train.pool_size = 50
  c.train.ema_decay = 0.999
  c.train.max_bad_steps = 5       # consecutive non-finite steps before the run stops
  c.train.snapshots = (0.1, 0.25, 0.5)  # fractions of the run whose EMA generator is kept
                                  # (gan/snapshots/): the real-failure benchmark's under-trained G

  c.losses = ml_collections.ConfigDict()
  c.losses.adversarial = "lsgan"  # lsgan | nsgan | hinge
  c.losses.generator = ml_collections.ConfigDict({"adversarial": 1.0, "cycle": 10.0, "identity": 5.0})
  c.losses.r1 = 0.0
  c.losses.edge_promoting = False  # unpaired: D_b also learns that style images with blurred edges are fake
  c.losses.restyle_noise = 0.0    # the `restyle` term's input: line-free style images plus Gaussian
                                  # noise of this standard deviation at most (each image its own, in [-1, 1] units)
  c.losses.restyle_blur = 0.0     # ... blurred first by a Gaussian of this many pixels (0: not blurred)
  c.losses.restyle_texture = 0.0  # ... plus a photo's texture (a domain-A photo of the batch minus its
                                  # 2 px Gaussian blur) scaled by a draw up to this per image (0: none)
  c.losses.restyle_fill = 0       # ... its strokes filled by this many rounds of 3x3 means from the
                                  # unlined pixels (a ramp centred where the line was), not by the closing (0)
  c.losses.diff_augment = ""      # DiffAugment ops on every image D sees (real and fake, D's and G's
                                  # step): comma-separated of translation, cutout, color; "" for none

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 500
  c.checkpoint.keep = 3

  c.log = ml_collections.ConfigDict()
  c.log.every = 50
  c.log.sample_every = 500

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 8

  c.detect = ml_collections.ConfigDict()
  c.detect.arch = "unet"          # a name in registry.DETECTORS
  c.detect.artifact_types = artifacts.names()  # the synthetic artifact types (registry.ARTIFACTS) it trains on:
                                  # its type head has a class per name, in this order
  c.detect.features = 16          # detector U-Net width
  c.detect.depth = 3
  c.detect.steps = 1500
  c.detect.views = 8              # test-time augmentation: flips/quarter turns averaged (1, 2, 4 or 8)
  c.detect.screen_rate = 0.3      # 1-view screen before the full score: the fraction of clean
                                  # calibration outputs it passes on (0 = every image gets all views)
  c.detect.batch_size = 16
  c.detect.lr = 1e-3
  c.detect.fpr = 0.01             # calibration target false-positive rate
  c.detect.calibration_fraction = 0.25  # of the clean train outputs, held out for calibration
  c.detect.sees_input = True      # the detector judges [x, G(x)], not G(x) alone
  c.detect.sees_tta = True        # ... and the spread of G(x) and G on x turned half a turn
  c.detect.spread_weight = 2.0    # image score + this x log(G's mean spread over the image); with sees_tta
  c.detect.fuse = True            # where a reference split with targets exists: the detector's map fused
                                  # with the style-statistics and G-spread maps (detect.Fusion; needs sees_tta)
  c.detect.fuse_palette = True    # ... and, as a second model (the larger probability wins), with the
                                  # style's palette likelihood (detect.Palette: colours between its levels)
  c.detect.fuse_synthetic_auroc = 0.99  # ... keeping this image AUROC on synthetic artifacts of the reference
                                  # photo (one photo: a margin over the 0.97 wanted on the test photos)
  c.detect.heldout_steps = 600    # detector steps per held-out-type run in the benchmark

  c.failures = ml_collections.ConfigDict()   # G's real failures (failures.py)
  c.failures.max_side = 256       # whole photos downscaled to this longer side
  c.failures.quantile = 99.0      # pixel threshold: this percentile of the final G's error on the reference photo
  c.failures.area_factor = 2.0    # image cut: this times the final G's own failing fraction there
  c.failures.min_region = 16      # failing regions smaller than this (pixels) are dropped
  c.failures.crops_per_image = 32  # real-failure crops per train-pool image, for the detector
  c.failures.bootstrap = 200      # resamples (by source photo) for the 95% intervals

  c.correct = ml_collections.ConfigDict()
  c.correct.arch = "unet"         # a name in registry.RESTORERS
  c.correct.features = 16         # restorer U-Net width
  c.correct.depth = 3
  c.correct.steps = 1500
  c.correct.batch_size = 16
  c.correct.lr = 1e-3
  c.correct.dilate = 5            # max-pool size applied to the detector map
  c.correct.attempts = 3          # regeneration attempts after a failed repair

  c.distributed = ml_collections.ConfigDict()
  c.distributed.coordinator = ""  # host:port of process 0; empty for a single process
  c.distributed.num_processes = 1
  c.distributed.process_id = 0
  return c


def _check_schema(config: Any, schema: Any, prefix: str) -> None:
  for key in config.keys():
    name = f"{prefix}{key}"
    value = config[key]
    if prefix == "losses.generator.":
      if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"config key {name}: loss weight must be a number, got {value!r}")
      continue
    if key not in schema:
      raise ConfigError(f"unknown config key {name!r}")
    expected = schema[key]
    if isinstance(expected, ml_collections.ConfigDict):
      if not isinstance(value, (ml_collections.ConfigDict, dict)):
        raise ConfigError(f"config key {name}: expected a group, got {value!r}")
      _check_schema(value, expected, name + ".")
      continue
    ok = (isinstance(value, type(expected)) or isinstance(expected, tuple) and isinstance(value, list) and not (isinstance(value, bool) and not isinstance(expected, bool))
          or isinstance(expected, float) and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
      raise ConfigError(f"config key {name}: expected {type(expected).__name__}, got {value!r}")


def _choice(name: str, value: Any, options) -> None:
  if value not in options:
    raise ConfigError(f"config key {name}: must be one of {list(options)}, got {value!r}")


def _positive(config, *names: str) -> None:
  for name in names:
    value = config
    for part in name.split("."):
      value = value[part]
    if not (value > 0 and math.isfinite(value)):   # (a NaN fails `> 0`)
      raise ConfigError(f"config key {name}: must be a finite number > 0, got {value!r}")


def train_crop(config: ml_collections.ConfigDict) -> int:
  """The side of the GAN's training crops: `data.train_crop`, or `data.crop_size` where 0."""
  return int(config.data.get("train_crop", 0) or config.data.crop_size)


def patch_sizes(crop: int, n_layers: int, num_scales: int, discriminator: str = "patchgan") -> list[int]:
  """The discriminator's patch-logit map side at each scale for `crop` x `crop` inputs
  (models/discriminator.py: the PatchGAN's 4x4 convs, stride 2 with padding 1, then two of
  stride 1; the convnet's 3x3 convs of stride 2 with padding 1, then sizes kept; each further
  scale average-pools by 2 first)."""
  out, n = [], crop
  for s in range(num_scales):
    if s:
      n = (n - 1) // 2 + 1
    m = n
    for _ in range(n_layers):
      m = (m - 2) // 2 + 1 if discriminator == "patchgan" else (m - 1) // 2 + 1
    out.append(m - 2 if discriminator == "patchgan" else m)
  return out


def validate(config: ml_collections.ConfigDict, *, device_count: int | None = None,
             image_size: int | None = None) -> None:
  """Raises ConfigError naming the key for an unknown key, wrong type or impossible value."""
  from stylegan_ad import losses
  from stylegan_ad.models import layers
  _check_schema(config, default_config(), "")
  _positive(config, "data.crop_size", "data.batch_size", "model.ngf", "model.ndf", "model.d_layers",
            "model.d_scales", "train.num_steps", "train.lr", "train.d_lr_scale", "checkpoint.every", "checkpoint.keep",
            "log.every", "log.sample_every", "eval.batch_size", "distributed.num_processes",
            "train.max_bad_steps", "detect.features", "detect.depth", "detect.steps",
            "detect.batch_size", "detect.lr", "correct.features", "correct.depth", "correct.steps",
            "correct.batch_size", "correct.lr", "correct.dilate", "failures.max_side", "failures.area_factor",
            "failures.min_region", "failures.crops_per_image", "failures.bootstrap")
  if config.seed < 0 or config.seed >= 2 ** 32:
    raise ConfigError(f"config key seed: must be in [0, 2**32), got {config.seed}")
  for key in ("train.b1", "train.b2"):
    value = config.train[key.split(".")[1]]
    if not 0.0 <= value < 1.0:   # (a NaN fails too)
      raise ConfigError(f"config key {key}: Adam's decay must be in [0, 1), got {value!r}")
  if not 0 <= config.train.d_warmup < config.train.num_steps:
    raise ConfigError(f"config key train.d_warmup: must be >= 0 and below train.num_steps "
                      f"({config.train.num_steps}), got {config.train.d_warmup}")
  for key in ("correct.attempts", "model.d_highpass"):
    group, name = key.split(".")
    if config[group][name] < 0:
      raise ConfigError(f"config key {key}: must be >= 0, got {config[group][name]}")
  for key in ("r1", "restyle_noise", "restyle_blur", "restyle_texture"):
    value = config.losses.get(key, 0.0)
    if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
      raise ConfigError(f"config key losses.{key}: must be a finite number >= 0, got {value!r}")
  fill = config.losses.get("restyle_fill", 0)
  if not fill >= 0:
    raise ConfigError(f"config key losses.restyle_fill: must be an integer >= 0, got {fill!r}")
  losses.diff_augment_policy(config.losses.get("diff_augment", ""))
  crop = train_crop(config)
  if not 0 <= config.data.train_crop <= config.data.crop_size:
    raise ConfigError(f"config key data.train_crop: must be in [0, data.crop_size={config.data.crop_size}] "
                      f"(0: data.crop_size), got {config.data.train_crop}")
  multiple = 4 if config.model.generator == "resnet" or config.model.imported else max(4, 2 ** config.model.depth)
  if crop % multiple:
    raise ConfigError(f"config key data.train_crop: must be a multiple of {multiple} for this generator, got {crop}")
  patches = patch_sizes(crop, config.model.d_layers, config.model.d_scales, config.model.discriminator)
  if min(patches) < 1:
    raise ConfigError(f"config key model.d_layers: a {config.model.d_layers}-layer discriminator at "
                      f"{config.model.d_scales} scale(s) needs crops larger than "
                      f"{'data.train_crop' if config.data.train_crop else 'data.crop_size'}={crop} "
                      f"(its patch maps would be {patches} pixels wide)")
  if not 0.0 < config.failures.quantile < 100.0:
    raise ConfigError(f"config key failures.quantile: a percentile in (0, 100), got {config.failures.quantile}")
  if config.detect.views not in (1, 2, 4, 8):
    raise ConfigError(f"config key detect.views: must be 1, 2, 4 or 8, got {config.detect.views}")
  if not 0.0 <= config.detect.screen_rate < 1.0:
    raise ConfigError(f"config key detect.screen_rate: must be in [0, 1), got {config.detect.screen_rate}")
  if not config.detect.spread_weight >= 0.0:
    raise ConfigError(f"config key detect.spread_weight: must be >= 0, got {config.detect.spread_weight}")
  if not 0.0 <= config.detect.fuse_synthetic_auroc <= 1.0:
    raise ConfigError("config key detect.fuse_synthetic_auroc: must be in [0, 1], got "
                      f"{config.detect.fuse_synthetic_auroc}")
  if not 0.0 < config.detect.fpr < 1.0:
    raise ConfigError(f"config key detect.fpr: must be in (0, 1), got {config.detect.fpr}")
  if not 0.0 < config.detect.calibration_fraction < 1.0:
    raise ConfigError("config key detect.calibration_fraction: must be in (0, 1), got "
                      f"{config.detect.calibration_fraction}")
  for key in ("detect.batch_size", "correct.batch_size"):
    group, name = key.split(".")
    if device_count is not None and config[group][name] % device_count:
      raise ConfigError(f"config key {key}: {config[group][name]} is not divisible by the "
                        f"{device_count} devices")
  if not 1 <= config.model.depth <= 8:
    raise ConfigError(f"config key model.depth: must be in [1, 8], got {config.model.depth}")
  blur = config.model.get("input_blur", 0.0)
  if not (isinstance(blur, (int, float)) and blur >= 0 and math.isfinite(blur)):
    raise ConfigError(f"config key model.input_blur: must be a finite number >= 0, got {blur!r}")
  if blur and config.model.generator != "residual_unet":
    raise ConfigError(f"config key model.input_blur: only the residual_unet generator takes it, "
                      f"not {config.model.generator!r}")
  if config.model.n_blocks < 0:
    raise ConfigError(f"config key model.n_blocks: must be >= 0, got {config.model.n_blocks}")
  import stylegan_ad.models  # noqa: F401  (registers every network)
  for names, value in ((registry.GENERATORS, config.model.generator),
                       (registry.DISCRIMINATORS, config.model.discriminator),
                       (registry.DETECTORS, config.detect.arch), (registry.RESTORERS, config.correct.arch)):
    names[value]   # one line naming the key and the registered names
  types = list(config.detect.artifact_types)
  artifacts.type_ids(types)
  if not types or len(set(types)) < len(types):
    raise ConfigError(f"config key detect.artifact_types: must name each type once, got {types}")
  _choice("model.upsample", config.model.upsample, layers.UPSAMPLE_MODES)
  _choice("model.dtype", config.model.dtype, layers.COMPUTE_DTYPES)
  _choice("train.mode", config.train.mode, ("unpaired", "paired"))
  _choice("data.unpaired_split", config.data.get("unpaired_split", "photos"), ("photos", "shuffled"))
  _choice("losses.adversarial", config.losses.adversarial, tuple(losses.ADVERSARIAL))
  if not 0.0 <= config.train.ema_decay < 1.0:
    raise ConfigError(f"config key train.ema_decay: must be in [0, 1), got {config.train.ema_decay}")
  if not 0.0 <= config.train.decay_start <= 1.0:
    raise ConfigError(f"config key train.decay_start: must be in [0, 1], got {config.train.decay_start}")
  if not all(isinstance(f, (int, float)) and 0 < f < 1 for f in config.train.snapshots):
    raise ConfigError(f"config key train.snapshots: fractions in (0, 1), got {config.train.snapshots!r}")
  if config.train.pool_size < 0:
    raise ConfigError(f"config key train.pool_size: must be >= 0, got {config.train.pool_size}")
  if config.data.crop_size % 4:
    raise ConfigError(f"config key data.crop_size: must be divisible by 4, got {config.data.crop_size}")
  if config.model.generator != "resnet" and not config.model.imported and config.data.crop_size % 2 ** config.model.depth:
    raise ConfigError(f"config key data.crop_size: a {config.model.depth}-level U-Net needs a multiple of "
                      f"{2 ** config.model.depth}, got {config.data.crop_size}")
  if image_size is not None and config.data.crop_size > image_size:
    raise ConfigError(f"config key data.crop_size: {config.data.crop_size} is larger than the "
                      f"dataset's {image_size}x{image_size} images")
  if device_count is not None and config.data.batch_size % device_count:
    raise ConfigError(f"config key data.batch_size: {config.data.batch_size} is not divisible by "
                      f"the {device_count} devices")
  available = ({"rec", "idt", "features", "restyled", "backtranslated", "key"} if config.train.mode == "unpaired"
               else {"target", "features", "restyled", "key"})
  losses.check_weights(dict(config.losses.generator), available)
