"""Extension by name: a new network or artifact type is its code plus one registering
line, picked by a config key that the run saves."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn

from stylegan_ad import artifacts, configs, registry, stages
from stylegan_ad.errors import ConfigError
from stylegan_ad.models.detector import Detector


@pytest.fixture
def scratch(monkeypatch):
  """Registries restored after the test (a registration is for the process's life)."""
  for r in (registry.GENERATORS, registry.DISCRIMINATORS, registry.DETECTORS, registry.RESTORERS,
            registry.ARTIFACTS):
    monkeypatch.setattr(r, "_items", dict(r._items))


def test_every_built_in_is_registered_under_its_config_name():
  c = configs.default_config()
  assert {"resnet", "unet", "residual_unet", "reference_unet"} <= set(registry.GENERATORS)
  assert c.model.discriminator in registry.DISCRIMINATORS and c.detect.arch in registry.DETECTORS
  assert c.correct.arch in registry.RESTORERS
  assert tuple(c.detect.artifact_types) == artifacts.names() == tuple(registry.ARTIFACTS)
  assert len(artifacts.names()) == 10 and artifacts.type_id("warp") == 5


def test_a_new_detector_is_one_class_and_one_line(scratch):
  @registry.DETECTORS.register("wide")
  class WideDetector(Detector):   # the new network (here: the U-Net, one level deeper)
    depth: int = 4

  c = configs.default_config()
  c.detect.arch = "wide"
  configs.validate(c)
  model = stages.make_detector(c)
  assert isinstance(model, WideDetector) and model.features == c.detect.features
  assert model.num_types == len(c.detect.artifact_types)   # settings it declares, from the config
  c.detect.arch = "nope"
  with pytest.raises(ConfigError, match=r"config key detect.arch: must be one of \['unet', 'wide'\], got 'nope'"):
    configs.validate(c)
  with pytest.raises(ValueError, match="registered twice"):
    registry.DETECTORS.register("wide")(WideDetector)


def test_a_new_artifact_type_is_one_function_and_one_line(scratch):
  @registry.ARTIFACTS.register("inverted")
  def _inverted(x, key, s, content, other):
    return -x

  assert artifacts.names()[-1] == "inverted"
  image = jnp.asarray(np.random.default_rng(0).uniform(-0.9, 0.9, (32, 32, 3)), jnp.float32)
  out, mask, kind = jax.jit(artifacts.artifact("inverted"))(image, jax.random.key(0), 1.0)
  assert int(kind) == 10 and float(mask.sum()) > 0
  np.testing.assert_allclose(np.asarray(out)[np.asarray(mask) > 0], -np.asarray(image)[np.asarray(mask) > 0])
  # a run that names it trains a detector whose type head has a class per named type,
  # in the config's order; a run made before it keeps its ten classes
  c = configs.default_config()
  c.detect.artifact_types = ("inverted", "noise", "blur")
  configs.validate(c)
  assert stages.make_detector(c).num_types == 3
  table = stages.type_classes(c, stages.artifact_ids(c))
  assert (table[10], table[0], table[1]) == (0, 1, 2)
  with pytest.raises(ValueError, match=r"artifact ids \[5\] are not in detect.artifact_types"):
    stages.type_classes(c, (0, 5))
  for bad, message in ((("noise", "noise"), "must name each type once"), ((), "must name each type once"),
                       (("noise", "smudge"), "detect.artifact_types: must be one of")):
    c.detect.artifact_types = bad
    with pytest.raises(ConfigError, match=message):
      configs.validate(c)


def test_make_passes_only_the_settings_a_class_declares():
  g = registry.GENERATORS.make("residual_unet", ngf=4, depth=2, n_blocks=9, upsample="transpose")
  assert (g.ngf, g.depth) == (4, 2)
  d = registry.DISCRIMINATORS.make("patchgan", ndf=8, n_layers=2, num_scales=1, spectral_norm=False, unused=1)
  assert isinstance(d, nn.Module) and (d.ndf, d.n_layers) == (8, 2)
