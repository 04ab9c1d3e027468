"""Main job on the embedded default data (cartoon style), sized for 2 CPU cores.

Launch:
  python -m experiments.run --config=experiments/configs/embedded.py --workdir=runs/embedded
Train the style GAN alone:
  python -m experiments.train_stylegan --config=experiments/configs/embedded.py --workdir=runs/gan
Arguments (`--config=experiments/configs/embedded.py:ARG`):
  "" (default) the CPU main job: 64x64 crops, a small ResNet generator;
  "tiny"       seconds-long runs for the test suite;
  "ink_wash"   the same job on the ink-wash style.
"""
from stylegan_ad.configs import default_config


def get_config(arg: str | None = None):
  c = default_config()
  c.data.source = "embedded:ink_wash" if arg == "ink_wash" else "embedded:cartoon"
  c.data.crop_size = 64
  c.data.batch_size = 4
  c.model.ngf = 16
  c.model.n_blocks = 3
  c.model.ndf = 16
  c.train.num_steps = 1500
  c.train.pool_size = 20
  c.train.ema_decay = 0.99
  c.checkpoint.every = 500
  c.log.every = 50
  c.log.sample_every = 500
  c.eval.batch_size = 16
  if arg == "tiny":
    c.data.batch_size = 4
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
  return c
