"""PyTorch CycleGAN generator files read without PyTorch and mapped exactly onto ours.

The .pth files are written here the way `torch.save` writes them (zip archive with
data.pkl and raw storages, or the older stream of pickles), and the reference
generator's forward pass is computed in numpy from PyTorch's own layer definitions.
"""
import collections
import os
import pickle
import sys
import zipfile

import jax
import numpy as np
import pytest

from stylegan_ad import interop
from stylegan_ad.errors import DataError
from torch_reference import reference_forward, reference_state, save_pth


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_reference_generator_file_runs_exactly_as_pytorch_would(tmp_path, legacy):
  state = reference_state(ngf=4, n_blocks=2)
  path = str(tmp_path / "latest_net_G_A.pth")
  save_pth(path, state, legacy)
  read = interop.read_state_dict(path)
  assert set(read) == set(state) and all(np.array_equal(read[k], state[k]) for k in state)
  module, params = interop.load_torch_generator(path)
  imported = interop.resnet_params(read)
  assert (module.ngf, module.n_blocks, imported.ngf, imported.n_blocks) == (4, 2, 4, 2)
  # every bias before an instance norm is dropped (the norm cancels it); the last conv's is kept
  assert len(imported.dropped) == 1 + 2 + 2 * 2 + 2
  x = np.random.default_rng(1).uniform(-1, 1, (2, 20, 28, 3)).astype(np.float32)  # any size divisible by 4
  ours = np.asarray(jax.jit(module.apply)({"params": params}, x))
  assert np.abs(ours - reference_forward(state, x, 2)).max() <= 1e-4


def test_a_file_written_by_pytorch_runs_as_pytorch_ran_it():
  """tests/data/torch_resnet: written once by PyTorch 2.13 (scripts/make_torch_fixture.py):
  its torch.save file, a 36x52 input and PyTorch's own output of it."""
  folder = os.path.join(os.path.dirname(__file__), "data", "torch_resnet")
  module, params = interop.load_torch_generator(os.path.join(folder, "latest_net_G_A.pth"))
  assert (module.ngf, module.n_blocks) == (4, 2)
  x, expected = np.load(os.path.join(folder, "input.npy")), np.load(os.path.join(folder, "output.npy"))
  assert x.shape == expected.shape == (1, 36, 52, 3) and expected.std() > 0.1
  ours = np.asarray(jax.jit(module.apply)({"params": params}, x))
  assert np.abs(ours - expected).max() <= 1e-4


def test_a_file_with_anything_but_tensors_is_refused_without_running_it(tmp_path):
  marker = tmp_path / "ran"

  class Evil:
    def __reduce__(self):
      return os.system, (f"touch {marker}",)

  path = str(tmp_path / "evil.pth")
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps(collections.OrderedDict(w=Evil()), protocol=2))
  with pytest.raises(DataError, match=r"evil\.pth: not a PyTorch state dict \(it holds a (posix|os)\.system"):
    interop.read_state_dict(path)
  assert not marker.exists()
  open(path, "wb").write(b"not a checkpoint")
  with pytest.raises(DataError, match="evil.pth: not a PyTorch"):
    interop.read_state_dict(path)
  state = reference_state()
  del state["model.7.weight"]
  save_pth(path, state)
  with pytest.raises(DataError, match="no model.7.weight: not a reference ResnetGenerator"):
    interop.load_torch_generator(path)
  state = reference_state()
  state["model.15.weight"] = state["model.15.weight"][:, :, :2]  # a wrong shape: named, with the one expected
  save_pth(path, state)
  with pytest.raises(DataError, match=r"model\.15\.weight is \(8, 4, 2, 3\), expected \(8, 4, 3, 3\)"):
    interop.load_torch_generator(path)
  # a truncated file
  save_pth(path, reference_state())
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 2])
  with pytest.raises(DataError, match="evil.pth: not a PyTorch state dict"):
    interop.read_state_dict(path)


def test_the_folder_cli_stylizes_with_a_reference_generator_file_at_each_photos_size(tmp_path):
  import subprocess
  from PIL import Image
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  state = reference_state(ngf=4, n_blocks=2)
  pth = str(tmp_path / "latest_net_G_A.pth")
  save_pth(pth, state)
  src = tmp_path / "in"
  os.makedirs(src)
  photo = np.random.default_rng(2).integers(0, 256, (30, 45, 3), np.uint8)
  Image.fromarray(photo).save(src / "a.png")
  open(src / "notes.txt", "w").write("not an image")
  env = {**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "-m", "experiments.stylize", f"--generator=torch:{pth}", f"--input={src}",
         f"--output={tmp_path / 'out'}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "a.png: stylized at 45x30" in proc.stdout and "1 stylized, 1 skipped" in proc.stdout
  out = np.asarray(Image.open(tmp_path / "out" / "a.png.stylized.png"))
  assert sorted(os.listdir(src)) == ["a.png", "notes.txt"]  # the input folder untouched
  rows = open(tmp_path / "out" / "results.csv").read().splitlines()
  assert rows[0] == "file,verdict,width,height,out_width,out_height,stylized,error"
  assert rows[1] == "a.png,stylized,45,30,45,30,a.png.stylized.png,"
  assert out.shape == photo.shape
  assert np.abs(out.astype(int) - photo).mean() > 10  # (the numbers: the exact-mapping test above)
  proc = subprocess.run(cmd[:3] + [f"--generator=torch:{tmp_path / 'missing.pth'}", f"--input={src}",
                                   f"--output={tmp_path / 'o2'}"], capture_output=True, text=True, env=env, cwd=root)
  assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].endswith("missing.pth: no such file")
