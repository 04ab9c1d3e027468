"""One process of a multi-process training run on loopback (used by test_reliability.py).

  python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT DATA_DIR WORKDIR OUT_JSON
"""
import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402


def main():
  pid, n, port, data_dir, workdir, out = sys.argv[1:7]
  jax.config.update("jax_num_cpu_devices", 2)
  from experiments.configs import embedded as embedded_config
  from stylegan_ad.train import loop
  c = embedded_config.get_config("tiny")
  c.data.data_dir = data_dir
  c.train.num_steps = 2
  c.distributed.coordinator = f"127.0.0.1:{port}"
  c.distributed.num_processes = int(n)
  c.distributed.process_id = int(pid)
  run = loop.train(c, workdir)
  n_a = len(run.dataset.train_a)
  read = [run.pipeline.indices(s, 0, n_a)[0].tolist() for s in range(2)]
  leaves = [np.asarray(x).tolist() for x in jax.tree.leaves(jax.device_get(run.state.g_params))]
  with open(out, "w") as f:
    json.dump({"process_index": jax.process_index(), "process_count": jax.process_count(),
               "device_count": jax.device_count(), "local_devices": jax.local_device_count(),
               "read": read, "g_params": leaves}, f)


if __name__ == "__main__":
  main()
