"""``jaxconv.conv_general_dilated``: a drop-in for ``jax.lax.conv_general_dilated``.

Same signature and semantics (any ``dimension_numbers``, lhs and rhs
dilation, negative padding, feature and batch groups, precision,
``preferred_element_type``, zero-size inputs and empty outputs), computed by
the im2col + GEMM primitives (:mod:`jaxconv._primitives`). Arguments lax would reject raise
``ValueError``/``TypeError`` here, in Python, before anything reaches XLA:
the very type lax raises wherever lax raises one of the two itself
(``tests/test_lax_errors.py`` holds the table).

Layouts are handled by transposing to the canonical ``(N, C, *spatial)`` /
``(O, I, *kernel)`` order of :mod:`jaxconv._conv` and back. Batch groups
reduce to feature groups: with ``G`` batch groups the input's batch splits as
``(G, N/G)``, group ``g`` meeting filters ``g*O/G:(g+1)*O/G``; moving ``G``
next to the channels gives ``(N/G, G*C)``, which is exactly a ``G``-group
feature-grouped convolution with the same filters.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._api import make_spec
from jaxconv._conv import ConvSpec
from jaxconv._geometry import conv_geometry, dilate_dim
from jaxconv._primitives import apply_conv, apply_conv_transpose
from jaxconv._transpose import primal_filters, transposed_route
from jaxconv._validate import as_array, as_int, ntuple


def _per_dim(
    value: Any, n: int, name: str, lhs_shape: tuple[int, ...], *, nonpositive: type[Exception] = ValueError
) -> tuple[int, ...]:
    """lax's per-spatial-dimension arguments: a sequence of ``n`` positive ints (None: ones, for dilations).

    lax refuses a non-positive dilation in Python with a TypeError (its ``_dilate_shape``), a non-positive
    stride only in XLA's verifier, with a ValueError: ``nonpositive`` is the type to raise.
    """
    if value is None and name != "window_strides":
        return (1,) * n
    if value is None or isinstance(value, (int, np.integer, str)) or np.ndim(value) != 1:
        raise TypeError(f"{name} must be a sequence of {n} ints for lhs.shape={lhs_shape}, got {value!r}")
    values = tuple(value)
    if len(values) != n:
        raise ValueError(f"{name} must have {n} entries for lhs.shape={lhs_shape}, got {value!r}")
    values = ntuple(values, n, name, minimum=None)
    if any(v < 1 for v in values):
        raise nonpositive(f"{name} must be >= 1 in every dimension, got {values}")
    return values


def _dimension_numbers(
    lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], dimension_numbers: Any
) -> lax.ConvDimensionNumbers:
    """lax's ``conv_dimension_numbers`` (its TypeErrors); a ``ConvDimensionNumbers`` it passes on unchecked is checked.

    lax meets a bad one later, as an IndexError or in XLA's verifier; here it is a ValueError.
    """
    if len(lhs_shape) != len(rhs_shape):
        # lax's conv_dimension_numbers raises TypeError, but returns a ConvDimensionNumbers as given,
        # leaving the ranks to the shape rule's ValueError.
        error = ValueError if isinstance(dimension_numbers, lax.ConvDimensionNumbers) else TypeError
        raise error(f"lhs and rhs must have the same rank, got lhs.shape={lhs_shape} and rhs.shape={rhs_shape}")
    if len(lhs_shape) < 2:  # lax: an IndexError
        raise TypeError(f"lhs and rhs need rank >= 2 (batch and feature dims), got lhs.shape={lhs_shape}")
    dnums = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
    for name, spec in zip(dnums._fields, dnums):
        try:
            is_permutation = sorted(operator.index(i) for i in spec) == list(range(len(lhs_shape)))
        except TypeError:
            is_permutation = False
        if not is_permutation:
            raise ValueError(
                f"dimension_numbers.{name} must be a permutation of range({len(lhs_shape)}) for "
                f"lhs.shape={lhs_shape} and rhs.shape={rhs_shape}, got {spec!r}"
            )
    return lax.ConvDimensionNumbers(*(tuple(operator.index(i) for i in spec) for spec in dnums))


def _explicit_padding(padding: Any) -> tuple[tuple[int, int], ...]:
    """lax's reading of explicit padding: ``(lo, hi)`` int pairs, else a ValueError (their count is checked later)."""
    try:
        return tuple((operator.index(lo), operator.index(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        raise ValueError(f"padding must be a string or a sequence of (low, high) int pairs, got {padding!r}") from None


def conv_general_dilated(
    lhs: jax.typing.ArrayLike,
    rhs: jax.typing.ArrayLike,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: lax.ConvGeneralDilatedDimensionNumbers = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: lax.PrecisionLike = None,
    preferred_element_type: jax.typing.DTypeLike | None = None,
    out_sharding: Any = None,
) -> jax.Array:
    """``jax.lax.conv_general_dilated``, computed as im2col + GEMM with the note's VJP.

    Args:
      lhs: input of rank ``n + 2``.
      rhs: kernel of rank ``n + 2``.
      window_strides: ``n`` positive ints.
      padding: ``"SAME"``, ``"SAME_LOWER"``, ``"VALID"`` or ``n`` ``(lo, hi)`` pairs.
      lhs_dilation: ``n`` positive ints (transposed convolution), or None.
      rhs_dilation: ``n`` positive ints (atrous convolution), or None.
      dimension_numbers: None (``NCHW``/``OIHW``/``NCHW``), a
        ``lax.ConvDimensionNumbers``, or three strings such as
        ``("NHWC", "HWIO", "NHWC")``.
      feature_group_count: feature groups.
      batch_group_count: batch groups.
      precision: passed to the GEMMs.
      preferred_element_type: accumulation and output dtype.
      out_sharding: the output's sharding, as lax takes it (a ``NamedSharding``
        or ``PartitionSpec`` over explicit mesh axes), applied with
        ``jax.sharding.reshard``.

    Returns:
      The convolution, laid out by ``dimension_numbers``' output spec.

    >>> x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    >>> y = conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    >>> y.shape, bool(jnp.allclose(y, lax.conv_general_dilated(
    ...     x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))))
    ((2, 8, 8, 4), True)
    """
    # The checks run in lax's order, so that a call with several faults raises lax's type for the first.
    lhs, rhs = as_array(lhs, "lhs"), as_array(rhs, "rhs")
    dnums = _dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    _check_out_sharding(out_sharding)
    lhs_perm, rhs_perm, out_perm = dnums
    # Checked on the canonical (N, C, *spatial) / (O, I, *kernel) shapes; the arrays move only once all pass.
    x_shape, w_shape = tuple(lhs.shape[i] for i in lhs_perm), tuple(rhs.shape[i] for i in rhs_perm)
    spatial_dims = len(x_shape) - 2
    pads = padding if isinstance(padding, str) else _explicit_padding(padding)

    feature_groups = as_int(feature_group_count, "feature_group_count", minimum=1)
    batch_groups = as_int(batch_group_count, "batch_group_count", minimum=1)
    (batch, channels), (out_features, in_features) = x_shape[:2], w_shape[:2]
    if channels % feature_groups or channels // feature_groups != in_features:
        raise ValueError(
            f"lhs feature size {channels} (lhs.shape={lhs.shape}) divided by feature_group_count="
            f"{feature_groups} must equal the rhs input feature size {in_features} (rhs.shape={rhs.shape})"
        )
    groups = feature_groups * batch_groups
    if out_features % groups:
        raise ValueError(
            f"rhs output feature size {out_features} (rhs.shape={rhs.shape}) must be a multiple of "
            f"feature_group_count * batch_group_count = {groups}"
        )
    if batch % batch_groups:
        raise ValueError(
            f"batch_group_count={batch_groups} must divide the lhs batch size {batch} (lhs.shape={lhs.shape})"
        )
    if feature_groups > 1 and batch_groups > 1:
        raise ValueError(
            f"at most one of feature_group_count={feature_groups} and batch_group_count={batch_groups} may be > 1"
        )
    strides = _per_dim(window_strides, spatial_dims, "window_strides", lhs.shape)
    lhs_dilation = _per_dim(lhs_dilation, spatial_dims, "lhs_dilation", lhs.shape, nonpositive=TypeError)
    rhs_dilation = _per_dim(rhs_dilation, spatial_dims, "rhs_dilation", lhs.shape, nonpositive=TypeError)
    if not isinstance(pads, str) and len(pads) != spatial_dims:  # lax: conv_shape_tuple's TypeError
        raise TypeError(
            f"padding must have one entry per spatial dimension ({spatial_dims}) for lhs.shape={lhs.shape}, "
            f"got {len(pads)}: {pads}"
        )
    geometry = conv_geometry(
        x_shape[2:], w_shape[2:], stride=strides, padding=pads, dilation=rhs_dilation, lhs_dilation=lhs_dilation
    )
    if lhs.dtype != rhs.dtype:  # lax's dtype rule runs after its shape rule
        raise TypeError(f"lhs and rhs must have the same dtype, got {lhs.dtype} and {rhs.dtype}")
    options: dict[str, Any] = dict(
        batch_axis=lhs_perm[0], precision=precision, preferred_element_type=preferred_element_type
    )
    perms = (lhs_perm, rhs_perm, out_perm)
    primal = transposed_route(geometry, batch_groups, lhs.dtype)
    if primal is not None:  # the input-gradient of a conv: computed as the note's Eq. 2 and col2im
        primal_w_shape = (groups * in_features, out_features // groups) + w_shape[2:]
        spec = make_spec(primal, groups, lhs, (batch, out_features) + primal.in_spatial, primal_w_shape, **options)
        out = _apply_transposed_general(lhs, rhs, spec, perms)
    else:
        folded = (batch // batch_groups, channels * batch_groups) + x_shape[2:]  # what the conv sees
        spec = make_spec(geometry, groups, lhs, folded, w_shape, **options, backend="auto")
        out = _apply_general(lhs, rhs, spec, perms, batch_groups)
    return out if out_sharding is None else jax.sharding.reshard(out, out_sharding)


@functools.partial(jax.jit, static_argnames=("spec", "perms", "batch_groups"))
def _apply_general(
    lhs: jax.Array, rhs: jax.Array, spec: ConvSpec, perms: tuple[tuple[int, ...], ...], batch_groups: int
) -> jax.Array:
    """To the canonical layouts, batch groups folded into feature groups, the conv, and back."""
    lhs_perm, rhs_perm, out_perm = perms
    x, w = lhs.transpose(lhs_perm), rhs.transpose(rhs_perm)
    if batch_groups > 1:
        batch, channels = x.shape[:2]
        x = x.reshape((batch_groups, batch // batch_groups) + x.shape[1:]).swapaxes(0, 1)
        x = x.reshape((batch // batch_groups, batch_groups * channels) + x.shape[3:])
    out = apply_conv(x, w, None, spec)
    return out.transpose(tuple(int(i) for i in np.argsort(out_perm)))


@functools.partial(jax.jit, static_argnames=("spec", "perms"))
def _apply_transposed_general(
    lhs: jax.Array, rhs: jax.Array, spec: ConvSpec, perms: tuple[tuple[int, ...], ...]
) -> jax.Array:
    """An input-dilated conv as the transposed conv of ``spec``'s conv (:mod:`jaxconv._transpose`)."""
    lhs_perm, rhs_perm, out_perm = perms
    x, w = lhs.transpose(lhs_perm), rhs.transpose(rhs_perm)
    out = apply_conv_transpose(x, primal_filters(w, spec.groups), spec)
    return out.transpose(tuple(int(i) for i in np.argsort(out_perm)))


def _check_out_sharding(out_sharding: Any) -> None:
    """What lax's ``out_sharding`` takes, refused before the conv runs rather than by ``reshard`` after it."""
    if out_sharding is None or isinstance(out_sharding, jax.sharding.NamedSharding):
        return
    if not isinstance(out_sharding, jax.sharding.PartitionSpec):
        raise TypeError(f"out_sharding must be None, a NamedSharding or a PartitionSpec, got {out_sharding!r}")
    if jax.sharding.get_abstract_mesh().empty:
        raise ValueError(
            f"out_sharding={out_sharding} is a PartitionSpec, which needs a mesh: call under jax.set_mesh(mesh), "
            "or pass a NamedSharding"
        )


_CONV_TRANSPOSE_LAYOUTS = {
    2: ("NC", "IO", "NC"),
    3: ("NHC", "HIO", "NHC"),
    4: ("NHWC", "HWIO", "NHWC"),
    5: ("NHWDC", "HWDIO", "NHWDC"),
}


def _transpose_padding(k: Any, s: Any, padding: Any) -> tuple[Any, Any]:
    """lax's padding of a transposed conv's dilated input, for the forward conv's padding ``padding``."""
    if padding == "SAME":
        total, low = k + s - 2, (k - 1 if s > k - 1 else -(-(k + s - 2) // 2))
    elif padding == "VALID":
        total, low = k + s - 2 + max(k - s, 0), k - 1
    else:
        low, high = (k - p - 1 for p in padding)
        total = low + high
    return low, total - low


def _is_sequence(value: Any) -> bool:
    return not isinstance(value, str) and (isinstance(value, Sequence) or np.ndim(value) == 1)


def _forward_padding_to_transposed(
    kernel: tuple[int, ...], strides: Any, rhs_dilation: Any, padding: Any, lhs_shape: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """The explicit padding lax derives from a forward conv's, with lax's types for bad arguments.

    lax zips the per-dimension arguments (too few of any gives it too few pads: a TypeError), refuses a
    non-int dilation other than 1 (a TypeError) and reads the pads it derived from non-int strides as bad
    explicit padding (a ValueError).
    """
    n = len(kernel)
    dilation = (1,) * n if rhs_dilation is None else rhs_dilation
    per_dim = [padding] * len(strides) if isinstance(padding, str) and _is_sequence(strides) else padding
    for name, value in (("strides", strides), ("rhs_dilation", dilation), ("padding", per_dim)):
        if not _is_sequence(value):
            raise TypeError(f"{name} must be a sequence of {n} entries for lhs.shape={lhs_shape}, got {value!r}")
        if len(value) < n:
            raise TypeError(f"{name} must have {n} entries for lhs.shape={lhs_shape}, got {value!r}")
    pads = []
    for k, s, d, p in zip(kernel, strides, dilation, per_dim):
        if not (p in ("SAME", "VALID") if isinstance(p, str) else isinstance(p, tuple) and len(p) == 2):
            raise ValueError(f"padding must be 'SAME', 'VALID' or {n} (lo, hi) tuples, got {padding!r}")
        pads.append(_transpose_padding(k if d == 1 else dilate_dim(k, as_int(d, "rhs_dilation")), s, p))
    try:
        return tuple((operator.index(lo), operator.index(hi)) for lo, hi in pads)
    except TypeError:
        raise ValueError(
            f"strides must be ints for lhs.shape={lhs_shape}, got {strides!r}: with padding={padding!r} "
            "they set the explicit padding"
        ) from None


def conv_transpose(
    lhs: jax.typing.ArrayLike,
    rhs: jax.typing.ArrayLike,
    strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: lax.ConvGeneralDilatedDimensionNumbers = None,
    transpose_kernel: bool = False,
    precision: lax.PrecisionLike = None,
    preferred_element_type: jax.typing.DTypeLike | None = None,
    use_consistent_padding: bool = False,
) -> jax.Array:
    """``jax.lax.conv_transpose``: the same arguments and result, computed as the note read backwards.

    lax computes it as a conv of the input dilated by ``strides``; that conv is
    the input gradient of a strided conv, which jaxconv computes as
    ``col2im(X_f F_f^T)`` (Eq. 2, then col2im), multiplying no inserted zero,
    and differentiates by the conv's forward and Eq. 1 (:mod:`jaxconv._transpose`).

    Args:
      lhs, rhs: input and kernel of rank ``n + 2``, laid out by ``dimension_numbers``
        (default ``NHWC``/``HWIO``/``NHWC`` and their 1-d and 3-d kin, as lax).
      strides: ``n`` ints, the fractional stride.
      padding: ``"SAME"``, ``"VALID"`` or ``n`` ``(lo, hi)`` pairs, read as lax reads them.
      rhs_dilation: ``n`` ints or None.
      dimension_numbers, transpose_kernel, precision, preferred_element_type,
      use_consistent_padding: as for ``jax.lax.conv_transpose``.

    >>> x, w = jnp.ones((1, 4, 4, 3)), jnp.ones((3, 3, 3, 2))
    >>> y = conv_transpose(x, w, (2, 2), "SAME")
    >>> y.shape, bool(jnp.allclose(y, lax.conv_transpose(x, w, (2, 2), "SAME")))
    ((1, 8, 8, 2), True)
    """
    lhs, rhs = as_array(lhs, "lhs"), as_array(rhs, "rhs")
    if lhs.ndim != rhs.ndim or lhs.ndim < 2:  # lax asserts (an AssertionError); a ValueError, as for any bad shape
        raise ValueError(f"lhs and rhs must have one rank >= 2, got lhs.shape={lhs.shape} and rhs.shape={rhs.shape}")
    if dimension_numbers is None:
        if lhs.ndim not in _CONV_TRANSPOSE_LAYOUTS:
            raise ValueError(f"no default dimension_numbers for rank {lhs.ndim} (lhs.shape={lhs.shape}); pass them")
        dimension_numbers = _CONV_TRANSPOSE_LAYOUTS[lhs.ndim]
    dnums = _dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    spatial_dims = lhs.ndim - 2
    if use_consistent_padding or (isinstance(padding, str) and padding in ("SAME", "VALID")):
        kernel = tuple(rhs.shape[i] for i in dnums.rhs_spec[2:])
        padding = _forward_padding_to_transposed(kernel, strides, rhs_dilation, padding, lhs.shape)
    # The strides are the conv's lhs_dilation: lax's types for a bad one, under this name.
    strides = _per_dim(strides, spatial_dims, "strides", lhs.shape, nonpositive=TypeError)
    if transpose_kernel:  # flip the spatial dims and swap the kernel's input and output features
        rhs = jnp.flip(rhs, axis=tuple(dnums.rhs_spec[2:])).swapaxes(dnums.rhs_spec[0], dnums.rhs_spec[1])
    ones = (1,) * spatial_dims
    return conv_general_dilated(
        lhs, rhs, ones, padding, strides, rhs_dilation, dnums, precision=precision,
        preferred_element_type=preferred_element_type,
    )  # fmt: skip
