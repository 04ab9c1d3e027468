"""The data-parallel mesh: one `data` axis over all devices of all processes.

The same code runs on 1 CPU, several forced host devices, GPUs and TPU pods:
batches are global `jax.Array`s sharded along `data`, parameters are replicated,
and `jax.jit` inserts the gradient all-reduce.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str | None, num_processes: int,
                           process_id: int) -> None:
  """Joins a multi-process run (no-op for a single process)."""
  if num_processes > 1:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)


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
