"""im2col (phi in the note) and col2im, its exact adjoint.

``im2col`` lowers a batch of images ``(N, C, *spatial)`` to ``phi(I)`` of
shape ``(N, OH*OW, C*FH*FW)``: one row per output position, one column per
(channel, kernel offset), channel-major, so that ``w.reshape(FN, -1).T`` is
the flattened filter matrix ``F_f`` of the note and ``O_f = phi(I) F_f``.

The rows are read with a single ``jnp`` gather whose integer index array is
built with NumPy at trace time (:func:`window_indices`). ``col2im`` sends
``dL/dphi`` back to ``dL/dI``: every window's contribution is added to the
pixels it read, so overlapping windows sum. It has two forms with the same
indices: a scatter-add, and one strided ``lax.pad`` per kernel offset summed,
which XLA fuses into one loop and is the faster default (see
``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._geometry import ConvGeometry, check_windows_fit, conv_geometry

Col2imMethod = Literal["pad_add", "scatter_add"]
COL2IM_METHODS = ("pad_add", "scatter_add")


# --- index construction: NumPy, trace time, static ints -----------------------


@functools.lru_cache(maxsize=512)
def window_indices(geometry: ConvGeometry) -> np.ndarray:
    """Flat positions in the padded input read by each (window, kernel offset).

    Returns an int array of shape ``(OH*OW, FH*FW)`` (one row per output
    position, row-major over the output, one column per kernel offset,
    row-major over the kernel) indexing the row-major flattened
    ``geometry.padded_spatial``.

    >>> g = conv_geometry((3, 3), (2, 2))
    >>> window_indices(g)
    array([[0, 1, 3, 4],
           [1, 2, 4, 5],
           [3, 4, 6, 7],
           [4, 5, 7, 8]], dtype=int32)
    """
    n = geometry.ndim
    out, kernel = geometry.out_spatial, geometry.kernel_size
    # Row-major strides of the padded input, in elements.
    place = np.cumprod((1,) + geometry.padded_spatial[::-1])[:-1][::-1]
    flat = np.zeros(out + kernel, dtype=np.int64)
    for d in range(n):
        # Window o, kernel offset k reads padded position o * stride + k * dilation.
        pos = np.arange(out[d])[:, None] * geometry.stride[d] + np.arange(kernel[d])[None, :] * geometry.dilation[d]
        shape = [1] * (2 * n)
        shape[d], shape[n + d] = out[d], kernel[d]
        flat = flat + (pos * place[d]).reshape(shape)
    dtype = np.int32 if math.prod(geometry.padded_spatial) < 2**31 else np.int64
    return flat.reshape(geometry.num_windows, geometry.window_size).astype(dtype)


def _pad_config(geometry: ConvGeometry) -> list[tuple[int, int, int]]:
    return [(0, 0, 0), (0, 0, 0)] + [(lo, hi, ld - 1) for (lo, hi), ld in zip(geometry.padding, geometry.lhs_dilation)]


# --- array work: jnp / lax, inside jit ---------------------------------------


def pad_input(x: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """Dilates (``lhs_dilation``) and pads (possibly negatively) the spatial dims."""
    return lax.pad(x, jnp.zeros((), x.dtype), _pad_config(geometry))


def unpad_input(padded: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """The adjoint of :func:`pad_input`: crop the pads (re-zero cropped edges), drop the holes."""
    inverse = [(-lo, -hi, 0) for lo, hi, _ in _pad_config(geometry)]
    unpadded = lax.pad(padded, jnp.zeros((), padded.dtype), inverse)
    strides = (1, 1) + geometry.lhs_dilation
    return lax.slice(unpadded, (0,) * padded.ndim, unpadded.shape, strides)


def _patches(x: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """The one gather: ``(N, C, *spatial) -> (N, C, OH*OW, FH*FW)``, every window's pixels."""
    batch, channels = x.shape[:2]
    flat = pad_input(x, geometry).reshape(batch, channels, math.prod(geometry.padded_spatial))
    return flat.at[:, :, window_indices(geometry)].get(mode="promise_in_bounds")


def _im2col(x: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """phi(I) for a batch: ``(N, C, *spatial) -> (N, OH*OW, C*FH*FW)``."""
    batch, channels = x.shape[:2]
    patches = _patches(x, geometry).transpose(0, 2, 1, 3)
    return patches.reshape(batch, geometry.num_windows, channels * geometry.window_size)


def _im2col_t(x: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """phi(I)^T of the batch, images side by side: ``(N, C, *spatial) -> (C*FH*FW, N*OH*OW)``.

    The same gather as :func:`_im2col`, laid out transposed; on CPU this
    layout writes whole output rows at a time and makes every GEMM of
    :mod:`jaxconv._conv` a plain matmul.
    """
    batch, channels = x.shape[:2]
    patches = _patches(x, geometry).transpose(1, 3, 0, 2)
    return patches.reshape(channels * geometry.window_size, batch * geometry.num_windows)


def _col2im(cols: jax.Array, geometry: ConvGeometry, method: Col2imMethod = "pad_add") -> jax.Array:
    """dL/dI from dL/dphi: ``(N, OH*OW, C*FH*FW) -> (N, C, *spatial)``, the adjoint of :func:`_im2col`."""
    batch = cols.shape[0]
    channels = cols.shape[2] // geometry.window_size
    patches = cols.reshape(batch, geometry.num_windows, channels, geometry.window_size).transpose(0, 2, 1, 3)
    return _add_patches(patches, geometry, method)


def _col2im_t(cols_t: jax.Array, geometry: ConvGeometry, batch: int, method: Col2imMethod = "pad_add") -> jax.Array:
    """dL/dI from dL/dphi^T: ``(C*FH*FW, N*OH*OW) -> (N, C, *spatial)``, the adjoint of :func:`_im2col_t`."""
    channels = cols_t.shape[0] // geometry.window_size
    by_offset = cols_t.reshape(channels, geometry.window_size, batch, geometry.num_windows)
    if method == "pad_add" and by_offset.size:
        # Sum in (C, N) order, straight from the layout of phi^T, and swap
        # the two leading axes of the (much smaller) padded image once.
        padded = _pad_add(by_offset.transpose(0, 2, 3, 1), geometry).swapaxes(0, 1)
        return unpad_input(padded, geometry)
    return _add_patches(by_offset.transpose(2, 0, 3, 1), geometry, method)


def _add_patches(patches: jax.Array, geometry: ConvGeometry, method: Col2imMethod) -> jax.Array:
    """Adds ``(N, C, OH*OW, FH*FW)`` window values onto the pixels they came from: the adjoint of :func:`_patches`."""
    batch, channels = patches.shape[:2]
    padded_shape = (batch, channels) + geometry.padded_spatial
    if patches.size == 0:
        padded = jnp.zeros(padded_shape, patches.dtype)
    elif method == "scatter_add":
        padded = (
            jnp.zeros((batch, channels, math.prod(geometry.padded_spatial)), patches.dtype)
            .at[:, :, window_indices(geometry)]
            .add(patches, mode="promise_in_bounds")
            .reshape(padded_shape)
        )
    elif method == "pad_add":
        padded = _pad_add(patches, geometry)
    else:
        raise ValueError(f"method must be one of {COL2IM_METHODS}, got {method!r}")
    return unpad_input(padded, geometry)


def _pad_add(patches: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """Scatter-free adjoint of the gather: for each kernel offset, one strided pad of its slab, all summed.

    ``patches`` is ``(A, B, OH*OW, FH*FW)`` for any two leading axes; returns
    ``(A, B, *padded_spatial)``. Kernel offset ``k`` of window ``o`` read
    padded position ``o * stride + k * dilation`` (:func:`window_indices`); a
    ``lax.pad`` with low pad ``k * dilation`` and interior pad ``stride - 1``
    puts the slab exactly there.
    """
    leading = patches.shape[:2]
    slabs = patches.reshape(leading + geometry.out_spatial + (geometry.window_size,))
    zero = jnp.zeros((), patches.dtype)
    total = None
    for k, offset in enumerate(np.ndindex(*geometry.kernel_size)):
        config = [(0, 0, 0), (0, 0, 0)]
        for o, s, d, kd, p in zip(
            geometry.out_spatial, geometry.stride, geometry.dilation, offset, geometry.padded_spatial
        ):
            lo = kd * d
            config.append((lo, p - lo - ((o - 1) * s + 1), s - 1))
        placed = lax.pad(slabs[..., k], zero, config)
        total = placed if total is None else total + placed
    return total


# --- public, checked API ------------------------------------------------------


def _checked_geometry(
    input_shape: tuple[int, ...], kernel_size: Any, stride: Any, padding: Any, dilation: Any, name: str
) -> ConvGeometry:
    if len(input_shape) not in (3, 4, 5):
        raise ValueError(
            f"{name} must have shape (N, C, *spatial) with 1, 2 or 3 spatial dims, got shape {input_shape}"
        )
    n = len(input_shape) - 2
    if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
        kernel_size = (kernel_size,) * n
    kernel_size = tuple(kernel_size)
    if len(kernel_size) != n:
        raise ValueError(f"kernel_size {kernel_size} must have {n} entries for {name} of shape {input_shape}")
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in kernel_size):
        raise ValueError(f"kernel_size must be positive ints, got {kernel_size}")
    geometry = conv_geometry(input_shape[2:], kernel_size, stride=stride, padding=padding, dilation=dilation)
    check_windows_fit(geometry)
    return geometry


def im2col(
    x: jax.typing.ArrayLike,
    kernel_size: int | tuple[int, ...],
    *,
    stride: int | tuple[int, ...] = 1,
    padding: Any = 0,
    dilation: int | tuple[int, ...] = 1,
) -> jax.Array:
    """Lowers images to phi(I), the matrix of their convolution windows.

    Args:
      x: images of shape ``(N, C, *spatial)``, 1 to 3 spatial dims.
      kernel_size: the window, an int or one int per spatial dim.
      stride: int or per-dimension ints.
      padding: int, per-dimension ints or ``(lo, hi)`` pairs (negative crops),
        or ``"VALID"``, ``"SAME"``, ``"SAME_LOWER"``.
      dilation: kernel dilation, int or per-dimension ints.

    Returns:
      ``cols`` of shape ``(N, prod(out_spatial), C * prod(kernel_size))``,
      columns ordered ``(C, k1, k2, ...)``.

    >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
    >>> im2col(x, 3).shape
    (1, 4, 9)
    >>> im2col(x, 3)[0, 0]
    Array([ 0.,  1.,  2.,  4.,  5.,  6.,  8.,  9., 10.], dtype=float32)
    """
    x = jnp.asarray(x)
    geometry = _checked_geometry(x.shape, kernel_size, stride, padding, dilation, "x")
    return _im2col(x, geometry)


def col2im(
    cols: jax.typing.ArrayLike,
    input_shape: tuple[int, ...],
    kernel_size: int | tuple[int, ...],
    *,
    stride: int | tuple[int, ...] = 1,
    padding: Any = 0,
    dilation: int | tuple[int, ...] = 1,
    method: Col2imMethod = "pad_add",
) -> jax.Array:
    """The adjoint of :func:`im2col`: adds every window back onto the pixels it read.

    Args:
      cols: shape ``(N, prod(out_spatial), C * prod(kernel_size))``, as
        :func:`im2col` returns for ``input_shape``.
      input_shape: ``(N, C, *spatial)`` of the images.
      kernel_size, stride, padding, dilation: as for :func:`im2col`.
      method: ``"pad_add"`` (default: one strided ``lax.pad`` per kernel
        offset, summed) or ``"scatter_add"`` (one scatter-add with the
        im2col indices). Both give the same result.

    Returns:
      An array of shape ``input_shape``; ``<im2col(x), cols> == <x, col2im(cols)>``.

    >>> ones = jnp.ones((1, 4, 9))
    >>> col2im(ones, (1, 1, 4, 4), 3)[0, 0]  # how many windows read each pixel
    Array([[1., 2., 2., 1.],
           [2., 4., 4., 2.],
           [2., 4., 4., 2.],
           [1., 2., 2., 1.]], dtype=float32)
    """
    cols = jnp.asarray(cols)
    input_shape = tuple(int(s) for s in input_shape)
    geometry = _checked_geometry(input_shape, kernel_size, stride, padding, dilation, "input_shape")
    expected = (input_shape[0], geometry.num_windows, input_shape[1] * geometry.window_size)
    if cols.shape != expected:
        raise ValueError(
            f"cols has shape {cols.shape}, but im2col of input_shape {input_shape} with kernel "
            f"{geometry.kernel_size} gives {expected}"
        )
    if method not in COL2IM_METHODS:
        raise ValueError(f"method must be one of {COL2IM_METHODS}, got {method!r}")
    return _col2im(cols, geometry, method)
