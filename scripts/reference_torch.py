"""The PyTorch CycleGAN reference iteration, timed on this machine (the issue #6 baseline).

Same models and losses as the reference code base: ResNet-9 generators (ngf 64,
reflection padding, instance norm, transposed-conv upsampling), 70x70 PatchGAN
discriminators (ndf 64), LSGAN, cycle (10) and identity (0.5 x 10) losses, Adam
(2e-4, 0.5, 0.999); one iteration = forward both generators, generator update, then
both discriminator updates. fp32, batch 1, PyTorch's default intra-op threads.

PyTorch is not a dependency of stylegan_ad; install the CPU build to run this:
  pip install torch==2.13.0
  python scripts/reference_torch.py --size=128 --iters=5 --out=bench/torch_128.json
"""
from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import time

from absl import app, flags

_SIZE = flags.DEFINE_integer("size", 128, "crop size")
_ITERS = flags.DEFINE_integer("iters", 5, "timed iterations (after 2 warm-up)")
_OUT = flags.DEFINE_string("out", "", "also write the JSON here")


def _generator(nn, ngf=64, n_blocks=9):
  class Res(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(True),
                                nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

    def forward(self, x):
      return x + self.body(x)

  layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
  for m in (1, 2):
    layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1), nn.InstanceNorm2d(ngf * m * 2), nn.ReLU(True)]
  layers += [Res(ngf * 4) for _ in range(n_blocks)]
  for m in (4, 2):
    layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1),
               nn.InstanceNorm2d(ngf * m // 2), nn.ReLU(True)]
  layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
  return nn.Sequential(*layers)


def _patchgan(nn, ndf=64):
  layers = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
  for i, stride in ((1, 2), (2, 2), (3, 1)):
    cin, cout = ndf * min(2 ** (i - 1), 8), ndf * min(2 ** i, 8)
    layers += [nn.Conv2d(cin, cout, 4, stride, 1), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2, True)]
  layers += [nn.Conv2d(ndf * 8, 1, 4, 1, 1)]
  return nn.Sequential(*layers)


def main(argv):
  del argv
  try:
    import torch
    from torch import nn
  except ImportError:
    sys.exit("scripts/reference_torch.py needs PyTorch: pip install torch==2.13.0")
  torch.manual_seed(0)
  g_ab, g_ba, d_b, d_a = _generator(nn), _generator(nn), _patchgan(nn), _patchgan(nn)
  opt_g = torch.optim.Adam(itertools.chain(g_ab.parameters(), g_ba.parameters()), 2e-4, betas=(0.5, 0.999))
  opt_d = torch.optim.Adam(itertools.chain(d_b.parameters(), d_a.parameters()), 2e-4, betas=(0.5, 0.999))
  mse, l1 = nn.MSELoss(), nn.L1Loss()
  s = _SIZE.value
  real_a, real_b = torch.rand(1, 3, s, s) * 2 - 1, torch.rand(1, 3, s, s) * 2 - 1
  discs = list(itertools.chain(d_b.parameters(), d_a.parameters()))

  def iteration():
    fake_b = g_ab(real_a)
    rec_a = g_ba(fake_b)
    fake_a = g_ba(real_b)
    rec_b = g_ab(fake_a)
    for p in discs:
      p.requires_grad_(False)
    opt_g.zero_grad()
    idt_a, idt_b = g_ab(real_b), g_ba(real_a)
    pred_b, pred_a = d_b(fake_b), d_a(fake_a)
    loss_g = (mse(pred_b, torch.ones_like(pred_b)) + mse(pred_a, torch.ones_like(pred_a))
              + 10 * (l1(rec_a, real_a) + l1(rec_b, real_b))
              + 5 * (l1(idt_a, real_b) + l1(idt_b, real_a)))
    loss_g.backward()
    opt_g.step()
    for p in discs:
      p.requires_grad_(True)
    opt_d.zero_grad()
    for d, real, fake in ((d_b, real_b, fake_b), (d_a, real_a, fake_a)):
      pred_real, pred_fake = d(real), d(fake.detach())
      (0.5 * (mse(pred_real, torch.ones_like(pred_real)) + mse(pred_fake, torch.zeros_like(pred_fake)))).backward()
    opt_d.step()

  for _ in range(2):
    iteration()
  times = []
  for _ in range(_ITERS.value):
    t0 = time.perf_counter()
    iteration()
    times.append(time.perf_counter() - t0)
  result = {"what": "torch_reference_train_step", "size": s, "batch": 1, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "sec_per_iter": statistics.median(times),
            "model": "resnet9-ngf64/patchgan-ndf64/transpose (PyTorch)"}
  line = json.dumps(result, sort_keys=True)
  print(line)
  if _OUT.value:
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    tmp = _OUT.value + ".tmp"
    with open(tmp, "w") as f:
      f.write(line + "\n")
    os.replace(tmp, _OUT.value)


if __name__ == "__main__":
  app.run(main)
