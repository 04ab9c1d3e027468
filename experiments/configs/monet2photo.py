"""The reference CycleGAN setting on TFDS cycle_gan/monet2photo at 256x256, for accelerators.

ResNet-9 generators (ngf 64), 70x70 PatchGANs (ndf 64), LSGAN, cycle 10, identity 5,
Adam 2e-4 (0.5, 0.999), 100 epochs constant + 100 decaying, batch 1 per device.

Prepare the data once (needs TensorFlow for the Image features, on any machine):
  tfds build cycle_gan/monet2photo --data_dir=$DATA
Launch (8 accelerators, global batch 8):
  python -m experiments.train_stylegan --config=experiments/configs/monet2photo.py \
      --workdir=runs/monet2photo --config.data.data_dir=$DATA --config.data.batch_size=8
Argument "cpu" shrinks it to 64x64 and a ResNet-3 for a smoke run.
"""
from stylegan_ad.configs import default_config


def get_config(arg: str | None = None):
  if arg:
    raise ValueError(f"monet2photo.py takes no argument, got {arg!r}")
  c = default_config()
  c.data.source = "cycle_gan/monet2photo"
  c.data.crop_size = 256
  c.data.batch_size = 1
  c.train.num_steps = 200 * 6287  # 200 epochs of the larger (photo) domain at batch 1
  c.checkpoint.every = 10_000
  c.log.every = 100
  c.log.sample_every = 5_000
  if arg == "cpu":
    c.data.crop_size = 64
    c.model.ngf, c.model.n_blocks, c.model.ndf = 16, 3, 16
    c.train.num_steps = 100
  return c
