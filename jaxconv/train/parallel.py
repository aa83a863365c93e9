"""Data parallelism: a 1-D ``"data"`` mesh, parameters replicated, each batch split across the devices.

Everything here is JAX's own machinery: a :class:`jax.sharding.Mesh`,
``NamedSharding(mesh, P())`` for what every device holds whole (parameters,
optimizer state, the data set) and ``NamedSharding(mesh, P("data"))`` for
what it splits (the examples of a batch). ``jit`` partitions the step from
these shardings: each device computes the loss and gradients of its share of
the batch and XLA inserts the all-reduce that sums the gradients, so every
device applies the same update. Several processes (hosts) join one mesh
through ``jax.distributed.initialize``; each then feeds its own rows of every
batch (``jax.make_array_from_process_local_data``).
"""

from __future__ import annotations

from typing import Any, cast

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxconv._validate import as_int

AXIS = "data"


def initialize_distributed(coordinator_address: str | None, num_processes: int | None, process_id: int | None) -> None:
    """``jax.distributed.initialize`` for a multi-process run; nothing when no option is given.

    Must run before JAX touches a device. On CPU the processes exchange
    gradients through gloo over TCP.
    """
    given = {"--coordinator-address": coordinator_address, "--num-processes": num_processes, "--process-id": process_id}
    if all(value is None for value in given.values()):
        return
    missing = [flag for flag, value in given.items() if value is None]
    if missing:
        raise ValueError(f"a multi-process run needs all of {', '.join(given)}; missing {', '.join(missing)}")
    num_processes = as_int(num_processes, "--num-processes", minimum=1)
    process_id = as_int(process_id, "--process-id", minimum=0)
    if process_id >= num_processes:
        raise ValueError(f"--process-id must be in [0, {num_processes}), got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)


def make_mesh(devices_per_process: int | None = None) -> Mesh:
    """A 1-D ``"data"`` mesh over the first ``devices_per_process`` local devices of every process (None: all).

    >>> mesh = make_mesh(1)
    >>> mesh.axis_names, mesh.size
    (('data',), 1)
    """
    local = jax.local_device_count()
    count = local if devices_per_process is None else as_int(devices_per_process, "devices", minimum=1)
    if count > local:
        raise ValueError(
            f"devices is {count} but this process has {local} {jax.default_backend()} device(s); "
            "on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N"
        )
    by_process = [
        sorted((device for device in jax.devices() if device.process_index == process), key=lambda d: d.id)[:count]
        for process in range(jax.process_count())
    ]
    return Mesh(np.array([device for devices in by_process for device in devices]), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def split(mesh: Mesh) -> NamedSharding:
    """The leading axis (the examples) divided among the devices, in mesh order."""
    return NamedSharding(mesh, P(AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """``tree``'s arrays on every device of ``mesh`` (every process passes the same values)."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda leaf: jax.make_array_from_process_local_data(sharding, np.asarray(leaf)), tree)


def split_rows(rows: np.ndarray, mesh: Mesh) -> jax.Array:
    """The global ``rows`` (the same in every process) as one array split along its first axis.

    Each process contributes the rows its own devices hold.
    """
    sharding = split(mesh)
    if jax.process_count() == 1:
        return jax.device_put(rows, sharding)
    # Every device of a 1-D split holds rows, so no index is None.
    indices = cast("list[tuple[slice, ...]]", list(sharding.addressable_devices_indices_map(rows.shape).values()))
    start, stop = min(index[0].start or 0 for index in indices), max(index[0].stop or len(rows) for index in indices)
    return jax.make_array_from_process_local_data(sharding, rows[start:stop], rows.shape)


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is set in any process (a collective: every process must call it at the same point)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))


def describe(mesh: Mesh) -> str:
    """``"4 cpu devices (1 process)"``: what a run's first lines report."""
    platform, processes = mesh.devices.flat[0].platform, jax.process_count()
    devices = f"{mesh.size} {platform} device{'s' if mesh.size > 1 else ''}"
    return f"{devices} ({processes} process{'es' if processes > 1 else ''})"
