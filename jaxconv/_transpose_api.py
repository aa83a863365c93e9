"""The friendly transposed convs ``conv_transpose1d/2d/3d`` (PyTorch's arguments), and :func:`conv_strategy`.

A transposed conv with PyTorch's arguments is the input gradient of the conv
with the same ``stride``, ``padding``, ``dilation``, ``groups`` and weight
``(C_in, C_out / groups, *k)``: that conv maps ``C_out`` channels to ``C_in``
filters, so PyTorch's weight is its filter tensor as it stands, and
``output_padding`` extra rows at the high end are ones no window of it reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import jax
from jax import lax

from jaxconv._api import add_bias, check_dtypes, make_spec
from jaxconv._contraction import contraction_for
from jaxconv._geometry import Padding, conv_geometry, dilate_dim
from jaxconv._primitives import apply_conv_transpose
from jaxconv._transpose import transposed_route
from jaxconv._validate import as_array, as_dtype, as_int, as_shape, check_batch_rank, ntuple


def _conv_transpose(
    x: Any,
    w: Any,
    b: Any,
    spatial_dims: int,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] = 0,
    output_padding: int | tuple[int, ...] = 0,
    groups: int = 1,
    dilation: int | tuple[int, ...] = 1,
    precision: lax.PrecisionLike = None,
    preferred_element_type: Any = None,
    max_cols_bytes: Any = "auto",
) -> jax.Array:
    name = f"conv_transpose{spatial_dims}d"
    x, w = as_array(x, "x"), as_array(w, "w")
    b = None if b is None else as_array(b, "b")
    if x.ndim != spatial_dims + 2:
        raise ValueError(
            f"{name} expects x of rank {spatial_dims + 2} (N, C_in, {spatial_dims} spatial), got {x.shape}"
        )
    if w.ndim != x.ndim:
        raise ValueError(
            f"w must have shape (C_in, C_out/groups, *kernel) with the rank of x: x {x.shape}, w {w.shape}"
        )
    check_dtypes(x, w, b)
    groups = as_int(groups, "groups", minimum=1)
    channels = x.shape[1]
    if w.shape[0] != channels or channels % groups:
        raise ValueError(
            f"w must have shape (C_in, C_out/groups, *kernel) with C_in = {channels} (x.shape={x.shape}) "
            f"divisible by groups={groups}; got w.shape={w.shape}"
        )
    out_features = w.shape[1] * groups
    if b is not None and b.shape != (out_features,):
        raise ValueError(f"b must have shape (C_out,) = ({out_features},) for w.shape={w.shape}, groups={groups}")
    stride = ntuple(stride, spatial_dims, "stride")
    dilation = ntuple(dilation, spatial_dims, "dilation")
    padding = ntuple(padding, spatial_dims, "padding", minimum=0)
    output_padding = ntuple(output_padding, spatial_dims, "output_padding", minimum=0)
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= max(s, d):
            raise ValueError(
                f"output_padding {output_padding} must be smaller than stride {stride} or dilation {dilation} "
                "in every dimension"
            )
    kernel = w.shape[2:]
    out_spatial = tuple(
        (size - 1) * s - 2 * p + dilate_dim(k, d) + op
        for size, k, s, p, d, op in zip(x.shape[2:], kernel, stride, padding, dilation, output_padding)
    )
    if min(x.shape[2:]) < 1 or min(out_spatial) < 1:
        raise ValueError(
            f"{name} of x.shape={x.shape} with kernel {kernel}, stride {stride}, padding {padding}, "
            f"dilation {dilation}, output_padding {output_padding} gives an empty output {out_spatial}"
        )
    pads = tuple((p, p - op) for p, op in zip(padding, output_padding))
    geometry = conv_geometry(out_spatial, kernel, stride=stride, padding=pads, dilation=dilation)
    options = dict(precision=precision, preferred_element_type=preferred_element_type, max_cols_bytes=max_cols_bytes)
    spec = make_spec(geometry, groups, x, (x.shape[0], out_features) + out_spatial, w.shape, **options)
    return add_bias(apply_conv_transpose(x, w, spec), b)


class ConvTransposeNd(Protocol):
    """The signature of :func:`conv_transpose1d`, :func:`conv_transpose2d` and :func:`conv_transpose3d`.

    >>> import inspect
    >>> params = lambda fn: list(inspect.signature(fn).parameters.values())
    >>> params(ConvTransposeNd.__call__)[1:] == params(conv_transpose2d)  # after self
    True
    """

    def __call__(
        self,
        x: jax.typing.ArrayLike,
        w: jax.typing.ArrayLike,
        b: jax.typing.ArrayLike | None = None,
        *,
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] = 0,
        output_padding: int | tuple[int, ...] = 0,
        groups: int = 1,
        dilation: int | tuple[int, ...] = 1,
        precision: lax.PrecisionLike = None,
        preferred_element_type: jax.typing.DTypeLike | None = None,
        max_cols_bytes: int | str | None = "auto",
    ) -> jax.Array: ...


def _conv_transpose_of_rank(spatial_dims: int) -> ConvTransposeNd:
    name = f"conv_transpose{spatial_dims}d"

    def conv_transpose_nd(
        x: jax.typing.ArrayLike,
        w: jax.typing.ArrayLike,
        b: jax.typing.ArrayLike | None = None,
        *,
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] = 0,
        output_padding: int | tuple[int, ...] = 0,
        groups: int = 1,
        dilation: int | tuple[int, ...] = 1,
        precision: lax.PrecisionLike = None,
        preferred_element_type: jax.typing.DTypeLike | None = None,
        max_cols_bytes: int | str | None = "auto",
    ) -> jax.Array:
        options = {k: v for k, v in locals().items() if k not in ("x", "w", "b", "spatial_dims")}
        return _conv_transpose(x, w, b, spatial_dims, **options)

    conv_transpose_nd.__name__ = conv_transpose_nd.__qualname__ = name
    conv_transpose_nd.__doc__ = f"""{spatial_dims}-d transposed conv with PyTorch's arguments: the note read backwards.

    ``torch.nn.functional.{name}``: the input gradient of the conv with the same
    stride, padding, dilation, groups and weight, computed as ``col2im(x_f F_f^T)``
    (Eq. 2, then col2im) with no product of an inserted zero; its VJP is the
    conv's forward (dL/dx) and Eq. 1 (dL/dw) (:mod:`jaxconv._transpose`).

    Args:
      x: ``(N, C_in, {", ".join("L" + str(i) for i in range(spatial_dims))})``, floating or complex.
      w: ``(C_in, C_out / groups, *kernel)``, PyTorch's layout, same dtype as ``x``.
      b: optional bias ``(C_out,)``.
      stride: int or per-dimension ints: the upsampling factor.
      padding: int or per-dimension ints >= 0: ``dilation * (k - 1) - padding`` zeros pad each side.
      output_padding: extra size at the high end, smaller than stride or dilation.
      groups: feature groups; ``C_in`` must be divisible by it.
      dilation: kernel dilation.
      precision, preferred_element_type: passed to the GEMMs, as for :func:`jaxconv.conv`.
      max_cols_bytes: memory budget for dL/dphi and phi, as for :func:`jaxconv.conv`.

    Returns:
      ``(N, C_out, *out)`` with ``out = (L - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.

    >>> {name}(jnp.ones((1, 1{", 3" * spatial_dims})), jnp.ones((1, 1{", 2" * spatial_dims})), stride=2).shape
    (1, 1{", 6" * spatial_dims})
    """
    return conv_transpose_nd


conv_transpose1d = _conv_transpose_of_rank(1)
conv_transpose2d = _conv_transpose_of_rank(2)
conv_transpose3d = _conv_transpose_of_rank(3)


def conv_strategy(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    *,
    stride: int | Sequence[int] = 1,
    padding: Padding = 0,
    dilation: int | Sequence[int] = 1,
    lhs_dilation: int | Sequence[int] = 1,
    groups: int = 1,
    dtype: jax.typing.DTypeLike = "float32",
    platform: str | None = None,
) -> str:
    """Which strategy jaxconv runs for a conv, as :func:`jaxconv.conv_general_dilated` would run it.

    Shapes are canonical: ``x_shape = (N, C, *spatial)``, ``w_shape = (FN, C / groups, *kernel)``;
    the other arguments are lax's (``padding`` explicit pairs, an int, or a string without ``lhs_dilation``).

    Returns:
      ``"gemm"`` (phi(I) written by the gather, then GEMMs), ``"multiply_reduce"``
      (the products as multiply-reduces fused with the gather, phi never written:
      depthwise and small groups, :mod:`jaxconv._contraction`), or either prefixed
      by ``"transposed/"`` for an input-dilated conv computed as the input gradient
      of a conv (:mod:`jaxconv._transpose`).

    >>> conv_strategy((8, 64, 32, 32), (64, 64, 3, 3), padding=1)
    'gemm'
    >>> conv_strategy((8, 64, 32, 32), (64, 1, 3, 3), padding=1, groups=64)
    'multiply_reduce'
    >>> conv_strategy((8, 64, 16, 16), (32, 64, 4, 4), padding=2, lhs_dilation=2)
    'transposed/gemm'
    """
    x_shape, w_shape = as_shape(x_shape, "x_shape"), as_shape(w_shape, "w_shape")
    check_batch_rank(x_shape, "x_shape")
    if len(w_shape) != len(x_shape):
        raise ValueError(f"w_shape {w_shape} and x_shape {x_shape} differ in rank")
    groups = as_int(groups, "groups", minimum=1)
    numpy_dtype = as_dtype(dtype, "dtype")
    platform = jax.default_backend() if platform is None else platform
    geometry = conv_geometry(
        x_shape[2:], w_shape[2:], stride=stride, padding=padding, dilation=dilation, lhs_dilation=lhs_dilation
    )
    per_group = (w_shape[1], w_shape[0] // groups)
    primal = transposed_route(geometry, 1, numpy_dtype)
    if primal is None:
        return contraction_for(platform, numpy_dtype, *per_group)
    return "transposed/" + contraction_for(platform, numpy_dtype, *per_group[::-1])
