"""Pooling through im2col, and the argument checks that :mod:`jaxconv.nn`'s layers share with its pooling layers.

As in Deep Learning from Scratch's ``Pooling`` layer: the windows become the
rows of phi(x), and each row is reduced per channel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._geometry import ConvGeometry, check_windows_fit, conv_geometry, normalize_padding
from jaxconv._im2col import im2col
from jaxconv._validate import as_array, as_int, as_shape, check_batch_rank, check_choice, ntuple

Params = Any  # a pytree of arrays: a dict for one layer, a tuple of dicts for Sequential
Shape = tuple[int, ...]


def check_in_shape(in_shape: Any, layer: str, *, spatial: bool = False) -> Shape:
    """A layer's per-example ``in_shape`` as positive Python ints; with ``spatial``, ``(C, *spatial)``, 1 to 3 dims.

    >>> check_in_shape([3, np.int64(8)], "Conv", spatial=True)
    (3, 8)
    >>> check_in_shape((0,), "Dense")
    Traceback (most recent call last):
    ValueError: Dense in_shape must hold sizes >= 1, got (0,)
    """
    shape = as_shape(in_shape, f"{layer} in_shape")
    if any(size < 1 for size in shape):
        raise ValueError(f"{layer} in_shape must hold sizes >= 1, got {shape}")
    if spatial and len(shape) not in (2, 3, 4):
        raise ValueError(
            f"{layer} expects per-example inputs (C, *spatial) with 1, 2 or 3 spatial dims, got in_shape {shape}"
        )
    return shape


def _rank(value: Any) -> int | None:
    """How many dimensions a per-dimension option describes; None for a scalar (an int, a string)."""
    if isinstance(value, (np.ndarray, jax.Array)):
        return value.shape[0] if value.ndim else None
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return len(value)
    return None


def window_options(layer: str, **options: Any) -> dict[str, Any]:
    """A layer's window options, checked before the number of spatial dims is known, as hashable Python values.

    ``kernel_size``, ``stride`` and ``dilation`` become an int >= 1 or a tuple
    of them; ``padding`` any form :func:`jaxconv.conv` takes, normalised by
    :func:`jaxconv._geometry.normalize_padding` (a sequence to ``(lo, hi)``
    pairs, a string to upper case). Per-dimension options must agree in rank.

    >>> window_options("Conv", kernel_size=np.array([3, 3]), padding=[1, 2])
    {'kernel_size': (3, 3), 'padding': ((1, 1), (2, 2))}
    >>> window_options("MaxPool", kernel_size=(2, 2), stride=(1, 1, 1))
    Traceback (most recent call last):
    ValueError: MaxPool options disagree in rank: {'kernel_size': 2, 'stride': 3}
    """
    frozen: dict[str, Any] = {}
    ranks: dict[str, int] = {}
    for name, value in options.items():
        rank = _rank(value)
        if name != "padding":
            frozen[name] = as_int(value, name, minimum=1) if rank is None else ntuple(value, rank, name)
        elif isinstance(value, str) or rank is not None:
            frozen[name] = normalize_padding(value, 1 if rank is None else rank)
        else:
            frozen[name] = as_int(value, name)
        if rank is not None:
            ranks[name] = rank
    if len(set(ranks.values())) > 1:
        raise ValueError(f"{layer} options disagree in rank: {ranks}")
    if any(rank not in (1, 2, 3) for rank in ranks.values()):
        raise ValueError(f"{layer} options must have one entry per spatial dim (1, 2 or 3), got {options}")
    return frozen


def _lowest(dtype: Any) -> Any:
    """The fill that never wins a max: -inf for floats (and complex), the minimum int, False for bool."""
    if jnp.issubdtype(dtype, jnp.inexact):
        return -jnp.inf
    if jnp.issubdtype(dtype, jnp.integer):
        return jnp.iinfo(dtype).min
    return False


def _pool_geometry(in_spatial: Shape, kernel_size: Any, stride: Any, padding: Any) -> ConvGeometry:
    """The windows of a pooling; ``stride=None`` is the window (non-overlapping windows)."""
    kernel = ntuple(kernel_size, len(in_spatial), "kernel_size")
    geometry = conv_geometry(in_spatial, kernel, stride=kernel if stride is None else stride, padding=padding)
    check_windows_fit(geometry, what="pooling window")
    return geometry


def pool(
    x: jax.typing.ArrayLike,
    kernel_size: int | tuple[int, ...],
    *,
    stride: int | tuple[int, ...] | None = None,
    padding: Any = 0,
    reduce: Literal["max", "mean"] = "max",
) -> jax.Array:
    """Max or average pooling through im2col: each window becomes a row of phi(x), reduced per channel.

    ``im2col`` gives ``(N, P, C * K)`` with columns ordered ``(C, k)``, so
    reshaping to ``(N, P, C, K)`` puts each channel's window on the last axis.
    Max pooling fills the padding with the dtype's lowest value (``-inf``, the
    minimum int, False), so it never wins; average pooling with zeros, which
    count in the mean (PyTorch's default ``count_include_pad``) and give a
    floating result for integer input, as ``jnp.mean``. The gradient is JAX's
    autodiff of the gather and the reduction.

    Args:
      x: ``(N, C, *spatial)``, 1 to 3 spatial dims, any numeric or bool dtype.
      kernel_size: the window, int or one int per spatial dim.
      stride: defaults to ``kernel_size`` (non-overlapping windows).
      padding: as in :func:`jaxconv.conv`.
      reduce: ``"max"`` or ``"mean"``.

    Returns:
      ``(N, C, *out_spatial)``.

    >>> x = jnp.arange(16).reshape(1, 1, 4, 4)
    >>> pool(x, 2, padding=1)[0, 0]
    Array([[ 0,  2,  3],
           [ 8, 10, 11],
           [12, 14, 15]], dtype=int32)
    >>> pool(x, 2, reduce="mean")[0, 0]
    Array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    check_choice(reduce, ("max", "mean"), "reduce")
    x = as_array(x, "x")
    check_batch_rank(x.shape, "x")
    geometry = _pool_geometry(x.shape[2:], kernel_size, stride, padding)
    fill = jnp.asarray(_lowest(x.dtype) if reduce == "max" else 0, x.dtype)
    padded = lax.pad(x, fill, [(0, 0, 0)] * 2 + [(lo, hi, 0) for lo, hi in geometry.padding])
    cols = im2col(padded, geometry.kernel_size, stride=geometry.stride)
    n, num_windows, _ = cols.shape
    channels = x.shape[1]
    windows = cols.reshape(n, num_windows, channels, geometry.window_size)
    pooled = jnp.max(windows, axis=-1) if reduce == "max" else jnp.mean(windows, axis=-1)
    return pooled.transpose(0, 2, 1).reshape(n, channels, *geometry.out_spatial)


@dataclasses.dataclass(frozen=True)
class _Pool:
    """Pooling over windows of ``kernel_size`` (stride defaults to the window), reduced by ``reduce``."""

    reduce: ClassVar[Literal["max", "mean"]]

    kernel_size: int | tuple[int, ...] = 2
    stride: int | tuple[int, ...] | None = None
    padding: Any = 0

    def __post_init__(self) -> None:
        options = {"kernel_size": self.kernel_size, "padding": self.padding}
        options |= {} if self.stride is None else {"stride": self.stride}
        for name, value in window_options(type(self).__name__, **options).items():
            object.__setattr__(self, name, value)

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]:
        """No parameters; the spatial dims shrink by the stride."""
        in_shape = check_in_shape(in_shape, type(self).__name__, spatial=True)
        geometry = _pool_geometry(in_shape[1:], self.kernel_size, self.stride, self.padding)
        return {}, (in_shape[0], *geometry.out_spatial)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Each channel's ``reduce`` over each window."""
        return pool(x, self.kernel_size, stride=self.stride, padding=self.padding, reduce=self.reduce)


class MaxPool(_Pool):
    """Max pooling over windows of ``kernel_size`` (stride defaults to the window); see :func:`pool`.

    >>> MaxPool(2).init(jax.random.key(0), (3, 8, 8))[1]
    (3, 4, 4)
    """

    reduce = "max"


class AvgPool(_Pool):
    """Average pooling over windows of ``kernel_size`` (stride defaults to the window); see :func:`pool`.

    >>> AvgPool(2).apply({}, jnp.ones((1, 1, 4, 4))).shape
    (1, 1, 2, 2)
    """

    reduce = "mean"
