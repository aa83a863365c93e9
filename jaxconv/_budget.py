"""The memory budget for phi(I): its default per platform, and how a batch is split into chunks to honour it.

phi(I) holds ``FH*FW / stride^2`` times the elements of the input, so a large
batch is lowered and multiplied a chunk of images at a time (one loop),
each chunk's phi fitting in ``max_cols_bytes``. Everything here is trace-time
arithmetic on static Python ints.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax

from jaxconv._geometry import ConvGeometry
from jaxconv._validate import as_int

# CPU: at 8 MiB the value_and_grad of every CPU benchmark layer holds at most 1.17x lax's XLA temp memory
# (benchmarks/RESULTS.md, "Design choices").
CPU_MAX_COLS_BYTES = 8 * 2**20
# Accelerators: chunking costs a GPU far more than it saves (H200 value_and_grad, 8 MiB -> 256 MiB-1 GiB:
# 3-5x faster, issue 10's table); the budget is a slice of the device's memory, capped so one phi stays small
# next to what the layer's activations and gradients already hold.
ACCELERATOR_MEMORY_FRACTION = 1 / 32
ACCELERATOR_MIN_COLS_BYTES = 256 * 2**20
ACCELERATOR_MAX_COLS_BYTES = 2**30
PLATFORMS = ("cpu", "gpu", "cuda", "rocm", "tpu")


def default_max_cols_bytes(platform: str | None = None) -> int:
    """The default ``max_cols_bytes`` of a conv running on ``platform`` (default: JAX's default backend).

    * ``"cpu"``: 8 MiB, where chunking costs little and memory is shared.
    * ``"gpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``: 1/32 of the first such
      device's memory (``memory_stats()["bytes_limit"]``), clamped to
      [256 MiB, 1 GiB]; 1 GiB when the device does not report its memory.
      1/32 leaves room for the activations and gradients around the conv,
      so a batch that fits chunked does not run out of memory for phi.

    ``max_cols_bytes=`` on every conv overrides it.

    >>> default_max_cols_bytes("cpu") // 2**20
    8
    >>> default_max_cols_bytes("gpu") // 2**20 in range(256, 1025)
    True
    """
    platform = jax.default_backend() if platform is None else platform
    if not isinstance(platform, str):
        raise TypeError(f"platform must be a str, one of {PLATFORMS}, or None; got {platform!r}")
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS} or None, got {platform!r}")
    return _default_max_cols_bytes(platform)


@functools.cache
def _default_max_cols_bytes(platform: str) -> int:
    if platform == "cpu":
        return CPU_MAX_COLS_BYTES
    try:
        device = jax.devices("gpu" if platform in ("cuda", "rocm") else platform)[0]
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except RuntimeError:  # no such device here: asked about another platform
        limit = None
    if not limit:
        return ACCELERATOR_MAX_COLS_BYTES
    share = int(limit * ACCELERATOR_MEMORY_FRACTION)
    return min(ACCELERATOR_MAX_COLS_BYTES, max(ACCELERATOR_MIN_COLS_BYTES, share))


def resolve_max_cols_bytes(max_cols_bytes: Any) -> int | None:
    """``"auto"`` -> :func:`default_max_cols_bytes`; None stays None (no chunking); else a positive int."""
    if isinstance(max_cols_bytes, str):
        if max_cols_bytes != "auto":
            raise ValueError(f"max_cols_bytes must be a positive int, None or 'auto', got {max_cols_bytes!r}")
        return default_max_cols_bytes()
    if max_cols_bytes is None:
        return None
    return as_int(max_cols_bytes, "max_cols_bytes", minimum=1)


def cols_bytes_per_image(geometry: ConvGeometry, channels: int, itemsize: int) -> int:
    """Bytes of phi(I) for one image: ``OH*OW * C*FH*FW`` elements."""
    return geometry.num_windows * channels * geometry.window_size * itemsize


def batch_chunk(batch: int, item_bytes: int, max_cols_bytes: int | None, *, multiple: int = 1) -> int | None:
    """Items (images) per chunk so that one chunk's phi fits in ``max_cols_bytes``; None when all fit.

    At least one item is processed at a time, whatever the budget. Chunks are
    balanced: a divisor of the batch when one is at least half the largest
    chunk that fits, else the batch split as evenly as the budget allows (the
    last chunk padded with zero images).

    ``multiple`` (a divisor of ``batch``) makes every chunk a multiple of it:
    with the batch sharded over ``multiple`` devices, the chunks are strided
    (:func:`jaxconv._conv.over_batch_chunks`) so that each holds the same
    number of every device's images, and none of them has to move.

    >>> per_image = 64 * 32 * 32 * 9 * 4  # cifar2: 2.25 MiB of phi per 64-channel image
    >>> batch_chunk(64, per_image, 32 * 2**20)  # 14 images fit: 8 chunks of 8
    8
    >>> batch_chunk(61, per_image, 32 * 2**20)  # 61 is prime: 5 chunks of 13 (2 zero images padded)
    13
    >>> batch_chunk(64, per_image, 32 * 2**20, multiple=4), batch_chunk(64, per_image, 2**20, multiple=4)
    (8, 4)
    >>> batch_chunk(64, per_image, None) is None
    True
    """
    if max_cols_bytes is None:
        return None
    if batch % multiple:
        raise ValueError(f"multiple={multiple} must divide batch={batch}")
    largest = max(1, max_cols_bytes // max(item_bytes, 1))
    largest = max(multiple, largest - largest % multiple)
    if largest >= batch:
        return None
    divisor = max(d for d in range(multiple, largest + 1, multiple) if batch % d == 0)
    if multiple > 1 or 2 * divisor >= largest:
        return divisor
    chunks = -(-batch // largest)
    return -(-batch // chunks)


def _axes_size(mesh: Any, entry: Any) -> int:
    """Devices a PartitionSpec entry (None, an axis name, or a tuple of them) splits a dimension over."""
    names = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    return math.prod(dict(mesh.shape)[name] for name in names)


def batch_devices(x: jax.Array | jax.ShapeDtypeStruct, batch_axis: int = 0) -> int:
    """Devices ``x``'s batch axis is split over, where ``x`` says; else :func:`mesh_size`.

    An explicitly sharded type (``jax.make_mesh``'s default axes) and a
    concrete array say how the batch is split. A tracer over automatic axes
    (a NamedSharding input under ``jit``) does not: the batch may then be
    split over any of the mesh's devices, and chunks are sized for that.
    """
    sharding: Any = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if mesh is not None and not mesh.empty and jax.sharding.AxisType.Explicit in mesh.axis_types:
        spec = tuple(sharding.spec)
        return _axes_size(mesh, spec[batch_axis] if batch_axis < len(spec) else None)
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        concrete = x.sharding
        if isinstance(concrete, jax.sharding.NamedSharding):
            spec = tuple(concrete.spec)
            return _axes_size(concrete.mesh, spec[batch_axis] if batch_axis < len(spec) else None)
        if len(concrete.device_set) == 1:
            return 1
    return mesh_size()


def mesh_size() -> int:
    """Devices a batch may be sharded over: the current mesh's (``jax.set_mesh``), else every device.

    Inside ``shard_map`` the arrays are each device's own block: its manual axes do not count.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or not mesh.shape:
        return jax.device_count()
    manual = jax.sharding.AxisType.Manual
    return math.prod(size for (name, size), kind in zip(mesh.shape.items(), mesh.axis_types) if kind != manual)
