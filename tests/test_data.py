import glob
import hashlib
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from stylegan_ad import parallel
from stylegan_ad.data import embedded, images, pipeline, sources, styles
from stylegan_ad.errors import ConfigError, DataError


def _record_digests(data_dir):
  files = sorted(glob.glob(os.path.join(data_dir, "embedded_style", "*", "*", "*.array_record*")))
  assert files
  return [hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files]


def test_train_test_disjoint_by_photo(dataset):
  train = dataset.train_a.images._source
  test = dataset.test_a.images._source
  train_ids = {int(train[i]["photo_id"]) for i in range(len(train))}
  test_ids = {int(test[i]["photo_id"]) for i in range(len(test))}
  assert train_ids and test_ids and not train_ids & test_ids
  names = {embedded.PHOTOS[i].name for i in test_ids}
  # the stereo pair is one scene: both halves on the same side
  assert {"motorcycle_left", "motorcycle_right"} <= names


def test_domains_a_and_b_come_from_different_photos(dataset):
  src = dataset.train_a.images._source
  a = {int(src[i]["photo_id"]) for i in dataset.train_a.images._indices}
  b = {int(src[i]["photo_id"]) for i in dataset.train_b.images._indices}
  assert a and b and not a & b


def test_targets_are_the_style_operator(dataset):
  x, t = dataset.test_a.images[5], dataset.test_a.targets[5]
  np.testing.assert_array_equal(styles.cartoon(x), t)


def _bilateral_one_pass(x, radius=2, sigma_s=2.0, sigma_r=0.12):
  """The bilateral filter as one NumPy expression over the whole image (the reference)."""
  h, w, _ = x.shape
  pad = np.pad(x, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
  num, den = np.zeros_like(x), np.zeros(x.shape[:2] + (1,), np.float32)
  for dy in range(-radius, radius + 1):
    for dx in range(-radius, radius + 1):
      shifted = pad[radius + dy:radius + dy + h, radius + dx:radius + dx + w]
      spatial = np.exp(-(dy * dy + dx * dx) / (2 * sigma_s ** 2))
      weight = spatial * np.exp(-np.sum((shifted - x) ** 2, axis=-1, keepdims=True) / (2 * sigma_r ** 2))
      num += weight * shifted
      den += weight
  return (num / den).astype(np.float32)


@pytest.mark.parametrize("shape", [(5, 9), (32, 40), (75, 41)])
def test_bilateral_bands_match_one_pass(shape):
  """The style operator's bilateral filter runs on bands of rows, a thread each: the
  same bits as one pass (one band, whole bands, a short last band)."""
  x = np.random.default_rng(sum(shape)).random(shape + (3,), np.float32)
  np.testing.assert_array_equal(styles._bilateral(x), _bilateral_one_pass(x))
  photo = styles.paper_texture()[:shape[0], :shape[1], None].repeat(3, -1) * np.float32([1.0, 0.8, 0.6])
  np.testing.assert_array_equal(styles._bilateral(photo), _bilateral_one_pass(photo))


def test_reference_photo_is_neither_trained_nor_tested_on(dataset):
  ref = dataset.reference_photos
  assert len(ref) == 1 and ref.images[0].shape[:2] == (400, 600)  # coffee
  np.testing.assert_array_equal(styles.cartoon(ref.images[0]), ref.targets[0])
  ref_id = next(i for i, p in enumerate(embedded.PHOTOS) if p.split == "reference")
  for split in (dataset.train_pairs, dataset.test_a):
    src = split.images._source
    assert ref_id not in {int(src[i]["photo_id"]) for i in range(len(src))}


def test_build_is_byte_identical(data_dir, tmp_path):
  embedded.prepare("cartoon", 64, str(tmp_path))
  assert _record_digests(str(tmp_path)) == _record_digests(data_dir)


def test_field_views_decode_each_record_once_within_the_cache_budget(monkeypatch):
  """Batches draw from decoded records kept in memory (read-only), up to CACHE_BYTES for
  the process; past it, records are decoded on each read and nothing more is kept."""
  reads = []

  class Source:
    def __len__(self):
      return 4

    def __getitem__(self, i):
      reads.append(i)
      return {"image": np.full((8, 8, 3), i, np.uint8)}

  monkeypatch.setattr(sources, "_cached_bytes", 0)
  monkeypatch.setattr(sources, "CACHE_BYTES", 3 * 8 * 8 * 3)
  view = sources.FieldView(Source(), "image", [3, 2, 1, 0])
  first = [view[i].copy() for i in range(4)]
  second = [view[i] for i in range(4)]
  assert all(np.array_equal(a, b) for a, b in zip(first, second)) and second[0][0, 0, 0] == 3
  assert reads == [3, 2, 1, 0, 0]   # the 4th record is past the budget: decoded on each read
  assert not view[0].flags.writeable and view[3].flags.writeable
  del view
  assert sources._cached_bytes == 0


def test_unknown_style_and_source_and_size(data_dir):
  with pytest.raises(ConfigError, match="unknown style 'oil'"):
    sources.load("embedded:oil", crop_size=64, data_dir=data_dir)
  with pytest.raises(ConfigError, match="unknown data source 'nope:x'"):
    sources.load("nope:x", crop_size=64, data_dir=data_dir)
  with pytest.raises(ConfigError, match="unknown data source 'no_such_dataset_xyz'"):
    sources.load("no_such_dataset_xyz", crop_size=64, data_dir=data_dir)
  with pytest.raises(ConfigError, match="crop size must be one of"):
    sources.load("embedded:cartoon", crop_size=100, data_dir=data_dir)


def _pipe(dataset, seed, **kw):
  return pipeline.Pipeline({"a": {"a": dataset.train_a.images, "target": dataset.train_a.targets},
                            "b": {"b": dataset.train_b.images}},
                           global_batch=4, crop=64, seed=seed, **kw)


def test_pipeline_order_depends_only_on_seed(dataset):
  p1, p2, p3 = _pipe(dataset, 0), _pipe(dataset, 0), _pipe(dataset, 1)
  b1 = [p1.next_local() for _ in range(3)]
  b2 = [p2.next_local() for _ in range(3)]
  b3 = [p3.next_local() for _ in range(3)]
  for x, y in zip(b1, b2):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  assert not np.array_equal(b1[0]["a"], b3[0]["a"])
  assert b1[0]["a"].dtype == np.float32 and b1[0]["a"].shape == (4, 64, 64, 3)
  assert -1.0 <= b1[0]["a"].min() and b1[0]["a"].max() <= 1.0


def test_pipeline_restored_position_continues_exactly(dataset):
  p = _pipe(dataset, 3)
  for _ in range(5):
    p.next_local()
  state = p.get_state()
  expected = [p.next_local() for _ in range(3)]
  q = _pipe(dataset, 3)
  q.set_state(state)
  for e in expected:
    got = q.next_local()
    for k in e:
      np.testing.assert_array_equal(e[k], got[k])
  with pytest.raises(ConfigError, match="seed"):
    _pipe(dataset, 4).set_state(state)


def test_shuffled_unpaired_split_draws_x_and_s_of_every_train_photo_apart(dataset):
  import dataclasses

  from experiments.configs import embedded as embedded_config
  from stylegan_ad import configs
  from stylegan_ad.train import loop
  c = embedded_config.get_config("unpaired")
  c.data.crop_size, c.data.train_crop = 64, 0
  assert loop.make_pipeline(c, dataset).streams["b"]["b"] is dataset.train_b.images  # default: other photos
  c.data.unpaired_split = "shuffled"
  configs.validate(c)
  pipe = loop.make_pipeline(c, dataset)
  pairs = dataset.train_pairs
  assert pipe.streams["a"]["a"] is pairs.images and pipe.streams["b"]["b"] is pairs.targets
  src = pairs.images._source
  photo = lambda i: embedded.PHOTOS[int(src[int(pairs.images._indices[i])]["photo_id"])].name  # noqa: E731
  n = len(pairs)
  a_idx = np.concatenate([pipe.indices(s, 0, n)[0] for s in range(n // 4)])
  b_idx = np.concatenate([pipe.indices(s, 1, n)[0] for s in range(n // 4)])
  # one epoch of each side covers every train photo; the sides are drawn in their own orders
  assert {photo(i) for i in a_idx} == {photo(i) for i in b_idx} == {
      p.name for p in embedded.PHOTOS if p.split == "train"}
  assert np.mean(a_idx == b_idx) < 0.02
  for step in range(8):  # B's crop is never S of the A crop beside it
    batch = pipe.local_arrays(step)
    assert not any(np.array_equal(b, t) for b, t in zip(batch["b"], batch["target"]))
  with pytest.raises(ConfigError, match="data.unpaired_split: 'shuffled' needs targets"):
    loop.make_pipeline(c, dataclasses.replace(dataset, train_pairs=None))
  c.data.unpaired_split = "pairs"
  with pytest.raises(ConfigError, match="data.unpaired_split: must be one of"):
    configs.validate(c)


def test_pipeline_epochs_cover_every_record(dataset):
  p = _pipe(dataset, 0)
  n = len(dataset.train_a)
  assert n % 4 == 0
  seen = np.concatenate([p.indices(s, 0, n)[0] for s in range(n // 4)])  # exactly one epoch
  assert sorted(seen.tolist()) == list(range(n))
  second = np.concatenate([p.indices(s, 0, n)[0] for s in range(n // 4, n // 2)])
  assert sorted(second.tolist()) == list(range(n)) and not np.array_equal(seen, second)


def test_per_process_shards_disjoint_and_cover(dataset):
  whole = _pipe(dataset, 0, process_index=0, process_count=1)
  parts = [_pipe(dataset, 0, process_index=i, process_count=2) for i in range(2)]
  n = len(dataset.train_a)
  for step in range(4):
    idx = [p.indices(step, 0, n)[0] for p in parts]
    assert not set(idx[0].tolist()) & set(idx[1].tolist())
    np.testing.assert_array_equal(np.concatenate(idx), whole.indices(step, 0, n)[0])
    full = whole.local_arrays(step)["a"]
    np.testing.assert_array_equal(np.concatenate([p.local_arrays(step)["a"] for p in parts]), full)


def test_global_batch_is_sharded_over_devices(dataset):
  mesh = parallel.make_mesh()
  batch = _pipe(dataset, 0).next_global(mesh)
  assert jax.device_count() == 4
  assert batch["a"].shape == (4, 64, 64, 3)
  assert len(batch["a"].sharding.device_set) == 4
  assert batch["a"].addressable_shards[0].data.shape == (1, 64, 64, 3)


def test_tfds_source_under_mock_data(tmp_path):
  with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
    ds = sources.load("cycle_gan/monet2photo", crop_size=16, data_dir=str(tmp_path))
    assert len(ds.train_a) == 5 and len(ds.test_a) == 5
    p = pipeline.Pipeline({"a": {"a": ds.train_a.images}, "b": {"b": ds.train_b.images}},
                          global_batch=2, crop=16, seed=0)
    b = p.next_local()
    assert b["a"].shape == (2, 16, 16, 3) and b["b"].shape == (2, 16, 16, 3)


# -- folders and bad input ---------------------------------------------------

def _save(path, array, mode=None, **kw):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array, mode).save(path, **kw) if mode else Image.fromarray(array).save(path, **kw)


def _snapshot(root):
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      p = os.path.join(d, f)
      out[p] = (os.stat(p).st_mtime_ns, hashlib.sha256(open(p, "rb").read()).hexdigest())
  return out


def _good_folder(root, n=3, size=40):
  rng = np.random.default_rng(0)
  for split in ("trainA", "trainB", "testA", "testB"):
    for i in range(n):
      _save(os.path.join(root, split, f"{i}.png"), rng.integers(0, 255, (size, size + 8, 3), np.uint8))


def test_folder_source_converts_modes_and_never_writes(tmp_path):
  root = str(tmp_path / "d")
  _good_folder(root)
  rng = np.random.default_rng(1)
  _save(os.path.join(root, "trainA", "gray.png"), rng.integers(0, 255, (40, 40), np.uint8))
  _save(os.path.join(root, "trainA", "rgba.png"), rng.integers(0, 255, (40, 40, 4), np.uint8))
  Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).convert("P").save(
      os.path.join(root, "trainA", "pal.png"))
  Image.fromarray(rng.integers(0, 65535, (40, 40), np.uint16)).save(os.path.join(root, "trainB", "d16.png"))
  before = _snapshot(root)
  ds = sources.load(f"folder:{root}", crop_size=32)
  assert len(ds.train_a) == 6 and len(ds.train_b) == 4
  for im in list(ds.train_a.images) + list(ds.train_b.images):
    assert im.dtype == np.uint8 and im.shape[2] == 3 and min(im.shape[:2]) == 36
  assert _snapshot(root) == before


@pytest.mark.parametrize("case,match", [
    ("missing", "no such folder"),
    ("empty", "empty folder"),
    ("no_trainB", "no trainB/ folder"),
    ("truncated", r"bad\.png: cannot read image"),
    ("text", r"notes\.png: not an image"),
    ("zero", r"zero\.png: empty file"),
    ("small", r"tiny\.png: 10x10 is smaller than the 32x32 crop"),
])
def test_folder_bad_input_names_the_file(tmp_path, case, match):
  root = str(tmp_path / "d")
  if case != "missing":
    os.makedirs(root)
  if case not in ("missing", "empty"):
    _good_folder(root)
  if case == "no_trainB":
    import shutil
    shutil.rmtree(os.path.join(root, "trainB"))
  if case == "truncated":
    _save(os.path.join(root, "trainA", "bad.png"), np.zeros((40, 40, 3), np.uint8))
    data = open(os.path.join(root, "trainA", "bad.png"), "rb").read()
    open(os.path.join(root, "trainA", "bad.png"), "wb").write(data[: len(data) // 2])
  if case == "text":
    open(os.path.join(root, "trainA", "notes.png"), "w").write("hello")
  if case == "zero":
    open(os.path.join(root, "trainB", "zero.png"), "wb").close()
  if case == "small":
    _save(os.path.join(root, "trainA", "tiny.png"), np.zeros((10, 10, 3), np.uint8))
  before = _snapshot(root) if os.path.isdir(root) else None
  with pytest.raises(DataError, match=match) as err:
    sources.load(f"folder:{root}", crop_size=32)
  assert "\n" not in str(err.value)
  if before is not None:
    assert _snapshot(root) == before


def test_read_rgb_exif_orientation(tmp_path):
  arr = np.zeros((10, 20, 3), np.uint8)
  arr[:, :10] = 255
  im = Image.fromarray(arr)
  exif = im.getexif()
  exif[0x0112] = 6  # rotate 90 CW on display
  path = str(tmp_path / "r.jpg")
  im.save(path, exif=exif)
  out = images.read_rgb(path)
  assert out.shape == (20, 10, 3)


def test_processes_join_from_the_flags_or_from_the_launchers_environment(monkeypatch):
  from stylegan_ad import parallel
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  parallel.initialize_distributed("", 1, 0, environ={})                       # one process: nothing
  parallel.initialize_distributed("", 1, 0, environ={"SLURM_NTASKS": "4"})   # a batch script, not srun
  assert calls == []
  parallel.initialize_distributed("10.0.0.1:1234", 2, 1, environ={})
  assert calls == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}]
  for env in ({"SLURM_STEP_NUM_TASKS": "8"}, {"OMPI_COMM_WORLD_SIZE": "2"}, {"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"}):
    calls.clear()
    parallel.initialize_distributed("", 1, 0, environ=env)
    assert calls == [{}], env        # JAX reads the coordinator, count and id from the environment
  assert parallel.cluster_processes({"TPU_WORKER_HOSTNAMES": "t0"}) == 1
