"""The PyTorch CycleGAN reference generator without PyTorch, for checking `interop`:
`.pth` files written the way `torch.save` writes them (`save_pth`), a state dict with the
reference ResnetGenerator's names and shapes (`reference_state`), and its forward pass from
PyTorch's layer definitions, in numpy float64, NCHW (`reference_forward`). Used by the
tests and by `scripts/benchmark.py --what=torch_photo`."""
import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np


@contextlib.contextmanager
def _fake_torch():
  """Stand-ins for the globals torch.save pickles (names only), so pickle can write them."""
  torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

  class FloatStorage:
    pass

  def _rebuild_tensor_v2(*args):
    raise AssertionError("never called")

  FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
  FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = "FloatStorage", "_rebuild_tensor_v2"
  torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, _rebuild_tensor_v2
  saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
  sys.modules.update({"torch": torch, "torch._utils": utils})
  try:
    yield FloatStorage, _rebuild_tensor_v2
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k)
      else:
        sys.modules[k] = v


class _Tensor:
  def __init__(self, array, key):
    self.array, self.key = np.ascontiguousarray(array, np.float32), key


def _pickle_state(state, legacy):
  """data.pkl of torch.save (persistent ids for storages) and the storages' bytes by key."""
  with _fake_torch() as (float_storage, rebuild):
    tensors = {k: _Tensor(v, str(i)) for i, (k, v) in enumerate(state.items())}

    class Pickler(pickle.Pickler):
      def persistent_id(self, obj):
        if isinstance(obj, _Tensor.Storage):
          t = obj.tensor
          if legacy:
            return ("storage", float_storage, t.key, "cpu", t.array.size, None)
          return ("storage", float_storage, t.key, "cpu", t.array.size)
        return None

      def reducer_override(self, obj):
        if isinstance(obj, _Tensor):
          stride = tuple(int(s) // 4 for s in obj.array.strides)
          return rebuild, (_Tensor.Storage(obj), 0, obj.array.shape, stride, False, collections.OrderedDict())
        return NotImplemented

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(collections.OrderedDict((k, tensors[k]) for k in state))
  return buf.getvalue(), {t.key: t.array for t in tensors.values()}


class _StorageRef:
  def __init__(self, tensor):
    self.tensor = tensor


_Tensor.Storage = _StorageRef


def save_pth(path, state, legacy=False):
  data, storages = _pickle_state(state, legacy)
  if legacy:
    with open(path, "wb") as f:
      for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(obj, f, protocol=2)
      f.write(data)
      keys = sorted(storages)
      pickle.dump(keys, f, protocol=2)
      for k in keys:
        f.write(struct.pack("<q", storages[k].size) + storages[k].astype("<f4").tobytes())
    return
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", data)
    z.writestr("archive/byteorder", "little")
    z.writestr("archive/version", "3\n")
    for k, a in storages.items():
      z.writestr(f"archive/data/{k}", a.astype("<f4").tobytes())


def reference_state(ngf=4, n_blocks=2, seed=0):
  """A state dict with the names and shapes of the reference's ResnetGenerator
  (input_nc=output_nc=3, instance norm, no dropout), with biases on every conv."""
  rng = np.random.default_rng(seed)
  pair = lambda o, i, k: (rng.normal(0, 0.3, (o, i, k, k)), rng.normal(0, 0.3, (o,)))
  s = {}
  s["model.1.weight"], s["model.1.bias"] = pair(ngf, 3, 7)
  s["model.4.weight"], s["model.4.bias"] = pair(ngf * 2, ngf, 3)
  s["model.7.weight"], s["model.7.bias"] = pair(ngf * 4, ngf * 2, 3)
  for b in range(n_blocks):
    for m in (1, 5):
      s[f"model.{10 + b}.conv_block.{m}.weight"], s[f"model.{10 + b}.conv_block.{m}.bias"] = pair(ngf * 4, ngf * 4, 3)
  up = 10 + n_blocks
  for n, (i, o) in ((up, (ngf * 4, ngf * 2)), (up + 3, (ngf * 2, ngf))):
    s[f"model.{n}.weight"], s[f"model.{n}.bias"] = rng.normal(0, 0.3, (i, o, 3, 3)), rng.normal(0, 0.3, (o,))
  s[f"model.{up + 7}.weight"], s[f"model.{up + 7}.bias"] = pair(3, ngf, 7)
  return {k: v.astype(np.float32) for k, v in s.items()}


def conv(x, w, b, stride=1, pad=0, reflect=False):
  """PyTorch Conv2d (NCHW; zero or reflect padding)."""
  if pad:
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect" if reflect else "constant")
  k = w.shape[2]
  h = (x.shape[2] - k) // stride + 1
  wd = (x.shape[3] - k) // stride + 1
  y = np.zeros((x.shape[0], w.shape[0], h, wd))
  for a in range(k):
    for c in range(k):
      y += np.einsum("nihw,oi->nohw", x[:, :, a:a + stride * h:stride, c:c + stride * wd:stride], w[:, :, a, c])
  return y + b[None, :, None, None]


def conv_transpose(x, w, b):
  """PyTorch ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1) by its definition (NCHW):
  each input pixel adds weight[in, out] times itself at 2i - 1 + a."""
  n, _, h, wd = x.shape
  y = np.zeros((n, w.shape[1], 2 * h + 2, 2 * wd + 2))
  for a in range(3):
    for c in range(3):
      y[:, :, a:a + 2 * h:2, c:c + 2 * wd:2] += np.einsum("nihw,io->nohw", x, w[:, :, a, c])
  return y[:, :, 1:2 * h + 1, 1:2 * wd + 1] + b[None, :, None, None]


def instance_norm(x):
  mean = x.mean(axis=(2, 3), keepdims=True)
  return (x - mean) / np.sqrt(x.var(axis=(2, 3), keepdims=True) + 1e-5)


def reference_forward(s, x_nhwc, n_blocks):
  relu = lambda v: np.maximum(v, 0)
  g = lambda name: s[name].astype(np.float64)
  h = x_nhwc.transpose(0, 3, 1, 2).astype(np.float64)
  h = relu(instance_norm(conv(h, g("model.1.weight"), g("model.1.bias"), pad=3, reflect=True)))
  for n in (4, 7):
    h = relu(instance_norm(conv(h, g(f"model.{n}.weight"), g(f"model.{n}.bias"), stride=2, pad=1)))
  for b in range(n_blocks):
    p = f"model.{10 + b}.conv_block"
    y = relu(instance_norm(conv(h, g(f"{p}.1.weight"), g(f"{p}.1.bias"), pad=1, reflect=True)))
    h = h + instance_norm(conv(y, g(f"{p}.5.weight"), g(f"{p}.5.bias"), pad=1, reflect=True))
  up = 10 + n_blocks
  for n in (up, up + 3):
    h = relu(instance_norm(conv_transpose(h, g(f"model.{n}.weight"), g(f"model.{n}.bias"))))
  h = np.tanh(conv(h, g(f"model.{up + 7}.weight"), g(f"model.{up + 7}.bias"), pad=3, reflect=True))
  return h.transpose(0, 2, 3, 1)
