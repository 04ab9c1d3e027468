"""Comparing parameters trained under two device layouts, on any CPU.

Two layouts sum a gradient in another order. Adam divides by sqrt(v), so wherever a
gradient is near zero its rounding can flip the sign of an update and move that one
weight by up to ~2*lr per step: how many such weights there are, and by how much,
depends on the CPU's instruction set (AVX2 and AVX-512 round differently). A wrong
all-reduce (a missing mean, a shard's gradient alone) instead moves a large share of
the weights. So the test is: almost every weight agrees closely, and none is further
off than the optimizer's steps could move it.
"""
import numpy as np


def assert_layouts_agree(tree_a, tree_b, *, lr: float, steps: int, atol: float = 1e-5,
                         max_fraction: float = 0.01) -> None:
  a = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in tree_a])
  b = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in tree_b])
  assert a.shape == b.shape, (a.shape, b.shape)
  diff = np.abs(a - b)
  off = diff > atol + 1e-4 * np.abs(b)
  assert off.mean() <= max_fraction, (
      f"{off.sum()} of {off.size} weights differ by more than {atol} (max {diff.max():.2e}): "
      "more than rounding explains")
  bound = 2.0 * lr * steps + atol
  assert diff.max() <= bound, f"a weight differs by {diff.max():.2e} > {bound:.2e}"
