"""Writes tests/data/torch_resnet/: a generator file made by PyTorch itself, with its input
and PyTorch's output, for `tests/test_interop.py` (which runs without PyTorch).

  pip install torch==2.13.0   # once, in any environment
  python scripts/make_torch_fixture.py [--out=tests/data/torch_resnet]

The generator is the PyTorch CycleGAN reference's ResnetGenerator (`--netG resnet_6blocks`
layout, `--norm instance`, no dropout) at a small width, built here from torch.nn layers in
the reference's order, so its state-dict names are the reference's (`model.N.weight`,
`model.N.conv_block.M.weight`); weights are random (seed 0), saved with `torch.save`.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from torch import nn


class ResnetBlock(nn.Module):
  def __init__(self, dim: int):
    super().__init__()
    self.conv_block = nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), nn.InstanceNorm2d(dim), nn.ReLU(True),
        nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), nn.InstanceNorm2d(dim))

  def forward(self, x):
    return x + self.conv_block(x)


def resnet_generator(ngf: int, n_blocks: int) -> nn.Module:
  layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=True), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
  for mult in (1, 2):
    layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
               nn.InstanceNorm2d(ngf * mult * 2), nn.ReLU(True)]
  layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
  for mult in (4, 2):
    layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
               nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True)]
  layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
  module = nn.Module()
  module.model = nn.Sequential(*layers)
  module.forward = lambda x: module.model(x)
  return module


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="tests/data/torch_resnet")
  args = parser.parse_args()
  torch.manual_seed(0)
  g = resnet_generator(ngf=4, n_blocks=2).eval()
  x = torch.rand(1, 3, 36, 52) * 2 - 1   # NCHW, not square, divisible by 4
  with torch.no_grad():
    y = g(x)
  os.makedirs(args.out, exist_ok=True)
  torch.save(g.state_dict(), os.path.join(args.out, "latest_net_G_A.pth"))
  np.save(os.path.join(args.out, "input.npy"), x.permute(0, 2, 3, 1).numpy())     # NHWC
  np.save(os.path.join(args.out, "output.npy"), y.permute(0, 2, 3, 1).numpy())
  print(f"wrote {args.out} with torch {torch.__version__}: {len(g.state_dict())} tensors")


if __name__ == "__main__":
  main()
