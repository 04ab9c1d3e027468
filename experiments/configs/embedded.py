"""Main job on the embedded default data (cartoon style), sized for 2 CPU cores.

Launch:
  python -m experiments.run --config=experiments/configs/embedded.py --workdir=runs/embedded
Train the style GAN alone:
  python -m experiments.train_stylegan --config=experiments/configs/embedded.py --workdir=runs/gan
Arguments (`--config=experiments/configs/embedded.py:ARG`):
  "" (default) the CPU main job: 48x48 training crops in all 8 orientations, batches of 4, paired
               training (pix2pix: conditional PatchGAN, adversarial + 100 L1 + 1000 L2
               + 20 (1 - SSIM)) of a norm-free residual U-Net generator (two poolings)
               that runs on photos of any size;
  "unpaired"   CycleGAN training (two ResNet generators, cycle + identity) instead;
  "unpaired_lines"
               unpaired training for a style drawn with dark ink lines, from its style
               images alone: G learns to redraw the lines of style images that had them
               taken out (1000 x `restyle_l2`, the strokes filled by a ramp), and sees a
               photo through a 1 px Gaussian (`model.input_blur`), so a photo's fine
               texture, which the flat style images lack, does not reach it; 1000 steps of
               the residual U-Net, every train photo's S(x) in the style domain;
  "ink_wash"   the default job on the ink-wash style;
  "tiny"       seconds-long unpaired runs (ResNet generators) for the test suite.
"""
from stylegan_ad.configs import default_config


ARGS = ("", "unpaired", "unpaired_lines", "ink_wash", "tiny")


def get_config(arg: str | None = None):
  if (arg or "") not in ARGS:
    raise ValueError(f"unknown argument {arg!r} of embedded.py; known: {', '.join(repr(a) for a in ARGS)}")
  c = default_config()
  c.data.source = "embedded:ink_wash" if arg == "ink_wash" else "embedded:cartoon"
  c.data.crop_size = 64
  c.data.train_crop = 48  # G's training crops: 0.55x a 64 px step, the same test-crop figures (docs/generator_ablation.md)
  c.data.batch_size = 4   # more steps of fewer crops: better for G in the same time (docs/generator_ablation.md)
  c.data.symmetries = 8
  c.model.generator = "residual_unet"
  c.model.ngf = 32
  c.model.depth = 2       # a receptive field of ~40 px is ample for a ~11 px style operator
  c.model.ndf = 16
  c.train.mode = "paired"
  c.losses.generator = {"adversarial": 1.0, "l1": 100.0, "l2": 1000.0, "ssim": 20.0}
  c.train.num_steps = 2700
  c.train.lr = 1e-3
  c.train.decay_start = 0.5
  c.train.pool_size = 20
  c.train.ema_decay = 0.99
  c.checkpoint.every = 500
  c.log.every = 50
  c.log.sample_every = 500
  c.eval.batch_size = 16
  # one view: its fused score (detect.Fusion) is the same with 4 and needs no 1-view screen
  c.detect.features, c.detect.batch_size, c.detect.steps, c.detect.views = 16, 8, 1000, 1
  c.correct.features, c.correct.batch_size, c.correct.steps = 8, 8, 150
  # candidates: the restorer and the TTA average of G (on the test pool the detector scored
  # the TTA average lowest wherever a regeneration passed: the other two cost time, won none)
  c.correct.attempts = 1
  c.failures.bootstrap = 100
  if arg in ("unpaired", "tiny"):  # as before the residual U-Net (not yet reworked: README)
    c.train.mode = "unpaired"
    c.losses.generator = {"adversarial": 1.0, "cycle": 10.0, "identity": 5.0}
    c.model.generator, c.model.ngf, c.model.n_blocks = "resnet", 16, 3
    c.data.batch_size, c.data.symmetries, c.data.train_crop = 4, 2, 0
    c.train.num_steps, c.train.lr, c.train.decay_start = 3000, 2e-4, 0.7
  if arg == "unpaired_lines":  # docs/generator_ablation.md, 'A photo seen through a blur'
    c.train.mode, c.data.unpaired_split = "unpaired", "shuffled"
    c.data.train_crop = 0
    c.losses.generator = {"restyle_l2": 1000.0}
    c.losses.restyle_fill = 10
    c.model.input_blur = 1.0
    c.train.num_steps = 1000
  if arg == "tiny":
    c.model.ngf = 4
    c.model.n_blocks = 1
    c.model.ndf = 4
    c.model.d_layers = 2
    c.train.num_steps = 6
    c.train.pool_size = 4
    c.checkpoint.every = 3
    c.log.every = 2
    c.log.sample_every = 6
    c.detect.features, c.detect.depth, c.detect.steps, c.detect.batch_size = 4, 2, 4, 4
    c.detect.heldout_steps = 2
    c.correct.features, c.correct.depth, c.correct.steps, c.correct.batch_size = 4, 2, 4, 4
    c.correct.attempts = 2
    c.failures.max_side, c.failures.crops_per_image, c.failures.bootstrap = 96, 4, 20
  return c
