"""Convolution geometry: the one source of truth for shapes and padding.

Everything here runs at trace time on static Python ints. The forward pass,
the backward pass, the lax-compatible entry point, the reference and the CLI
all describe a convolution with a :class:`ConvGeometry` built by
:func:`conv_geometry`, so padding and output shapes are computed in one place.

Per spatial dimension, with input size ``S``, kernel size ``K``:

* the input is dilated by ``lhs_dilation``: ``S_d = (S - 1) * lhs_dilation + 1``
  (XLA's "base dilation", the transposed-convolution trick);
* then padded by ``(lo, hi)``, either of which may be negative (cropping):
  ``S_p = S_d + lo + hi``;
* the kernel is dilated by ``dilation``: ``K_d = (K - 1) * dilation + 1``;
* and ``out = (S_p - K_d) // stride + 1`` windows fit (zero if none do).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxconv._validate import as_int, ntuple

PADDING_STRINGS = ("VALID", "SAME", "SAME_LOWER")
# What every conv takes as padding (:func:`normalize_padding`): an int for every side, one int or one (lo, hi)
# pair per spatial dimension, or one of PADDING_STRINGS.
Padding = int | str | Sequence[int] | Sequence[tuple[int, int]]
# A window slides over at most this many (dilated, padded) pixels per dimension: what int32 indices reach.
MAX_SPATIAL = 2**31


def dilate_dim(size: int, dilation: int) -> int:
    """Size of a dimension of ``size`` elements with ``dilation - 1`` holes between them."""
    return max(0, (size - 1) * dilation + 1)


def padtype_to_pads(
    in_spatial: Sequence[int],
    window: Sequence[int],
    stride: Sequence[int],
    padding: str,
) -> tuple[tuple[int, int], ...]:
    """Explicit ``(lo, hi)`` pads for ``"VALID"``, ``"SAME"`` or ``"SAME_LOWER"``.

    Same rule as ``jax.lax.padtype_to_pads``: ``SAME`` gives ``ceil(S / stride)``
    outputs, the odd pad going high (``SAME``) or low (``SAME_LOWER``).
    ``window`` is the dilated kernel size.
    """
    kind = padding.upper()
    if kind not in PADDING_STRINGS:
        raise ValueError(f"padding must be one of {PADDING_STRINGS} or explicit pads, got {padding!r}")
    if kind == "VALID":
        return ((0, 0),) * len(in_spatial)
    pads = []
    for size, k, s in zip(in_spatial, window, stride):
        out = -(-size // s)
        total = max(0, (out - 1) * s + k - size)
        small, large = total // 2, total - total // 2
        pads.append((small, large) if kind == "SAME" else (large, small))
    return tuple(pads)


def normalize_padding(padding: Any, n: int) -> str | tuple[tuple[int, int], ...]:
    """Turns padding into a known string or a tuple of ``n`` ``(lo, hi)`` int pairs.

    Accepts an int (same on both sides of every dimension), ``n`` ints, ``n``
    ``(lo, hi)`` pairs, or one of :data:`PADDING_STRINGS` (any case). Pads may
    be negative, which crops, as in ``jax.lax.conv_general_dilated``.
    """
    if isinstance(padding, (np.ndarray, jax.Array)) and padding.ndim > 0:
        if isinstance(padding, jax.core.Tracer):  # its values shape the output: they must be known when tracing
            raise TypeError(f"padding must be static ints, got a traced array of shape {padding.shape}")
        if not np.issubdtype(padding.dtype, np.integer):
            raise TypeError(f"padding must hold ints, got an array of dtype {padding.dtype}")
        padding = np.asarray(padding).tolist()
    if isinstance(padding, str):
        if padding.upper() not in PADDING_STRINGS:
            raise ValueError(
                f"padding must be one of {PADDING_STRINGS}, an int, or per-dimension "
                f"ints or (lo, hi) pairs; got {padding!r}"
            )
        return padding.upper()
    if isinstance(padding, Sequence):
        if len(padding) != n:
            raise ValueError(
                f"padding must have one entry per spatial dimension ({n}), got {len(padding)}: {tuple(padding)!r}"
            )
        pairs = []
        for entry in padding:
            if isinstance(entry, Sequence) and not isinstance(entry, str):
                if len(entry) != 2:
                    raise ValueError(f"padding entries must be ints or (lo, hi) pairs, got {entry!r}")
                pairs.append((as_int(entry[0], "padding"), as_int(entry[1], "padding")))
            else:
                pad = as_int(entry, "padding")
                pairs.append((pad, pad))
        return tuple(pairs)
    pad = as_int(padding, "padding")
    return ((pad, pad),) * n


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """Static description of an N-d convolution window over one input.

    All fields are tuples with one entry per spatial dimension. Instances are
    hashable, so they can be static arguments of ``jax.jit`` and
    ``jax.custom_vjp``.
    """

    in_spatial: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    lhs_dilation: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.in_spatial)

    @property
    def dilated_input(self) -> tuple[int, ...]:
        return tuple(map(dilate_dim, self.in_spatial, self.lhs_dilation))

    @property
    def padded_spatial(self) -> tuple[int, ...]:
        """Spatial shape after lhs dilation and padding: what the windows slide over."""
        return tuple(s + lo + hi for s, (lo, hi) in zip(self.dilated_input, self.padding))

    @property
    def dilated_kernel(self) -> tuple[int, ...]:
        return tuple(map(dilate_dim, self.kernel_size, self.dilation))

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple(max(0, (p - k) // s + 1) for p, k, s in zip(self.padded_spatial, self.dilated_kernel, self.stride))

    @property
    def num_windows(self) -> int:
        """OH * OW (* OD): the rows of phi(I) for one image."""
        return math.prod(self.out_spatial)

    @property
    def window_size(self) -> int:
        """FH * FW (* FD): the columns of phi(I) per input channel."""
        return math.prod(self.kernel_size)


def conv_geometry(
    in_spatial: Sequence[int],
    kernel_size: Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: Padding = 0,
    dilation: int | Sequence[int] = 1,
    lhs_dilation: int | Sequence[int] = 1,
) -> ConvGeometry:
    """Normalises window arguments into a :class:`ConvGeometry`.

    Follows ``jax.lax.conv_general_dilated``: empty outputs are allowed (a
    kernel larger than the padded input gives zero windows); a padding that
    crops more than the input holds is an error.

    Args:
      in_spatial: the input's spatial shape.
      kernel_size: the kernel's spatial shape.
      stride: int or one int per spatial dimension, >= 1.
      padding: see :func:`normalize_padding`.
      dilation: kernel (rhs) dilation, int or per dimension, >= 1.
      lhs_dilation: input (lhs) dilation, int or per dimension, >= 1.

    Returns:
      The geometry, with explicit ``(lo, hi)`` padding.

    >>> conv_geometry((28, 28), (5, 5), padding="SAME").out_spatial
    (28, 28)
    """
    in_spatial = tuple(as_int(s, "input spatial shape", minimum=0) for s in in_spatial)
    kernel_size = tuple(as_int(k, "kernel_size") for k in kernel_size)
    n = len(in_spatial)
    if len(kernel_size) != n:
        raise ValueError(f"kernel_size {kernel_size} and input spatial shape {in_spatial} differ in rank")
    if any(k <= 0 for k in kernel_size):
        raise ValueError(f"kernel spatial shape must be positive, got {kernel_size}")
    stride = ntuple(stride, n, "stride")
    dilation = ntuple(dilation, n, "dilation")
    lhs_dilation = ntuple(lhs_dilation, n, "lhs_dilation")
    pads = normalize_padding(padding, n)
    if isinstance(pads, str):
        if any(d != 1 for d in lhs_dilation):
            raise ValueError(
                f"string padding {pads!r} is not defined with lhs_dilation={lhs_dilation}; give explicit (lo, hi) pads"
            )
        pads = padtype_to_pads(in_spatial, tuple(map(dilate_dim, kernel_size, dilation)), stride, pads)
    geometry = ConvGeometry(in_spatial, kernel_size, stride, pads, dilation, lhs_dilation)
    if any(size >= MAX_SPATIAL for size in geometry.padded_spatial + geometry.dilated_kernel):
        raise ValueError(
            f"padding {pads}, dilation {dilation} and lhs_dilation {lhs_dilation} make a spatial size of "
            f"{max(geometry.padded_spatial + geometry.dilated_kernel)}, beyond {MAX_SPATIAL - 1} per dimension "
            f"(input spatial shape {in_spatial}, kernel {kernel_size})"
        )
    if any(p < 0 for p in geometry.padded_spatial):
        raise ValueError(
            f"negative padding {pads} crops more than the input holds: "
            f"input spatial shape {in_spatial} (dilated {geometry.dilated_input})"
        )
    return geometry


def check_windows_fit(geometry: ConvGeometry, *, what: str = "kernel") -> None:
    """Raises ValueError when no window fits, i.e. the output would be empty."""
    if geometry.num_windows == 0:
        raise ValueError(
            f"{what} of spatial shape {geometry.kernel_size} (dilated to "
            f"{geometry.dilated_kernel}) is larger than the padded input "
            f"{geometry.padded_spatial} (input {geometry.in_spatial}, padding "
            f"{geometry.padding}); output spatial shape would be {geometry.out_spatial}"
        )
