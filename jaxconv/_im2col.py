"""im2col (phi in the note) and col2im, its exact adjoint.

``im2col`` lowers a batch of images ``(N, C, *spatial)`` to ``phi(I)`` of
shape ``(N, OH*OW, C*FH*FW)``: one row per output position, one column per
(channel, kernel offset), channel-major, so that ``w.reshape(FN, -1).T`` is
the flattened filter matrix ``F_f`` of the note and ``O_f = phi(I) F_f``.

phi is read with a single gather whose integer index array is built with
NumPy at trace time (:func:`window_starts`): one index per kernel offset, the
corner of the *window box* that offset reads, i.e. padded pixels ``o * stride
+ k * dilation`` for every output position ``o`` at once (strides > 1 read the
box's span and keep every ``stride``-th pixel). Each index copies a whole
``(C, N, *span)`` box, which XLA turns into long contiguous copies (why boxes:
``benchmarks/RESULTS.md``, "Design choices"). :func:`window_indices` lists the same reads pixel by pixel: the oracle the
tests and notebooks check phi against.

``col2im`` sends ``dL/dphi`` back to ``dL/dI``: every window's contribution is
added to the pixels it read, so overlapping windows sum. It has two forms: the
scatter-add that is the exact transpose of the gather (same indices), and one
strided ``lax.pad`` per kernel offset, summed, which XLA fuses into one loop:
the default, as fast or faster on the large benchmark layers, though not on
lenet2's 5x5 kernel (``benchmarks/RESULTS.md``, "Design choices").
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._geometry import ConvGeometry, Padding, check_windows_fit, conv_geometry
from jaxconv._validate import as_array, as_int, as_shape, check_batch_rank, check_choice, ntuple

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


@functools.lru_cache(maxsize=512)
def window_starts(geometry: ConvGeometry) -> np.ndarray:
    """Where the box of pixels each kernel offset reads begins in the padded input.

    Kernel offset ``k`` of window ``o`` reads padded position ``o * stride + k *
    dilation``: over all windows, a box starting at ``k * dilation`` and
    spanning :func:`window_span` pixels, of which every ``stride``-th is read.

    Returns an int array of shape ``(*kernel_size, ndim)``.

    >>> window_starts(conv_geometry((5, 5), (2, 2), dilation=2)).tolist()
    [[[0, 0], [0, 2]], [[2, 0], [2, 2]]]
    """
    offsets = [np.arange(k) * d for k, d in zip(geometry.kernel_size, geometry.dilation)]
    grid = np.meshgrid(*offsets, indexing="ij") if offsets else []
    return np.stack(grid, axis=-1).astype(np.int32) if grid else np.zeros((0,), np.int32)


def window_span(geometry: ConvGeometry) -> tuple[int, ...]:
    """Pixels one kernel offset's box spans per spatial dim: ``(out - 1) * stride + 1``."""
    return tuple((o - 1) * s + 1 for o, s in zip(geometry.out_spatial, geometry.stride))


def _box_dimension_numbers(geometry: ConvGeometry) -> tuple[lax.GatherDimensionNumbers, lax.ScatterDimensionNumbers]:
    """Gather/scatter layout for ``(C, N, *padded)`` operands and ``(C, *kernel, N, *span)`` boxes.

    The index array's batch dims (the kernel offsets) fill the output positions
    left free by the box dims ``C``, ``N`` and the spans, which puts the boxes
    straight into phi^T's order: rows ``(C, *kernel)``, columns ``(N, *out)``.
    """
    n = geometry.ndim
    box_dims = (0,) + tuple(range(n + 1, 2 * n + 2))
    spatial = tuple(range(2, n + 2))
    gather = lax.GatherDimensionNumbers(offset_dims=box_dims, collapsed_slice_dims=(), start_index_map=spatial)
    scatter = lax.ScatterDimensionNumbers(
        update_window_dims=box_dims, inserted_window_dims=(), scatter_dims_to_operand_dims=spatial
    )
    return gather, scatter


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


def _windows(x: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """The one gather: ``(N, C, *spatial) -> (C, *kernel_size, N, *out_spatial)``, every window's pixels."""
    batch, channels = x.shape[:2]
    shape = (channels,) + geometry.kernel_size + (batch,) + geometry.out_spatial
    if math.prod(shape) == 0:
        return jnp.zeros(shape, x.dtype)
    padded = pad_input(x, geometry).swapaxes(0, 1)
    gather_dims, _ = _box_dimension_numbers(geometry)
    slice_sizes = (channels, batch) + window_span(geometry)
    boxes = lax.gather(padded, jnp.asarray(window_starts(geometry)), gather_dims, slice_sizes, mode="promise_in_bounds")
    return boxes[(Ellipsis,) + tuple(slice(None, None, s) for s in geometry.stride)]


def _unwindows(windows: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """The transpose of :func:`_windows` as one scatter-add with the same indices: ``-> (N, C, *spatial)``."""
    channels, batch = windows.shape[0], windows.shape[1 + geometry.ndim]
    padded = jnp.zeros((channels, batch) + geometry.padded_spatial, windows.dtype)
    if windows.size:
        # Spread the read pixels back over the boxes' spans (holes where stride > 1).
        leading = [(0, 0, 0)] * (geometry.ndim + 2)
        boxes = lax.pad(windows, jnp.zeros((), windows.dtype), leading + [(0, 0, s - 1) for s in geometry.stride])
        _, scatter_dims = _box_dimension_numbers(geometry)
        padded = lax.scatter_add(
            padded, jnp.asarray(window_starts(geometry)), boxes, scatter_dims, mode="promise_in_bounds"
        )
    return unpad_input(padded.swapaxes(0, 1), geometry)


def window_slabs(x: jax.Array, geometry: ConvGeometry) -> list[jax.Array]:
    """phi(I)'s columns for each kernel offset, read by slices: ``(N, C, *spatial) -> K x (N, C, *out)``.

    Kernel offset ``k`` reads padded pixels ``o * stride + k * dilation``: one
    strided slice of the padded input, the box :func:`_windows` gathers. As
    slices, XLA fuses them into whatever consumes them, so phi is never written
    (what the multiply-reduce contraction needs, :mod:`jaxconv._contraction`).
    """
    padded = pad_input(x, geometry)
    span = window_span(geometry)
    slabs = []
    for start in window_starts(geometry).reshape(-1, geometry.ndim):
        begin = (0, 0) + tuple(int(i) for i in start)
        end = padded.shape[:2] + tuple(b + n for b, n in zip(begin[2:], span))
        slabs.append(lax.slice(padded, begin, end, (1, 1) + geometry.stride))
    return slabs


def add_slabs(slabs: list[jax.Array], geometry: ConvGeometry) -> jax.Array:
    """The adjoint of :func:`window_slabs`: col2im as shifted adds, one stride phase at a time.

    Kernel offset ``k`` of window ``o`` read padded position ``o * stride + k *
    dilation``. With ``k * dilation = q * stride + r``, that is position ``o + q``
    of phase ``r``'s coarse grid (every ``stride``-th pixel from ``r``). Each
    phase sums its offsets' slabs, each padded by ``q`` (one fused loop per
    phase), and the phases interleave into the padded input: a pixel adds only
    the offsets that reach it, never the holes of the others (``stride**d``
    fewer adds than padding every slab over the whole input). With stride 1
    there is one phase. ``K x (A, B, *out) -> (A, B, *spatial)``, whichever two
    leading axes the slabs have.
    """
    leading, dtype, stride = slabs[0].shape[:2], slabs[0].dtype, geometry.stride
    if slabs[0].size == 0:
        return unpad_input(jnp.zeros(leading + geometry.padded_spatial, dtype), geometry)
    coarse = tuple(-(-p // s) for p, s in zip(geometry.padded_spatial, stride))
    zero = jnp.zeros((), dtype)
    phases: dict[tuple[int, ...], list[jax.Array]] = {}
    for slab, offset in zip(slabs, np.ndindex(*geometry.kernel_size)):
        shift = [k * d for k, d in zip(offset, geometry.dilation)]
        config = [(0, 0, 0), (0, 0, 0)]
        config += [(t // s, c - t // s - o, 0) for t, s, c, o in zip(shift, stride, coarse, geometry.out_spatial)]
        phases.setdefault(tuple(t % s for t, s in zip(shift, stride)), []).append(lax.pad(slab, zero, config))
    # One sum over a phase's stacked slabs rather than a chain of adds: a cheaper fused loop (RESULTS.md).
    grids = [
        jnp.stack(phases[phase]).sum(axis=0) if phase in phases else jnp.zeros(leading + coarse, dtype)
        for phase in np.ndindex(*stride)
    ]
    n = geometry.ndim
    total = jnp.stack(grids).reshape(stride + leading + coarse)  # (*stride, A, B, *coarse)
    order = (n, n + 1) + tuple(axis for d in range(n) for axis in (n + 2 + d, d))  # (A, B, coarse_1, s_1, ...)
    total = total.transpose(order).reshape(leading + tuple(c * s for c, s in zip(coarse, stride)))
    total = total[(slice(None), slice(None)) + tuple(slice(0, p) for p in geometry.padded_spatial)]
    return unpad_input(total, geometry)


def _pad_add(windows: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """Scatter-free transpose of :func:`_windows`: :func:`add_slabs` of its ``(C, N, *out)`` slab per offset."""
    slabs = [windows[(slice(None),) + offset] for offset in np.ndindex(*geometry.kernel_size)]
    return add_slabs(slabs, geometry).swapaxes(0, 1)


def _add_windows(windows: jax.Array, geometry: ConvGeometry, method: Col2imMethod) -> jax.Array:
    """Adds every window's values onto the pixels it read: the transpose of :func:`_windows`."""
    if method == "pad_add":
        return _pad_add(windows, geometry)
    if method == "scatter_add":
        return _unwindows(windows, geometry)
    raise ValueError(f"method must be one of {COL2IM_METHODS}, got {method!r}")


def _im2col(x: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """phi(I) for a batch: ``(N, C, *spatial) -> (N, OH*OW, C*FH*FW)``."""
    batch, channels = x.shape[:2]
    n = geometry.ndim
    order = (n + 1,) + tuple(range(n + 2, 2 * n + 2)) + tuple(range(n + 1))  # (N, *out, C, *kernel)
    patches = _windows(x, geometry).transpose(order)
    return patches.reshape(batch, geometry.num_windows, channels * geometry.window_size)


def im2col_t(x: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """phi(I)^T of the batch, images side by side: ``(N, C, *spatial) -> (C*FH*FW, N*OH*OW)``.

    What the conv calls: the gather's own layout, so no transpose, and every
    GEMM of :mod:`jaxconv._conv` a plain matmul. ``geometry`` must describe
    ``x`` (:func:`im2col` builds the geometry from its arguments).

    >>> x = jnp.arange(32.0).reshape(2, 1, 4, 4)
    >>> g = conv_geometry((4, 4), (3, 3))
    >>> bool((im2col_t(x, g) == im2col(x, 3).reshape(8, 9).T).all())
    True
    """
    x = as_array(x, "x")
    _check_geometry(geometry)
    if x.ndim != geometry.ndim + 2 or x.shape[2:] != geometry.in_spatial:
        raise ValueError(
            f"x must have shape (N, C, *{geometry.in_spatial}), the input the geometry describes; got shape {x.shape}"
        )
    batch, channels = x.shape[:2]
    return _windows(x, geometry).reshape(channels * geometry.window_size, batch * geometry.num_windows)


def _col2im(cols: jax.Array, geometry: ConvGeometry, method: Col2imMethod = "pad_add") -> jax.Array:
    """dL/dI from dL/dphi: ``(N, OH*OW, C*FH*FW) -> (N, C, *spatial)``, the adjoint of :func:`_im2col`."""
    batch, channels = cols.shape[0], cols.shape[2] // geometry.window_size
    n = geometry.ndim
    windows = cols.reshape((batch,) + geometry.out_spatial + (channels,) + geometry.kernel_size)
    order = (n + 1,) + tuple(range(n + 2, 2 * n + 2)) + (0,) + tuple(range(1, n + 1))  # (C, *kernel, N, *out)
    return _add_windows(windows.transpose(order), geometry, method)


def col2im_t(cols_t: jax.Array, geometry: ConvGeometry, batch: int, method: Col2imMethod = "pad_add") -> jax.Array:
    """dL/dI from dL/dphi^T: ``(C*FH*FW, N*OH*OW) -> (N, C, *spatial)``, the adjoint of :func:`im2col_t`.

    What the conv's backward calls; ``cols_t`` must have the shape
    :func:`im2col_t` gives for ``batch`` images of the geometry.

    >>> g = conv_geometry((4, 4), (3, 3))
    >>> col2im_t(jnp.ones((9, 4)), g, 1)[0, 0]  # how many windows read each pixel
    Array([[1., 2., 2., 1.],
           [2., 4., 4., 2.],
           [2., 4., 4., 2.],
           [1., 2., 2., 1.]], dtype=float32)
    """
    cols_t = as_array(cols_t, "cols_t")
    _check_geometry(geometry)
    batch = as_int(batch, "batch", minimum=0)
    rows, columns = geometry.window_size, batch * geometry.num_windows
    if cols_t.ndim != 2 or cols_t.shape[0] % rows or cols_t.shape[1] != columns:
        raise ValueError(
            f"cols_t must have shape (C*{rows}, {columns}) for batch={batch} and the geometry's "
            f"{geometry.num_windows} windows of {rows} elements; got shape {cols_t.shape}"
        )
    channels = cols_t.shape[0] // geometry.window_size
    windows = cols_t.reshape((channels,) + geometry.kernel_size + (batch,) + geometry.out_spatial)
    return _add_windows(windows, geometry, method)


def _check_geometry(geometry: Any) -> None:
    if not isinstance(geometry, ConvGeometry):
        raise TypeError(f"geometry must be a ConvGeometry (from jaxconv.conv_geometry), got {type(geometry).__name__}")


# --- public API from shapes and options -----------------------------------------


def _checked_geometry(
    input_shape: tuple[int, ...], kernel_size: Any, stride: Any, padding: Any, dilation: Any, name: str
) -> ConvGeometry:
    check_batch_rank(input_shape, name)
    try:
        kernel_size = ntuple(kernel_size, len(input_shape) - 2, "kernel_size")
    except ValueError as error:
        raise ValueError(f"{error}, for {name} of shape {input_shape}") from None
    geometry = conv_geometry(input_shape[2:], kernel_size, stride=stride, padding=padding, dilation=dilation)
    check_windows_fit(geometry)
    return geometry


def im2col(
    x: jax.typing.ArrayLike,
    kernel_size: int | tuple[int, ...],
    *,
    stride: int | tuple[int, ...] = 1,
    padding: Padding = 0,
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
    x = as_array(x, "x")
    geometry = _checked_geometry(x.shape, kernel_size, stride, padding, dilation, "x")
    return _im2col(x, geometry)


def col2im(
    cols: jax.typing.ArrayLike,
    input_shape: tuple[int, ...],
    kernel_size: int | tuple[int, ...],
    *,
    stride: int | tuple[int, ...] = 1,
    padding: Padding = 0,
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
    cols = as_array(cols, "cols")
    input_shape = as_shape(input_shape, "input_shape")
    geometry = _checked_geometry(input_shape, kernel_size, stride, padding, dilation, "input_shape")
    expected = (input_shape[0], geometry.num_windows, input_shape[1] * geometry.window_size)
    if cols.shape != expected:
        raise ValueError(
            f"cols has shape {cols.shape}, but im2col of input_shape {input_shape} with kernel "
            f"{geometry.kernel_size} gives {expected}"
        )
    check_choice(method, COL2IM_METHODS, "method")
    return _col2im(cols, geometry, method)
