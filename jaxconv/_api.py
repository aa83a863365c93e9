"""The friendly, PyTorch-style API: ``conv``, ``conv1d/2d/3d`` and the lax reference.

Arguments are checked here, in Python, before anything is traced: wrong
ranks, channel and group mismatches, bad bias, windows that do not fit and
non-float dtypes raise ``ValueError``/``TypeError`` naming the argument and
the shapes. :func:`lax_conv` takes the same arguments and the same checks, and
computes with ``jax.lax.conv_general_dilated`` on the same geometry: it is the
reference for tests, ``jaxconv compare`` and ``--conv lax`` in training.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Literal, Protocol

import jax
import jax.numpy as jnp
from jax import lax

from jaxconv._budget import batch_devices, resolve_max_cols_bytes
from jaxconv._contraction import contraction_for
from jaxconv._conv import ConvSpec, add_bias
from jaxconv._geometry import ConvGeometry, Padding, check_windows_fit, conv_geometry
from jaxconv._im2col import COL2IM_METHODS, Col2imMethod
from jaxconv._primitives import apply_conv
from jaxconv._validate import (
    as_array,
    as_dtype,
    as_int,
    as_precision,
    check_batch_rank,
    check_choice,
    check_preferred_element_type,
    dtype_name,
)

BACKENDS = ("xla", "pallas", "auto")
Backend = Literal["xla", "pallas", "auto"]
# An array, or its shape and dtype alone (``jax.eval_shape``'s form): all that the checks and the spec read.
Shaped = jax.Array | jax.ShapeDtypeStruct


def resolve_backend(
    backend: Any, geometry: Any, groups: int, dtype: Any, x_shape: Any, w_shape: Any
) -> Literal["xla", "pallas"]:
    """``"auto"`` -> the backend measured fastest for this conv; ``"pallas"`` only where its kernels apply.

    No Pallas figure has been measured on any platform yet (``benchmarks/RESULTS.md``), so ``"auto"`` is XLA.
    """
    check_choice(backend, BACKENDS, "backend")
    if backend != "pallas":
        return "xla"
    from jaxconv._pallas import unsupported_reason

    reason = unsupported_reason(geometry, groups, dtype, x_shape=x_shape, w_shape=w_shape)
    if reason is not None:
        raise ValueError(f"backend='pallas' does not support this convolution: {reason}; use backend='xla' or 'auto'")
    return "pallas"


def make_spec(
    geometry: ConvGeometry,
    groups: int,
    x: Shaped,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    *,
    batch_axis: int = 0,
    precision: Any = None,
    preferred_element_type: Any = None,
    col2im_method: Any = "pad_add",
    max_cols_bytes: Any = "auto",
    backend: Any = "xla",
) -> ConvSpec:
    """The static :class:`ConvSpec` of both entry points, once each has checked its shapes.

    ``x`` is the input as given (its dtype and sharding), ``x_shape`` and
    ``w_shape`` the canonical ``(N, C, *s)`` / ``(FN, C/G, *k)`` shapes.
    """
    preferred = as_dtype(preferred_element_type, "preferred_element_type")
    check_preferred_element_type(x.dtype, preferred)
    check_choice(col2im_method, COL2IM_METHODS, "col2im_method")
    return ConvSpec(
        geometry=geometry,
        groups=groups,
        precision=as_precision(precision),
        preferred_element_type=dtype_name(preferred, "preferred_element_type"),
        col2im_method=col2im_method,
        max_cols_bytes=resolve_max_cols_bytes(max_cols_bytes),
        devices=batch_devices(x, batch_axis),
        backend=resolve_backend(backend, geometry, groups, x.dtype, x_shape, w_shape),
        contraction=contraction_for(jax.default_backend(), x.dtype, w_shape[1], w_shape[0] // groups),
    )


def check_dtypes(x: Shaped, w: Shaped, b: Shaped | None) -> None:
    """x, w and b share one floating or complex dtype: what the friendly convs differentiate."""
    for name, array in (("x", x), ("w", w)) + ((("b", b),) if b is not None else ()):
        if not jnp.issubdtype(array.dtype, jnp.inexact):
            raise TypeError(
                f"{name} must be floating or complex to differentiate, got dtype {array.dtype}; "
                "cast it first (for integer convolution use jaxconv.conv_general_dilated)"
            )
    if w.dtype != x.dtype or (b is not None and b.dtype != x.dtype):
        raise TypeError(
            f"x, w and b must share a dtype, got x {x.dtype}, w {w.dtype}" + (f", b {b.dtype}" if b is not None else "")
        )


def conv_spec(
    x: Shaped,
    w: Shaped,
    b: Shaped | None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: Any = 1,
    **options: Any,
) -> ConvSpec:
    """Validates the friendly API's arguments and returns the static :class:`ConvSpec`.

    ``options``: :func:`make_spec`'s keywords (precision, preferred_element_type,
    col2im_method, max_cols_bytes, backend).
    """
    check_batch_rank(x.shape, "x")
    if w.ndim != x.ndim:
        raise ValueError(
            f"w must have shape (FN, C/groups, *kernel) with the rank of x: "
            f"x has shape {x.shape}, w has shape {w.shape}"
        )
    check_dtypes(x, w, b)
    groups = as_int(groups, "groups", minimum=1)
    channels, fn, per_group = x.shape[1], w.shape[0], w.shape[1]
    if fn % groups:
        raise ValueError(f"w has {fn} filters (w.shape={w.shape}), not divisible by groups={groups}")
    if channels != groups * per_group:
        raise ValueError(
            f"x has C={channels} channels (x.shape={x.shape}) but w expects "
            f"groups * w.shape[1] = {groups} * {per_group} = {groups * per_group} (w.shape={w.shape})"
        )
    if b is not None and b.shape != (fn,):
        raise ValueError(f"b must have shape (FN,) = ({fn},) for w.shape={w.shape}, got {b.shape}")
    geometry = conv_geometry(x.shape[2:], w.shape[2:], stride=stride, padding=padding, dilation=dilation)
    check_windows_fit(geometry)
    return make_spec(geometry, groups, x, x.shape, w.shape, **options)


def _checked(
    x: Any, w: Any, b: Any, options: dict[str, Any]
) -> tuple[jax.Array, jax.Array, jax.Array | None, ConvSpec]:
    """:func:`conv`'s and :func:`lax_conv`'s arguments as arrays, and their spec: every check, before tracing."""
    x, w = as_array(x, "x"), as_array(w, "w")
    b = None if b is None else as_array(b, "b")
    return x, w, b, conv_spec(x, w, b, **options)


def conv(
    x: jax.typing.ArrayLike,
    w: jax.typing.ArrayLike,
    b: jax.typing.ArrayLike | None = None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: Padding = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    precision: lax.PrecisionLike = None,
    preferred_element_type: jax.typing.DTypeLike | None = None,
    col2im_method: Col2imMethod = "pad_add",
    max_cols_bytes: int | Literal["auto"] | None = "auto",
    backend: Backend = "xla",
) -> jax.Array:
    """N-d convolution as im2col + GEMM, differentiated by the note's formulas.

    Cross-correlation, as in PyTorch and ``jax.lax``:
    ``O[n, f, p] = sum_{c, k} W[f, c, k] I[n, g(f) * C/G + c, p * stride + k * dilation - pad_lo]``.

    Args:
      x: images ``(N, C, *spatial)``, 1 to 3 spatial dims, floating or complex.
      w: filters ``(FN, C / groups, *kernel)``, same dtype as ``x``.
      b: optional bias ``(FN,)``.
      stride: int or per-dimension ints.
      padding: int, per-dimension ints or ``(lo, hi)`` pairs (negative crops),
        or ``"VALID"``, ``"SAME"``, ``"SAME_LOWER"``.
      dilation: kernel dilation, int or per-dimension ints.
      groups: feature groups; ``C`` and ``FN`` must be divisible by it.
      precision: passed to every GEMM, forward and backward.
      preferred_element_type: accumulation and output dtype of the GEMMs.
      col2im_method: ``"pad_add"`` or ``"scatter_add"``, see :func:`jaxconv.col2im`.
      max_cols_bytes: memory budget for phi(I). A batch whose phi(I) is larger
        is processed in chunks of images (one loop) in the forward and the
        backward pass, with the same results up to float rounding (dL/dW adds
        the chunks' products in turn); None builds phi for the whole batch at
        once. At least one image is processed at a time (with the batch split
        over D devices, a multiple of D images, each holding its share). ``"auto"`` is
        :func:`jaxconv.default_max_cols_bytes` of the default backend (8 MiB on
        CPU, a slice of device memory on GPU and TPU). Under ``jax.vmap`` the
        budget counts every vmapped call's phi.
      backend: ``"xla"`` (im2col as a gather, then GEMMs), ``"pallas"`` (the
        same three GEMMs as Pallas kernels that gather phi's tiles themselves,
        never materialising phi; interpret mode off GPU), or ``"auto"`` (the
        backend measured fastest for this platform: XLA until Pallas is
        measured faster somewhere).

    Returns:
      ``(N, FN, *out_spatial)``.

    >>> x = jnp.ones((2, 3, 8, 8))
    >>> w = jnp.ones((4, 3, 3, 3))
    >>> conv(x, w, padding=1).shape
    (2, 4, 8, 8)
    >>> float(conv(x, w)[0, 0, 0, 0])
    27.0
    """
    options = {name: value for name, value in locals().items() if name not in ("x", "w", "b")}  # the keywords
    x, w, b, spec = _checked(x, w, b, options)
    return apply_conv(x, w, b, spec)


class ConvNd(Protocol):
    """The signature of :func:`conv1d`, :func:`conv2d` and :func:`conv3d`: :func:`conv`'s, for type checkers.

    >>> params = lambda fn: list(inspect.signature(fn).parameters.values())
    >>> params(ConvNd.__call__)[1:] == params(conv)  # after self
    True
    """

    def __call__(
        self,
        x: jax.typing.ArrayLike,
        w: jax.typing.ArrayLike,
        b: jax.typing.ArrayLike | None = None,
        *,
        stride: int | tuple[int, ...] = 1,
        padding: Padding = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        precision: lax.PrecisionLike = None,
        preferred_element_type: jax.typing.DTypeLike | None = None,
        col2im_method: Col2imMethod = "pad_add",
        max_cols_bytes: int | Literal["auto"] | None = "auto",
        backend: Backend = "xla",
    ) -> jax.Array: ...


def _conv_of_rank(spatial_dims: int) -> ConvNd:
    name = f"conv{spatial_dims}d"

    def conv_nd(
        x: jax.typing.ArrayLike, w: jax.typing.ArrayLike, b: jax.typing.ArrayLike | None = None, **kwargs: Any
    ) -> jax.Array:
        x = as_array(x, "x")
        if x.ndim != spatial_dims + 2:
            raise ValueError(
                f"{name} expects x of rank {spatial_dims + 2} (N, C, {spatial_dims} spatial), got shape {x.shape}"
            )
        return conv(x, w, b, **kwargs)

    conv_nd.__name__ = conv_nd.__qualname__ = name
    conv_nd.__doc__ = f"""{spatial_dims}-d :func:`conv`: checks that ``x`` has rank {spatial_dims + 2}, then calls it.

    >>> {name}(jnp.ones((1, 1{", 5" * spatial_dims})), jnp.ones((1, 1{", 3" * spatial_dims}))).shape
    (1, 1{", 3" * spatial_dims})
    """
    return conv_nd


_CONV_KEYWORDS = frozenset(inspect.signature(conv).parameters) - {"x", "w", "b"}
conv1d = _conv_of_rank(1)
conv2d = _conv_of_rank(2)
conv3d = _conv_of_rank(3)


def lax_conv(
    x: jax.typing.ArrayLike, w: jax.typing.ArrayLike, b: jax.typing.ArrayLike | None = None, **options: Any
) -> jax.Array:
    """The reference: :func:`conv`'s keyword arguments and checks, computed by ``lax.conv_general_dilated``.

    Differentiated by JAX's own rules for lax's convolution. ``col2im_method``,
    ``max_cols_bytes`` and ``backend`` are checked like :func:`conv`'s and ignored.
    An unknown keyword raises ``TypeError``, as it would for :func:`conv`.

    >>> x, w = jnp.ones((2, 3, 8, 8)), jnp.ones((4, 3, 3, 3))
    >>> bool(jnp.allclose(lax_conv(x, w, padding=1), conv(x, w, padding=1)))
    True
    """
    unknown = sorted(set(options) - _CONV_KEYWORDS)
    if unknown:
        raise TypeError(f"lax_conv() got unexpected keyword arguments {unknown}; it takes conv's")
    x, w, b, spec = _checked(x, w, b, options)
    return _lax_apply(x, w, b, spec)


@functools.partial(jax.jit, static_argnames=("spec",))
def _lax_apply(x: jax.Array, w: jax.Array, b: jax.Array | None, spec: ConvSpec) -> jax.Array:
    geometry = spec.geometry
    out = lax.conv_general_dilated(
        x,
        w,
        geometry.stride,
        geometry.padding,
        lhs_dilation=geometry.lhs_dilation,
        rhs_dilation=geometry.dilation,
        feature_group_count=spec.groups,
        precision=spec.precision,
        preferred_element_type=spec.preferred_element_type,
    )
    return add_bias(out, b)
