"""A GAN training run in a `gs://` workdir, on a local GCS emulator (no network, no account).

  python scripts/remote_workdir.py --tries=3 --out=runs/remote_workdir.json

Each try trains the tiny embedded config into gs://runs/tryN, stops it at step 3,
resumes it to the end, and compares every array of the final state with the same run
made unbroken in a local folder (bit-identical or not), and lists what the bucket holds.
The emulator (gcp-storage-emulator, installed with `[test]`) ignores conditional writes,
which TensorStore's checkpoint manifest relies on, so a try can fail inside it; the JSON
records each try's outcome and error. About a minute a try on 2 cores.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_TRIES = flags.DEFINE_integer("tries", 3, "stop-and-resume runs to make")
_OUT = flags.DEFINE_string("out", "runs/remote_workdir.json", "where the outcome goes (JSON)")


def main(argv):
  del argv
  os.environ.setdefault("STYLEGAN_AD_JAX_CACHE", "off")
  from tests import gcs_emulator
  gcs_emulator.start("runs")
  bucket = "gs://runs"
  import jax
  import numpy as np
  from experiments.configs import embedded as embedded_config
  from stylegan_ad import files
  from stylegan_ad.data import embedded
  from stylegan_ad.train import loop

  tmp = tempfile.mkdtemp(prefix="remote_workdir_")
  config = embedded_config.get_config("tiny")
  config.data.data_dir = os.path.join(tmp, "data")
  embedded.prepare("cartoon", 64, config.data.data_dir)
  whole = jax.device_get(loop.train(config, os.path.join(tmp, "whole")).state)
  tries = []
  for i in range(_TRIES.value):
    run, t0 = f"{bucket}/try{i}", time.time()
    try:
      loop.train(config, run, stop_after=3)
      resumed = jax.device_get(loop.train(config, run).state)
      same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed)))
      tries.append({"run": run, "ok": True, "bit_identical_to_unbroken_local_run": same,
                    "holds": files.listdir(run), "checkpoints": files.listdir(f"{run}/checkpoints"),
                    "seconds": round(time.time() - t0, 1)})
    except Exception as e:  # the emulator's failures are the finding: recorded, not raised
      tries.append({"run": run, "ok": False, "error": f"{type(e).__name__}: {str(e)[:300]}",
                    "seconds": round(time.time() - t0, 1)})
    print(json.dumps(tries[-1]), flush=True)
  out = {"tries": tries, "ok": sum(t["ok"] for t in tries),
         "bit_identical": sum(t.get("bit_identical_to_unbroken_local_run", False) for t in tries)}
  files.makedirs(os.path.dirname(os.path.abspath(_OUT.value)))
  files.write_json(_OUT.value, out)
  print(f"{out['ok']} of {len(tries)} tries completed, {out['bit_identical']} bit-identical -> {_OUT.value}")
  sys.stdout.flush()
  os._exit(0)   # (the emulator's server thread is not a daemon)


if __name__ == "__main__":
  app.run(main)
