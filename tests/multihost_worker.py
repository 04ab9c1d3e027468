"""One process of a multi-process training run on loopback (used by test_reliability.py).

  python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT DATA_DIR WORKDIR OUT_JSON
"""
import json
import os
import sys

import numpy as np

if __name__ == "__main__":   # (as a module, `aux_stages` is imported by the test itself)
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  os.environ["JAX_PLATFORMS"] = "cpu"
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402


def aux_stages(c, run, workdir):
  """The detector and restorer stages on the GAN's outputs of the train crops (the same
  arrays in every process): (detector params, restorer params)."""
  from stylegan_ad import artifacts, stages
  c.detect.steps = c.correct.steps = 2
  ema = jax.device_get(run.state.ema["ab"])
  train = run.dataset.train_a
  out = stages.generator_outputs(run.models, ema, [train.images[i] for i in range(4)], None, c.data.crop_size,
                                 alternates=True)
  types = list(range(len(artifacts.names())))
  det = stages.train_detector(c, os.path.join(workdir, "detector"), out, run.mesh, types, None, out.alts)
  res = stages.train_restorer(c, os.path.join(workdir, "restorer"), out, run.mesh, types, det, None, out.alts)
  return det, res


def _leaves(tree):
  return [np.asarray(x).tolist() for x in jax.tree.leaves(jax.device_get(tree))]


def main():
  pid, n, port, data_dir, workdir, out = sys.argv[1:7]
  jax.config.update("jax_num_cpu_devices", 2)
  from experiments.configs import embedded as embedded_config
  from stylegan_ad.train import aux_trainer, loop
  c = embedded_config.get_config("tiny")
  c.data.data_dir = data_dir
  c.train.num_steps = 2
  c.distributed.coordinator = f"127.0.0.1:{port}"
  c.distributed.num_processes = int(n)
  c.distributed.process_id = int(pid)
  run = loop.train(c, workdir)
  n_a = len(run.dataset.train_a)
  read = [run.pipeline.indices(s, 0, n_a)[0].tolist() for s in range(2)]
  det, res = aux_stages(c, run, workdir)
  rows = aux_trainer.process_rows(c.detect.batch_size)
  with open(os.path.join(workdir, "detector", "metrics.jsonl")) as f:
    fed = [json.loads(line)["rows"] for line in f]   # the global batch each logged step trained on
  with open(out, "w") as f:
    json.dump({"process_index": jax.process_index(), "process_count": jax.process_count(),
               "device_count": jax.device_count(), "local_devices": jax.local_device_count(),
               "read": read, "g_params": _leaves(run.state.g_params), "aux_rows": [rows.start, rows.stop], "aux_fed": fed,
               "detector": _leaves(det), "restorer": _leaves(res)}, f)


if __name__ == "__main__":
  main()
