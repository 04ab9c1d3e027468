"""The data-parallel mesh: one `data` axis over all devices of all processes.

The same code runs on 1 CPU, several forced host devices, GPUs and TPU pods:
batches are global `jax.Array`s sharded along `data`, parameters are replicated,
and `jax.jit` inserts the gradient all-reduce.
"""
from __future__ import annotations

import os
from typing import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


# Environment variables that give a multi-process job's size, set by the launchers whose
# environment `jax.distributed.initialize()` reads by itself: SLURM's srun (the step's task
# count: a batch script run once has SLURM_NTASKS too, and must not wait for other
# processes), Open MPI's mpirun, and a GKE TPU slice (TPU_WORKER_HOSTNAMES).
CLUSTER_SIZE_VARIABLES = ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE")


def cluster_processes(environ: Mapping[str, str] = os.environ) -> int:
  """How many processes the launcher's environment says the job has (1 outside one)."""
  for key in CLUSTER_SIZE_VARIABLES:
    if environ.get(key, "").strip().isdigit():
      return int(environ[key])
  hosts = environ.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h.strip()]) or 1


def initialize_distributed(coordinator_address: str | None, num_processes: int,
                           process_id: int, environ: Mapping[str, str] = os.environ) -> None:
  """Joins a multi-process run: with the flags when they name more than one process, else
  from the launcher's environment when it describes a multi-process job (JAX reads the
  coordinator, the process count and this process's id from it); a single process
  otherwise (no-op)."""
  if num_processes > 1:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  elif cluster_processes(environ) > 1:
    jax.distributed.initialize()


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: every device of every process).

  The axis is Auto, so jit propagates shardings and inserts the collectives.
  """
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(mesh: Mesh, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
  """Assembles each process's slice into global arrays sharded over `data`."""
  sharding = data_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}
