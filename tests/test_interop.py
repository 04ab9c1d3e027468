"""PyTorch CycleGAN generator files read without PyTorch and mapped exactly onto ours.

The .pth files are written here the way `torch.save` writes them (zip archive with
data.pkl and raw storages, or the older stream of pickles), and the reference
generator's forward pass is computed in numpy from PyTorch's own layer definitions.
"""
import collections
import json
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


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_unet_files_written_by_pytorch_run_as_pytorch_ran_them(tmp_path, norm):
  """tests/data/torch_unet: the reference's UnetGenerator (unet_128 layout: 7 levels, width 4)
  written by PyTorch 2.13, with instance norm, and with batch norm and dropout (run as the
  reference's test script runs it without --eval, dropout off), on a 128x256 input."""
  folder = os.path.join(os.path.dirname(__file__), "data", "torch_unet")
  path = os.path.join(folder, f"unet_{norm}.pth")
  module, params = interop.load_torch_generator(path)
  assert interop.describe(module) == "the reference's UnetGenerator, ngf=4, 7 levels"
  x, expected = np.load(os.path.join(folder, "input.npy")), np.load(os.path.join(folder, f"output_{norm}.npy"))
  assert x.shape == expected.shape == (1, 128, 256, 3) and expected.std() > 0.1
  ours = np.asarray(jax.jit(module.apply)({"params": params}, x))
  assert np.abs(ours - expected).max() <= 1e-4
  state = interop.read_state_dict(path)
  dropped = interop.unet_params(state, path).dropped
  if norm == "batch":   # no conv biases; the running statistics are not what the test script uses
    assert dropped and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in dropped)
  else:   # the biases of the convolutions an instance norm follows (it cancels them)
    assert len(dropped) == 5 + 6 and all(k.endswith(".bias") for k in dropped)
  # a wrong shape is named with the one expected
  bad = dict(state)
  key = "model.model.1.model.3.model.1.weight"
  bad[key] = bad[key][:, :4]
  save_pth(str(tmp_path / "bad.pth"), bad)
  with pytest.raises(DataError, match=r"bad\.pth: model\.model\.1\.model\.3\.model\.1\.weight is \(16, 4, 4, 4\), "
                                      r"expected \(16, 8, 4, 4\)"):
    interop.load_torch_generator(str(tmp_path / "bad.pth"))


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


def test_a_reference_generator_gets_a_detector_and_restorer_fitted_on_your_photos(tmp_path):
  """experiments.fit_generator: the file's weights held by a run directory, a detector and
  restorer fitted on a folder of photos (a held-out photo calibrates), and that run then
  scores and corrects the generator's outputs through `experiments.stylize --workdir`."""
  import subprocess
  from PIL import Image
  from experiments.configs import imported as imported_config
  from stylegan_ad import imported, inference
  from stylegan_ad.data import embedded
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  pth = os.path.join(root, "tests", "data", "torch_resnet", "latest_net_G_A.pth")
  photos = tmp_path / "photos"
  os.makedirs(photos)
  for p in embedded.PHOTOS[:5]:
    Image.fromarray(p.load()).resize((140 + 10 * len(p.name) % 40, 100)).save(photos / f"{p.name}.png")
  open(photos / "notes.txt", "w").write("not a photo")
  before = sorted(os.listdir(photos))
  run = str(tmp_path / "run")
  config = imported_config.get_config("tiny")
  summary = imported.fit(config, run, f"torch:{pth}", str(photos))
  fit, held = summary["photos"]["fit"], summary["photos"]["held_out"]
  assert held and not set(fit) & set(held) and sorted(fit + held) == sorted(f"{p.name}.png" for p in embedded.PHOTOS[:5])
  assert summary["crops"]["fit"] == 5 * 2 * len(fit)   # center + 4 corners, at 1.125x and 2x the crop size
  assert summary["architecture"] == "the reference's ResnetGenerator, ngf=4, 2 blocks"
  assert np.isfinite(summary["threshold"]) and len(summary["calibration"]["whole_photo_scores"]) == 2 * len(held)
  # the threshold holds the held-out photos whole (1x, 0.5x) as well as their crops
  assert max(summary["calibration"]["whole_photo_scores"]) <= summary["threshold"]
  assert set(summary["synthetic_held_out"]) == {"detector", "tta_variance"}
  assert sorted(os.listdir(photos)) == before   # the photos untouched
  # the run holds the file's weights exactly, and its detector's calibration is for them
  trained = inference.load_trained(run)
  _, params = interop.load_torch_generator(pth)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(trained.g_params), jax.tree.leaves(params)))
  assert trained.config.model.imported == f"torch:{pth}" and trained.corrector.threshold == summary["threshold"]
  with open(os.path.join(run, "detector", "calibration.json")) as f:
    assert json.load(f)["stages"]["gan"] == 0
  # stylize --workdir: scored and corrected; an unflagged photo's output is the generator's own
  out = inference.stylize_folder(run, str(photos), str(tmp_path / "out"))
  rows = {r["file"]: r for r in out["files"]}
  assert sum(out["verdicts"].values()) == 5 and rows["notes.txt"]["verdict"] == "skipped"
  plain = inference.stylize_folder_with_generator(f"torch:{pth}", str(photos), str(tmp_path / "plain"))
  assert plain["num_stylized"] == 5
  clean = [n for n, r in rows.items() if r["verdict"] == "clean"]
  assert clean
  for name in clean:
    ours = np.asarray(Image.open(tmp_path / "out" / f"{name}.corrected.png"), np.int32)
    alone = np.asarray(Image.open(tmp_path / "plain" / f"{name}.stylized.png"), np.int32)
    assert ours.shape == alone.shape and np.abs(ours - alone).max() <= 1
  # the same file again resumes; another generator's weights into that run are refused
  again = imported.fit(config, run, f"torch:{pth}", str(photos))
  assert again["threshold"] == summary["threshold"]
  other = jax.tree.map(lambda a: a + 1, params)
  with pytest.raises(DataError, match="holds another generator's run"):
    imported.save_generator(os.path.join(run, "gan"), other, "torch:other.pth")
  # bad input, one line each: a folder with one photo; a file that is not a generator (CLI)
  one = tmp_path / "one"
  os.makedirs(one)
  Image.fromarray(embedded.PHOTOS[0].load()).save(one / "a.png")
  with pytest.raises(DataError, match=r"1 photo\(s\); fitting needs at least 2"):
    imported.fit(config, str(tmp_path / "run1"), f"torch:{pth}", str(one))
  env = {**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-m", "experiments.fit_generator",
                         "--config=experiments/configs/imported.py:tiny", f"--generator=torch:{photos / 'notes.txt'}",
                         f"--photos={photos}", f"--workdir={tmp_path / 'run2'}"],
                        capture_output=True, text=True, env=env, cwd=root)
  assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
  assert "notes.txt" in proc.stderr and not os.path.exists(tmp_path / "run2" / "detector")


def test_a_reference_unet_is_fitted_for_and_runs_on_photos_of_any_size(tmp_path):
  """A U-Net file (7 levels: its input a multiple of 128) through experiments.fit_generator
  and `experiments.stylize --workdir` on photos whose sides are not multiples of 128."""
  from PIL import Image
  from experiments.configs import imported as imported_config
  from stylegan_ad import imported, inference
  from stylegan_ad.data import embedded
  pth = os.path.join(os.path.dirname(__file__), "data", "torch_unet", "unet_batch.pth")
  photos = tmp_path / "photos"
  os.makedirs(photos)
  sizes = {"astronaut": (150, 100), "coffee": (170, 130), "china": (140, 121)}
  for p in embedded.PHOTOS:
    if p.name in sizes:
      Image.fromarray(p.load()).resize(sizes[p.name]).save(photos / f"{p.name}.png")
  run = str(tmp_path / "run")
  summary = imported.fit(imported_config.get_config("tiny"), run, f"torch:{pth}", str(photos))
  assert summary["architecture"] == "the reference's UnetGenerator, ngf=4, 7 levels"
  trained = inference.load_trained(run)
  assert trained.config.model.generator == "reference_unet" and trained.config.model.depth == 7
  out = inference.stylize_folder(run, str(photos), str(tmp_path / "out"))
  plain = inference.stylize_folder_with_generator(f"torch:{pth}", str(photos), str(tmp_path / "plain"))
  assert sum(out["verdicts"].values()) == plain["num_stylized"] == 3
  for row in out["files"]:
    w, h = sizes[row["file"][:-4]]
    ours = np.asarray(Image.open(tmp_path / "out" / f"{row['file']}.stylized.png"), np.int32)
    alone = np.asarray(Image.open(tmp_path / "plain" / f"{row['file']}.stylized.png"), np.int32)
    assert ours.shape == alone.shape == (h, w, 3) and np.abs(ours - alone).max() <= 1
