"""Fitting a detector and restorer for a generator trained elsewhere, sized for 2 CPU cores.

  python -m experiments.fit_generator --config=experiments/configs/imported.py \
      --generator=torch:latest_net_G_A.pth --photos=DIR --workdir=RUN

The generator's architecture comes from its file; this config sets the detector's and
restorer's (those of the main job, `embedded.py`) and the crops they learn from.
Argument "tiny": seconds-long fits for the test suite.
"""
from experiments.configs import embedded


def get_config(arg: str | None = None):
  if (arg or "") not in ("", "tiny"):
    raise ValueError(f"unknown argument {arg!r} of imported.py; known: '', 'tiny'")
  c = embedded.get_config("tiny" if arg == "tiny" else "")
  c.data.source = ""        # the photos are given to the command (--photos)
  c.detect.fuse = False     # fitted on true targets, which a folder of photos does not have
  return c
