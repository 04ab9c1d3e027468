"""Test setup: 4 forced CPU devices, a fast compile mode, one shared embedded dataset."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# No persistent compilation cache (`loop.enable_compilation_cache`): writing executables
# into it crashed the test process with a segmentation fault inside XLA's serializer,
# once in several full runs; a cache path in $STYLEGAN_AD_JAX_CACHE turns it back on.
os.environ.setdefault("STYLEGAN_AD_JAX_CACHE", "off")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)


def pytest_configure(config):
  config.addinivalue_line("markers", "heavy: a check of minutes (a killed or two-process training run, the main "
                          "job run twice); `bash scripts/test.sh --heavy` runs them, the default suite does not")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A data dir with the embedded cartoon dataset at 64x64, built once per session."""
  from stylegan_ad.data import embedded
  d = str(tmp_path_factory.mktemp("data"))
  embedded.prepare("cartoon", 64, d)
  return d


@pytest.fixture(scope="session")
def dataset(data_dir):
  from stylegan_ad.data import sources
  return sources.load("embedded:cartoon", crop_size=64, data_dir=data_dir)
