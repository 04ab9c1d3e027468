"""Writes tests/data/torch_resnet/ and tests/data/torch_unet/: generator files made by
PyTorch itself, with their input and PyTorch's output, for `tests/test_interop.py` (which
runs without PyTorch).

  pip install torch==2.13.0   # once, in any environment
  python scripts/make_torch_fixture.py [--out=tests/data/torch_resnet] [--unet_out=tests/data/torch_unet]

The U-Nets are the reference's UnetGenerator (`--netG unet_128` layout: 7 levels) at width
4, built from the reference's UnetSkipConnectionBlock (in-place LeakyReLU included): one
with `--norm instance`, one with `--norm batch` and dropout, the latter run as the
reference's test script runs it without --eval (batch statistics of the one photo)
but with dropout off.

The generator is the PyTorch CycleGAN reference's ResnetGenerator (`--netG resnet_6blocks`
layout, `--norm instance`, no dropout) at a small width, built here from torch.nn layers in
the reference's order, so its state-dict names are the reference's (`model.N.weight`,
`model.N.conv_block.M.weight`); weights are random (seed 0), saved with `torch.save`.
"""
from __future__ import annotations

import argparse
import functools
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


class UnetSkipConnectionBlock(nn.Module):
  """The reference's block, layer for layer (names `model.N`)."""

  def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
               norm_layer=nn.BatchNorm2d, use_dropout=False):
    super().__init__()
    self.outermost = outermost
    func = norm_layer.func if isinstance(norm_layer, functools.partial) else norm_layer
    use_bias = func == nn.InstanceNorm2d
    input_nc = outer_nc if input_nc is None else input_nc
    downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
    downrelu, downnorm = nn.LeakyReLU(0.2, True), norm_layer(inner_nc)
    uprelu, upnorm = nn.ReLU(True), norm_layer(outer_nc)
    if outermost:
      upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
      model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
    elif innermost:
      upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
      model = [downrelu, downconv, uprelu, upconv, upnorm]
    else:
      upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
      model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
      if use_dropout:
        model += [nn.Dropout(0.5)]
    self.model = nn.Sequential(*model)

  def forward(self, x):
    if self.outermost:
      return self.model(x)
    return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
  def __init__(self, num_downs, ngf, norm_layer, use_dropout):
    super().__init__()
    block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm_layer=norm_layer)
    for _ in range(num_downs - 5):
      block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer,
                                      use_dropout=use_dropout)
    for mult in (4, 2, 1):
      block = UnetSkipConnectionBlock(ngf * mult, ngf * mult * 2, submodule=block, norm_layer=norm_layer)
    self.model = UnetSkipConnectionBlock(3, ngf, input_nc=3, submodule=block, outermost=True, norm_layer=norm_layer)

  def forward(self, x):
    return self.model(x)


def write_unets(out: str) -> None:
  torch.manual_seed(1)
  x = torch.rand(1, 3, 128, 256) * 2 - 1   # not square, divisible by 2**7
  os.makedirs(out, exist_ok=True)
  np.save(os.path.join(out, "input.npy"), x.permute(0, 2, 3, 1).numpy())
  norms = {"instance": functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False),
           "batch": functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)}
  for name, norm in norms.items():
    g = UnetGenerator(7, 4, norm, use_dropout=name == "batch")
    if name == "batch":   # trained-looking affine weights and running statistics (unused without --eval)
      for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
          nn.init.normal_(m.weight, 1.0, 0.2), nn.init.normal_(m.bias, 0.0, 0.2)
          m.running_mean.normal_(), m.running_var.uniform_(0.5, 2.0)
    g.train()   # the reference's test script without --eval: batch statistics ...
    for m in g.modules():
      if isinstance(m, nn.Dropout):
        m.eval()   # ... but no dropout noise
    with torch.no_grad():
      y = g(x.clone())
    torch.save(g.state_dict(), os.path.join(out, f"unet_{name}.pth"))
    np.save(os.path.join(out, f"output_{name}.npy"), y.permute(0, 2, 3, 1).numpy())
  print(f"wrote {out} with torch {torch.__version__}")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="tests/data/torch_resnet")
  parser.add_argument("--unet_out", default="tests/data/torch_unet")
  args = parser.parse_args()
  write_unets(args.unet_out)
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
