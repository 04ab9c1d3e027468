"""Generators trained with the PyTorch CycleGAN / pix2pix reference code, without PyTorch.

`read_state_dict(path)` reads a `.pth` state dict, in the zip format of torch >= 1.6
or the older stream of pickles, with a restricted unpickler: it builds only what a
state dict holds (an ordered dict of tensors, as numpy arrays) and refuses every other
object with one line naming it; no code from the file ever runs.

`load_torch_generator(path)` maps the reference's `resnet_9blocks` / `resnet_6blocks`
generator (`networks.ResnetGenerator`: reflect padding, instance norm without affine
parameters, transposed-conv upsampling; names `model.N.weight`,
`model.N.conv_block.M.weight`) exactly onto our `ResnetGenerator`. The reference's
convolutions before instance norm carry biases, which that norm cancels exactly: they
are dropped (`Imported.dropped`). Running statistics that old PyTorch versions stored
for instance norm are unused by it, and dropped too. The reference's `unet_128` /
`unet_256` (`networks.UnetGenerator`, nested `model.model.1.model.3.model...` names,
instance or batch norm) map onto `models.generator.ReferenceUNet` (`unet_params`).
"""
from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import zipfile
from typing import Any

import numpy as np

from stylegan_ad.errors import DataError

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclasses.dataclass(frozen=True)
class _StorageType:
  dtype: Any


class _Storage:
  """A storage's bytes, filled when read (the legacy format stores them after the pickle)."""

  def __init__(self, dtype, numel: int):
    self.dtype, self.numel, self.data = np.dtype(dtype), numel, None


@dataclasses.dataclass
class _View:
  storage: _Storage
  offset: int   # elements
  numel: int


@dataclasses.dataclass
class _LazyTensor:
  storage: Any  # _Storage or _View
  offset: int
  size: tuple
  stride: tuple

  def array(self) -> np.ndarray:
    base, extra = (self.storage.storage, self.storage.offset) if isinstance(self.storage, _View) else (self.storage, 0)
    if base.data is None:
      raise DataError("a tensor's storage is missing from the file")
    flat = base.data[extra:]
    if not self.size:
      return flat[self.offset:self.offset + 1].reshape(()).copy()
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if last >= len(flat) or self.offset < 0 or min(self.stride) < 0:
      raise DataError("a tensor reaches outside its storage")
    view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                           strides=[s * flat.itemsize for s in self.stride])
    return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  return _LazyTensor(storage, int(storage_offset), tuple(int(n) for n in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data, *unused):
  return data


_ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter}


class _StateDictUnpickler(pickle.Unpickler):
  """Accepts only the globals a state dict of tensors needs; storages come through
  `persistent_load` from the caller's table."""

  def __init__(self, file, storage: "callable"):
    super().__init__(file)
    self._storage = storage

  def find_class(self, module: str, name: str):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and name in _DTYPES:
      return _StorageType(_DTYPES[name])
    raise pickle.UnpicklingError(f"it holds a {module}.{name}, which a state dict of tensors does not: "
                                 "refused (loading it could run code)")

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
      raise pickle.UnpicklingError(f"unknown persistent object {str(pid)[:60]}")
    return self._storage(pid[1:])


def _storage_type(t) -> np.dtype:
  if not isinstance(t, _StorageType):
    raise pickle.UnpicklingError(f"unknown storage type {t!r}")
  return np.dtype(t.dtype)


def _read_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as z:
    names = z.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pkl:
      raise DataError(f"{path}: a zip file without data.pkl: not a PyTorch checkpoint")
    prefix = pkl[0][:-len("data.pkl")]
    order = z.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
    storages: dict[str, _Storage] = {}

    def storage(args):
      storage_type, key, _location, numel = args[:4]
      key = key.decode() if isinstance(key, bytes) else str(key)
      if key not in storages:
        dtype = _storage_type(storage_type).newbyteorder("<" if order == "little" else ">")
        st = _Storage(dtype, int(numel))
        raw = z.read(f"{prefix}data/{key}")
        if len(raw) < st.numel * dtype.itemsize:
          raise DataError(f"{path}: storage {key} is truncated")
        st.data = np.frombuffer(raw, dtype, count=st.numel).astype(dtype.newbyteorder("="))
        storages[key] = st
      return storages[key]

    return _StateDictUnpickler(io.BytesIO(z.read(pkl[0])), storage).load()


def _read_legacy(path: str) -> Any:
  with open(path, "rb") as f:
    if pickle.Unpickler(f).load() != _LEGACY_MAGIC:  # plain ints: nothing to refuse
      raise DataError(f"{path}: not a PyTorch checkpoint (no zip archive, no magic number)")
    _protocol, _sys_info = pickle.Unpickler(f).load(), pickle.Unpickler(f).load()
    storages: dict[str, _Storage] = {}

    def storage(args):
      storage_type, root_key, _location, numel, view = args[:5]
      root_key = str(root_key)
      if root_key not in storages:
        storages[root_key] = _Storage(_storage_type(storage_type), int(numel))
      if view is None:
        return storages[root_key]
      _view_key, offset, view_numel = view
      return _View(storages[root_key], int(offset), int(view_numel))

    obj = _StateDictUnpickler(f, storage).load()
    keys = _StateDictUnpickler(f, storage).load()
    for key in keys:
      st = storages.get(str(key))
      if st is None:
        raise DataError(f"{path}: storage {key} listed but never used")
      numel = int(np.frombuffer(f.read(8), "<i8")[0])
      raw = f.read(numel * st.dtype.itemsize)
      if len(raw) < numel * st.dtype.itemsize:
        raise DataError(f"{path}: truncated (storage {key})")
      st.data = np.frombuffer(raw, st.dtype.newbyteorder("<")).astype(st.dtype)
  return obj


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """{name: array} of a PyTorch `.pth` state dict (a dict under "state_dict" is taken too).

  Raises:
    DataError: not readable, not a state dict of tensors, or holding anything else.
  """
  try:
    obj = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
  except DataError:
    raise
  except OSError as e:
    raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, AttributeError, IndexError,
          zipfile.BadZipFile) as e:
    raise DataError(f"{path}: not a PyTorch state dict ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
                    ) from None
  if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
    obj = obj["state_dict"]
  if not isinstance(obj, dict) or not all(isinstance(v, _LazyTensor) for v in obj.values()):
    raise DataError(f"{path}: not a state dict of tensors")
  return {(k[len("module."):] if k.startswith("module.") else k): v.array() for k, v in obj.items()}


def _conv(w: np.ndarray) -> np.ndarray:
  """PyTorch Conv2d weight [out, in, kh, kw] -> our HWIO kernel."""
  return np.ascontiguousarray(w.transpose(2, 3, 1, 0), np.float32)


def _conv_transpose(w: np.ndarray) -> np.ndarray:
  """PyTorch ConvTranspose2d weight [in, out, kh, kw] -> our kernel (`torch_conv_transpose2x`,
  the U-Net's `_TransposeConv4x2`): HWIO, flipped in space."""
  return np.ascontiguousarray(w.transpose(2, 3, 0, 1)[::-1, ::-1], np.float32)


@dataclasses.dataclass(frozen=True)
class Imported:
  ngf: int
  n_blocks: int
  params: dict
  dropped: tuple[str, ...]   # names read but not needed (biases before instance norm, running stats)
  arch: str = "resnet"       # our generator (`models.generator.GENERATORS`)
  depth: int = 0             # reference_unet: levels (downsamplings)


def resnet_params(state: dict[str, np.ndarray], path: str = "the file") -> Imported:
  """Our `ResnetGenerator` parameters (upsample="transpose") from the reference's state
  dict; ngf and the number of blocks are read from it. A missing key or a wrong shape is
  one line naming the key (and the shape expected)."""
  used: set[str] = set()

  def take(name: str, shape: tuple) -> np.ndarray:
    if name not in state:
      raise DataError(f"{path}: no {name}: not a reference ResnetGenerator (resnet_9blocks / resnet_6blocks) "
                      f"state dict (it has {', '.join(list(state)[:4])}, ...)")
    if tuple(state[name].shape) != shape:
      raise DataError(f"{path}: {name} is {tuple(state[name].shape)}, expected {shape} for a reference "
                      f"ResnetGenerator with ngf={ngf} and {n_blocks} blocks")
    used.add(name)
    return state[name]

  first = state.get("model.1.weight")
  ngf = int(first.shape[0]) if first is not None and first.ndim == 4 else 64
  n_blocks = 0
  while f"model.{10 + n_blocks}.conv_block.1.weight" in state:
    n_blocks += 1
  first = take("model.1.weight", (ngf, 3, 7, 7))
  if n_blocks == 0:
    raise DataError(f"{path}: no residual blocks (model.10.conv_block.1.weight): not a reference ResnetGenerator")
  # with use_dropout the block is pad, conv, norm, relu, dropout, pad, conv, norm
  second = 6 if "model.10.conv_block.6.weight" in state else 5
  p: dict[str, Any] = {"Conv_0": {"kernel": _conv(first)}}
  for i, (n, cin) in enumerate(((4, ngf), (7, 2 * ngf))):
    p[f"Conv_{i + 1}"] = {"kernel": _conv(take(f"model.{n}.weight", (2 * cin, cin, 3, 3)))}
  block = (4 * ngf, 4 * ngf, 3, 3)
  for b in range(n_blocks):
    pre = f"model.{10 + b}.conv_block"
    p[f"ResnetBlock_{b}"] = {"Conv_0": {"kernel": _conv(take(f"{pre}.1.weight", block))},
                             "Conv_1": {"kernel": _conv(take(f"{pre}.{second}.weight", block))}}
  up = 10 + n_blocks
  for i, (n, cin) in enumerate(((up, 4 * ngf), (up + 3, 2 * ngf))):
    p[f"Upsample_{i}"] = {"ConvTranspose_0": {"kernel": _conv_transpose(take(f"model.{n}.weight",
                                                                             (cin, cin // 2, 3, 3)))}}
  last = up + 7
  p["Conv_3"] = {"kernel": _conv(take(f"model.{last}.weight", (3, ngf, 7, 7))),
                 "bias": take(f"model.{last}.bias", (3,)).astype(np.float32)}
  dropped = tuple(k for k in state if k not in used)
  unexpected = [k for k in dropped if not k.endswith((".bias", "running_mean", "running_var", "num_batches_tracked"))]
  if unexpected:
    raise DataError(f"{path}: {unexpected[0]} has no place in the reference ResnetGenerator "
                    f"(ngf={ngf}, n_blocks={n_blocks})")
  return Imported(ngf, n_blocks, p, dropped)


def _unet_prefix(level: int) -> str:
  """The state-dict prefix of the reference U-Net's block at `level` (0: outermost):
  each block's submodule is layer 1 of the outermost block's list, layer 3 of the others'."""
  return "model.model" + (".1.model" if level else "") + ".3.model" * max(level - 1, 0)


def unet_params(state: dict[str, np.ndarray], path: str = "the file") -> Imported:
  """Our `ReferenceUNet` parameters from the reference's `unet_128` / `unet_256` state dict
  (any width and depth, instance or batch norm, with or without dropout); ngf and the
  depth are read from it."""
  used: set[str] = set()
  first = state.get("model.model.0.weight")
  ngf = int(first.shape[0]) if first is not None and first.ndim == 4 else 64
  depth = 1
  while f"{_unet_prefix(depth)}.1.weight" in state:
    depth += 1
  feats = [ngf * min(2 ** i, 8) for i in range(depth)]

  def take(name: str, shape: tuple) -> np.ndarray:
    if name not in state:
      raise DataError(f"{path}: no {name}: not a reference UnetGenerator (unet_128 / unet_256) state dict")
    if tuple(state[name].shape) != shape:
      raise DataError(f"{path}: {name} is {tuple(state[name].shape)}, expected {shape} for a reference "
                      f"UnetGenerator with ngf={ngf} and {depth} levels")
    used.add(name)
    return state[name]

  def bias(name: str, n: int) -> np.ndarray:   # absent in a batch-norm file (use_bias=False there)
    return take(name, (n,)).astype(np.float32) if name in state else np.zeros(n, np.float32)

  def norm(name: str, n: int) -> dict:   # instance norm without affine parameters: scale 1, shift 0
    if f"{name}.weight" not in state:
      return {"scale": np.ones(n, np.float32), "bias": np.zeros(n, np.float32)}
    return {"scale": take(f"{name}.weight", (n,)).astype(np.float32), "bias": take(f"{name}.bias", (n,)).astype(np.float32)}

  if depth < 2:
    raise DataError(f"{path}: no inner blocks (model.model.1.model.1.weight): not a reference UnetGenerator")
  last = depth - 1
  top = _unet_prefix(0)
  p: dict[str, Any] = {"down_0": {"kernel": _conv(take(f"{top}.0.weight", (ngf, 3, 4, 4))), "bias": bias(f"{top}.0.bias", ngf)},
                       "up_0": {"kernel": _conv_transpose(take(f"{top}.3.weight", (2 * ngf, 3, 4, 4))),
                                "bias": take(f"{top}.3.bias", (3,)).astype(np.float32)}}
  for i in range(1, depth):
    pre, inner, outer = _unet_prefix(i), feats[i], feats[i - 1]
    p[f"down_{i}"] = {"kernel": _conv(take(f"{pre}.1.weight", (inner, outer, 4, 4)))}
    up_in = inner if i == last else 2 * inner
    up, up_norm = (3, 4) if i == last else (5, 6)
    p[f"up_{i}"] = {"kernel": _conv_transpose(take(f"{pre}.{up}.weight", (up_in, outer, 4, 4)))}
    p[f"up_norm_{i}"] = norm(f"{pre}.{up_norm}", outer)
    if i == last:
      p[f"down_{i}"]["bias"] = bias(f"{pre}.1.bias", inner)
    else:
      p[f"down_norm_{i}"] = norm(f"{pre}.2", inner)
  dropped = tuple(k for k in state if k not in used)
  unexpected = [k for k in dropped if not k.endswith((".bias", "running_mean", "running_var", "num_batches_tracked"))]
  if unexpected:
    raise DataError(f"{path}: {unexpected[0]} has no place in the reference UnetGenerator (ngf={ngf}, {depth} levels)")
  return Imported(ngf, 0, p, dropped, "reference_unet", depth)


def load_torch_generator(path: str):
  """(flax module, params) of a generator file of the PyTorch CycleGAN / pix2pix
  reference: `resnet_9blocks`, `resnet_6blocks` (`ResnetGenerator`) or `unet_128`,
  `unet_256` (`ReferenceUNet`), any width. `G(x)` is `module.apply({"params": params}, x)`,
  x NHWC in [-1, 1], sides divisible by 4 (ResNet) or 2**depth (U-Net)."""
  from stylegan_ad.models.generator import ReferenceUNet, ResnetGenerator
  state = read_state_dict(path)
  if "model.model.0.weight" in state:
    imported = unet_params(state, path)
    return ReferenceUNet(ngf=imported.ngf, depth=imported.depth), imported.params
  imported = resnet_params(state, path)
  module = ResnetGenerator(ngf=imported.ngf, n_blocks=imported.n_blocks, upsample="transpose")
  return module, imported.params


def describe(module) -> str:
  """One line: which reference generator `module` (from `load_torch_generator`) is."""
  if hasattr(module, "n_blocks"):
    return f"the reference's ResnetGenerator, ngf={module.ngf}, {module.n_blocks} blocks"
  return f"the reference's UnetGenerator, ngf={module.ngf}, {module.depth} levels"
