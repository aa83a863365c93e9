"""The one Pallas kernel: a tiled GEMM whose left operand is gathered straight from memory.

``out[g] = A[g] @ B[g]`` for every group ``g``, where ``A`` is never built:
element ``A[i, k]`` is read from a flat source array at address
``row_off[i] + col_off[k]`` (plus ``table[row_tap[i] + col_tap[k]]`` for the
input gradient), index vectors from :mod:`jaxconv._pallas.indices`. Each
program owns a ``(block.m, block.n)`` tile of ``out`` and loops over the
reduction in ``block.k`` steps, gathering an ``A`` tile, slicing a ``B`` tile
and accumulating their product in float32 (float64 for float64 inputs), each
tile product at the dot precision the caller gives (Triton: TF32 or IEEE
float32 for float32 tiles).

On a GPU the Triton lowering turns a ref indexed by an integer array into a
tensor of pointers ``base + address`` and one ``tt.load``: a gather from
global memory, with no copy of ``A``. In interpret mode the same kernel runs as
an XLA loop over the grid, each load a gather.

Padding instead of masks: index vectors are padded to block multiples with
address 0 (a valid element); the padded reduction columns meet zero rows of
``B`` and the padded output rows and columns are sliced off, so every load is
in bounds and every padded product is zero or discarded.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from jaxconv._pallas.indices import TapGather


@dataclasses.dataclass(frozen=True)
class Blocks:
    """Tile sizes: ``m`` rows and ``n`` columns of the output per program, ``k`` reduction terms per step.

    ``splits`` cuts the reduction into that many programs per output tile
    whose partial sums are added afterwards (split-K), for reductions much
    longer than the output is wide: the filter gradient sums over every
    window of every image. Triton needs powers of two, and its dot at least 16.
    """

    m: int = 32
    n: int = 32
    k: int = 32
    splits: int = 1

    def __post_init__(self) -> None:
        for name in ("m", "n", "k"):
            size = getattr(self, name)
            if size < 16 or size & (size - 1):
                raise ValueError(f"block size {name} (={size}) must be a power of two >= 16")
        if self.splits < 1:
            raise ValueError(f"splits (={self.splits}) must be >= 1")


def _power_of_two(size: int, low: int, high: int) -> int:
    return min(high, max(low, 1 << max(0, size - 1).bit_length()))


def choose_blocks(rows: int, cols: int, depth: int, *, split: bool = False) -> Blocks:
    """Tile sizes for an ``(rows x depth) @ (depth x cols)`` GEMM. UNTUNED: no GPU has measured them.

    The smallest power of two covering each dimension, at least 16 (Triton's
    dot) and at most 64 rows or columns, 32 reduction terms per step (the
    usual Triton matmul starting point). With ``split``, a reduction of 128
    steps or more is cut into up to 16 splits of at least 64 steps each.

    >>> choose_blocks(1000, 8, 27)
    Blocks(m=64, n=16, k=32, splits=1)
    >>> choose_blocks(27, 8, 131072, split=True)
    Blocks(m=32, n=16, k=32, splits=16)
    """
    block_k = _power_of_two(depth, 16, 32)
    steps = -(-depth // block_k)
    splits = max(1, min(16, steps // 64)) if split else 1
    return Blocks(_power_of_two(rows, 16, 64), _power_of_two(cols, 16, 64), block_k, splits)


def _round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def _padded_index(vector: np.ndarray, size: int) -> jax.Array:
    """An index vector padded with address 0 to ``size`` entries, as a device constant."""
    return jnp.asarray(np.pad(vector, (0, size - vector.shape[0])))


def _gather_gemm_kernel(
    src_ref: Any,
    row_ref: Any,
    col_ref: Any,
    *refs: Any,
    taps: bool,
    block_k: int,
    steps: int,
    acc_dtype: Any,
    precision: Any,
) -> None:
    """One output tile: ``sum_k A[rows, k-block] @ B[k-block, cols]``, A gathered from ``src_ref``."""
    if taps:
        table_ref, row_tap_ref, col_tap_ref, b_ref, out_ref = refs
        row_tap = row_tap_ref[...]
    else:
        b_ref, out_ref = refs
    rows = row_ref[...]
    first = pl.program_id(3) * steps

    def step(i: jax.Array, acc: jax.Array) -> jax.Array:
        k = pl.ds((first + i) * block_k, block_k)
        address = rows[:, None] + col_ref[k][None, :]
        if taps:
            address = address + table_ref[row_tap[:, None] + col_tap_ref[k][None, :]]
        a = src_ref[address]
        product = jnp.dot(a, b_ref[k, :], precision=precision, preferred_element_type=acc_dtype)
        return acc + product

    acc = lax.fori_loop(0, steps, step, jnp.zeros(out_ref.shape, acc_dtype))
    out_ref[...] = acc.astype(out_ref.dtype)


def _accumulator(dtype: Any) -> np.dtype:
    """float32, or float64 for float64 operands."""
    return jnp.dtype(jnp.float64 if dtype == jnp.float64 else jnp.float32)


def _call(
    src: jax.Array,
    b: jax.Array,
    row_off: jax.Array,
    col_off: jax.Array,
    taps: tuple[jax.Array, jax.Array, jax.Array] | None,
    *,
    blocks: Blocks,
    out_dtype: Any,
    precision: Any,
    interpret: bool,
) -> jax.Array:
    """The ``pallas_call`` on padded operands: grid (row tiles, column tiles, groups, splits)."""
    groups, depth_padded, cols_padded = b.shape
    rows_padded = row_off.shape[0]
    acc_dtype = _accumulator(b.dtype)
    steps = depth_padded // (blocks.k * blocks.splits)
    whole = lambda a: pl.BlockSpec(a.shape, lambda *_: (0,) * a.ndim)
    row_block = pl.BlockSpec((blocks.m,), lambda i, j, g, s: (i,))
    in_specs = [pl.BlockSpec((None, src.shape[1]), lambda i, j, g, s: (g, 0)), row_block, whole(col_off)]
    operands = [src, row_off, col_off]
    if taps is not None:
        table, row_tap, col_tap = taps
        in_specs += [whole(table), row_block, whole(col_tap)]
        operands += [table, row_tap, col_tap]
    in_specs.append(pl.BlockSpec((None, depth_padded, blocks.n), lambda i, j, g, s: (g, 0, j)))
    kernel = functools.partial(
        _gather_gemm_kernel,
        taps=taps is not None,
        block_k=blocks.k,
        steps=steps,
        acc_dtype=acc_dtype,
        precision=precision,
    )
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((blocks.splits, groups, rows_padded, cols_padded), out_dtype),
        grid=(rows_padded // blocks.m, cols_padded // blocks.n, groups, blocks.splits),
        in_specs=in_specs,
        out_specs=pl.BlockSpec((None, None, blocks.m, blocks.n), lambda i, j, g, s: (s, g, i, j)),
        interpret=interpret,
        compiler_params=pltriton.CompilerParams(),  # Triton, not Mosaic GPU: it lowers gathers
        name="jaxconv_gather_gemm",
    )(*operands, b)


def gather_gemm(
    src: jax.Array,
    b: jax.Array,
    row_off: np.ndarray,
    col_off: np.ndarray,
    taps: TapGather | None = None,
    *,
    blocks: Blocks,
    out_dtype: jax.typing.DTypeLike,
    precision: Any = lax.Precision.HIGHEST,
    interpret: bool,
) -> jax.Array:
    """``A[g] @ b[g]`` with ``A[g][i, k] = src[g][row_off[i] + col_off[k] (+ table[row_tap[i] + col_tap[k]])]``.

    Args:
      src: ``(G, L)``, the flat array ``A`` is gathered from, one row per group.
      b: ``(G, K, J)``, the dense right operand, same dtype as ``src``.
      row_off, col_off: int32 NumPy vectors of ``I`` and ``K`` addresses.
      taps: for the input gradient, the :class:`TapGather` whose table adds a
        row- and column-dependent address (its ``row_base``/``col_off`` are
        ``row_off``/``col_off``).
      blocks: tile sizes, :func:`choose_blocks`.
      out_dtype: the result's dtype; products accumulate in float32 (float64
        for float64 inputs) whatever it is.
      precision: the tile products' ``jnp.dot`` precision (None:
        ``jax_default_matmul_precision``, then the backend's default).
      interpret: run the kernel in Pallas's interpreter instead of Triton.

    Returns:
      ``(G, I, J)`` in ``out_dtype``.
    """
    groups, depth, cols = b.shape
    rows = row_off.shape[0]
    if rows * cols * groups == 0 or depth == 0:
        return jnp.zeros((groups, rows, cols), out_dtype)
    rows_padded, cols_padded = _round_up(rows, blocks.m), _round_up(cols, blocks.n)
    depth_padded = _round_up(depth, blocks.k * blocks.splits)
    b = jnp.pad(b, ((0, 0), (0, depth_padded - depth), (0, cols_padded - cols)))
    padded_taps = None
    if taps is not None:
        padded_taps = (
            jnp.asarray(taps.table),
            _padded_index(taps.row_tap, rows_padded),
            _padded_index(taps.col_tap, depth_padded),
        )
    partial_dtype = out_dtype if blocks.splits == 1 else _accumulator(b.dtype)  # splits add in the accumulator
    out = _call(
        src,
        b,
        _padded_index(row_off, rows_padded),
        _padded_index(col_off, depth_padded),
        padded_taps,
        blocks=blocks,
        out_dtype=jnp.dtype(partial_dtype),
        precision=precision,
        interpret=interpret,
    )
    return out.sum(axis=0).astype(out_dtype)[:, :rows, :cols]
