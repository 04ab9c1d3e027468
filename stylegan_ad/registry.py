"""Extension points by name: a new network or artifact type is its code plus one line.

    @GENERATORS.register("my_gen")             # above the class, in its module
    class MyGenerator(nn.Module): ...

then `model.generator = "my_gen"` in a config. The registries and the config keys
that name their entries (saved in every run's `config.json`, so a run loads with the
classes it was trained with):

    GENERATORS      model.generator      (stylegan_ad/models/generator.py)
    DISCRIMINATORS  model.discriminator  (stylegan_ad/models/discriminator.py)
    DETECTORS       detect.arch          (stylegan_ad/models/detector.py)
    RESTORERS       correct.arch         (stylegan_ad/models/restorer.py)
    ARTIFACTS       detect.artifact_types, a list (stylegan_ad/artifacts.py)

`make(name, **settings)` passes a class only the settings it declares (a config
carries the settings of them all). A module that registers must be imported before
the name is used: write a new network in its kind's module (or import yours from
`stylegan_ad/models/__init__.py`), a new artifact type in `artifacts.py`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

from stylegan_ad.errors import ConfigError


class Registry:
  """Name -> class (or function) for one config key."""

  def __init__(self, key: str):
    self.key = key
    self._items: dict[str, Any] = {}

  def register(self, name: str) -> Callable[[Any], Any]:
    def add(obj):
      if name in self._items:
        raise ValueError(f"{self.key}: {name!r} is registered twice ({self._items[name]!r}, {obj!r})")
      self._items[name] = obj
      return obj
    return add

  def __getitem__(self, name: str) -> Any:
    if name not in self._items:
      raise ConfigError(f"config key {self.key}: must be one of {list(self._items)}, got {name!r}")
    return self._items[name]

  def __contains__(self, name: object) -> bool:
    return name in self._items

  def __iter__(self) -> Iterator[str]:
    return iter(self._items)

  def __len__(self) -> int:
    return len(self._items)

  def make(self, name: str, **settings) -> Any:
    """The class registered as `name`, built with the `settings` it declares."""
    cls = self[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in settings.items() if k in fields})


GENERATORS = Registry("model.generator")
DISCRIMINATORS = Registry("model.discriminator")
DETECTORS = Registry("detect.arch")
RESTORERS = Registry("correct.arch")
ARTIFACTS = Registry("detect.artifact_types")
