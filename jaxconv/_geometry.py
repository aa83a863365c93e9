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
import operator
from collections.abc import Sequence
from typing import Any

PADDING_STRINGS = ("VALID", "SAME", "SAME_LOWER")


def dilate_dim(size: int, dilation: int) -> int:
    """Size of a dimension of ``size`` elements with ``dilation - 1`` holes between them."""
    return max(0, (size - 1) * dilation + 1)


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None


def normalize_tuple(value: Any, n: int, name: str, *, minimum: int | None = 1) -> tuple[int, ...]:
    """Turns an int, or a sequence of ``n`` ints, into a tuple of ``n`` ints.

    Args:
      value: an int (used for every spatial dimension) or a sequence of ``n`` ints.
      n: the number of spatial dimensions.
      name: the argument's name, used in error messages.
      minimum: the smallest allowed value, or None for no bound.

    Returns:
      A tuple of ``n`` Python ints.

    Raises:
      TypeError: if ``value`` is not an int or a sequence of ints.
      ValueError: if the sequence has the wrong length or a value is below ``minimum``.
    """
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(
                f"{name} must have one entry per spatial dimension ({n}), got {len(value)}: {tuple(value)!r}"
            )
        values = tuple(_as_int(v, name) for v in value)
    else:
        values = (_as_int(value, name),) * n
    if minimum is not None and any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum} in every dimension, got {values}")
    return values


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
                pairs.append((_as_int(entry[0], "padding"), _as_int(entry[1], "padding")))
            else:
                pad = _as_int(entry, "padding")
                pairs.append((pad, pad))
        return tuple(pairs)
    pad = _as_int(padding, "padding")
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
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    lhs_dilation: Any = 1,
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
    in_spatial = tuple(_as_int(s, "input spatial shape") for s in in_spatial)
    kernel_size = tuple(_as_int(k, "kernel_size") for k in kernel_size)
    n = len(in_spatial)
    if len(kernel_size) != n:
        raise ValueError(f"kernel_size {kernel_size} and input spatial shape {in_spatial} differ in rank")
    if any(k <= 0 for k in kernel_size):
        raise ValueError(f"kernel spatial shape must be positive, got {kernel_size}")
    stride = normalize_tuple(stride, n, "stride")
    dilation = normalize_tuple(dilation, n, "dilation")
    lhs_dilation = normalize_tuple(lhs_dilation, n, "lhs_dilation")
    pads = normalize_padding(padding, n)
    if isinstance(pads, str):
        if any(d != 1 for d in lhs_dilation):
            raise ValueError(
                f"string padding {pads!r} is not defined with lhs_dilation={lhs_dilation}; give explicit (lo, hi) pads"
            )
        pads = padtype_to_pads(in_spatial, tuple(map(dilate_dim, kernel_size, dilation)), stride, pads)
    geometry = ConvGeometry(in_spatial, kernel_size, stride, pads, dilation, lhs_dilation)
    if any(p < 0 for p in geometry.padded_spatial):
        raise ValueError(
            f"negative padding {pads} crops more than the input holds: "
            f"input spatial shape {in_spatial} (dilated {geometry.dilated_input})"
        )
    return geometry


# The default budget for phi(I). Measured on a 2-core CPU (benchmarks/RESULTS.md): at 8 MiB the
# value_and_grad of every benchmark layer holds at most 1.17x lax's XLA temp memory; at 32 MiB lenet2's
# phi (26 MB) stayed whole and held 52 MiB against lax's 8.6 (a benchmark run before this default).
DEFAULT_MAX_COLS_BYTES = 8 * 2**20


def batch_chunk(
    geometry: ConvGeometry, batch: int, channels: int, itemsize: int, max_cols_bytes: int | None
) -> int | None:
    """Images per chunk so that one chunk's phi(I) fits in ``max_cols_bytes``; None when all fit.

    phi(I) of one image holds ``OH*OW * C*FH*FW`` elements. At least one image
    is processed at a time, whatever the budget. Chunks are balanced: a divisor
    of the batch when one is at least half the largest chunk that fits (no
    remainder to process apart, which would hold a second set of buffers),
    else the batch split as evenly as the budget allows.

    >>> g = conv_geometry((32, 32), (3, 3), padding=1)  # 2.25 MiB of phi per 64-channel image
    >>> batch_chunk(g, 64, 64, 4, 32 * 2**20)  # 14 images fit: 8 chunks of 8
    8
    >>> batch_chunk(g, 61, 64, 4, 32 * 2**20)  # 61 is prime: 5 chunks of 13, the last one of 9
    13
    >>> batch_chunk(g, 64, 64, 4, None) is None
    True
    """
    if max_cols_bytes is None:
        return None
    if isinstance(max_cols_bytes, bool) or not isinstance(max_cols_bytes, int) or max_cols_bytes < 1:
        raise ValueError(f"max_cols_bytes must be a positive int or None, got {max_cols_bytes!r}")
    per_image = geometry.num_windows * channels * geometry.window_size * itemsize
    largest = max(1, max_cols_bytes // max(per_image, 1))
    if largest >= batch:
        return None
    divisor = max(d for d in range(1, largest + 1) if batch % d == 0)
    if 2 * divisor >= largest:
        return divisor
    chunks = -(-batch // largest)
    return -(-batch // chunks)


def check_windows_fit(geometry: ConvGeometry, *, what: str = "kernel") -> None:
    """Raises ValueError when no window fits, i.e. the output would be empty."""
    if geometry.num_windows == 0:
        raise ValueError(
            f"{what} of spatial shape {geometry.kernel_size} (dilated to "
            f"{geometry.dilated_kernel}) is larger than the padded input "
            f"{geometry.padded_spatial} (input {geometry.in_spatial}, padding "
            f"{geometry.padding}); output spatial shape would be {geometry.out_spatial}"
        )
