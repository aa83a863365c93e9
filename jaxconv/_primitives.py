"""The note's three products as JAX primitives, each the transpose of the other two.

==================  ===================================  ======================================
primitive           computes                             transposes (to x / to the other)
==================  ===================================  ======================================
``conv_p(x, w)``    O = phi(x) F_f                       col2im_p(ct, w), filter_grad_p(x, ct)
``col2im_p(d, w)``  col2im(d_f F_f^T)  (Eq. 2, col2im)   conv_p(ct, w), filter_grad_p(ct, d)
``filter_grad_p``   phi(x)^T d_f       (Eq. 1)           col2im_p(d, ct), conv_p(x, ct)
==================  ===================================  ======================================

All three are bilinear, so ``ad.defbilinear`` gives each its JVP and its two
transposes, and the set is closed: reverse mode runs exactly the note's
backward (the transposes of ``conv_p`` are Eq. 2 + col2im and Eq. 1), forward
mode (``jax.jvp``, ``jacfwd``, ``linearize``, ``hessian``) runs the conv on the
tangents, and every higher derivative is again one of the three. A transposed
conv is ``col2im_p`` itself, so it gets the same registration for free. lax's
conv is registered the same way (one bilinear primitive whose transposes are
convs). Why primitives rather than ``jax.custom_vjp`` (which JAX cannot
forward-differentiate) or ``custom_jvp`` with ``linear_call`` (no batching, no
grad of grad): README, "Forward mode".

Each primitive lowers to the drivers of :mod:`jaxconv._conv` (``mlir.lower_fun``),
where the formulas live, chunked by the phi budget. The batching rule folds a
vmapped axis into the batch (images only) or into the groups (filters or a
filter gradient), as lax's conv batching rule does.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jaxconv._batching import match_varying_axes, under_auto_axes
from jaxconv._conv import ConvSpec, _filter_grad, _forward, _transposed_forward, add_bias


def _plain(spec: ConvSpec) -> ConvSpec:
    """The spec for a transpose, which computes in its cotangent's dtype (the caller casts)."""
    return spec if spec.preferred_element_type is None else dataclasses.replace(spec, preferred_element_type=None)


def _out_dtype(spec: ConvSpec, dtype: Any) -> np.dtype:
    return np.dtype(dtype if spec.preferred_element_type is None else spec.preferred_element_type)


def _conv_shape(x: Any, w: Any, spec: ConvSpec) -> tuple[tuple[int, ...], np.dtype]:
    return (x.shape[0], w.shape[0]) + spec.geometry.out_spatial, _out_dtype(spec, x.dtype)


def _col2im_shape(d: Any, w: Any, spec: ConvSpec) -> tuple[tuple[int, ...], np.dtype]:
    return (d.shape[0], w.shape[1] * spec.groups) + spec.geometry.in_spatial, _out_dtype(spec, d.dtype)


def _filter_grad_shape(x: Any, d: Any, spec: ConvSpec) -> tuple[tuple[int, ...], np.dtype]:
    return (d.shape[1], x.shape[1] // spec.groups) + spec.geometry.kernel_size, _out_dtype(spec, d.dtype)


def _define(
    name: str,
    impl: Callable[..., jax.Array],
    shape_rule: Callable[[Any, Any, ConvSpec], tuple[tuple[int, ...], np.dtype]],
) -> Primitive:
    prim = Primitive(name)
    prim.def_impl(lambda a, b, *, spec: jax.jit(impl, static_argnums=0)(spec, a, b))

    def abstract_eval(a: Any, b: Any, *, spec: ConvSpec) -> Any:
        shape, dtype = shape_rule(a, b, spec)
        return a.update(shape=shape, dtype=dtype, weak_type=False)  # a's mesh and varying manual axes

    prim.def_abstract_eval(abstract_eval)
    mlir.register_lowering(prim, mlir.lower_fun(lambda a, b, *, spec: impl(spec, a, b), multiple_results=False))
    return prim


conv_p = _define("jaxconv_conv", _forward, _conv_shape)
col2im_p = _define("jaxconv_col2im", _transposed_forward, _col2im_shape)
filter_grad_p = _define("jaxconv_filter_grad", _filter_grad, _filter_grad_shape)


# --- transposes: each primitive's two are the other two --------------------------------


def _cast(out: jax.Array, aval: Any) -> jax.Array:
    return out.astype(aval.dtype)


def _conv_t_x(ct: jax.Array, x: Any, w: jax.Array, *, spec: ConvSpec) -> jax.Array:
    # dL/dI = col2im(dL/dO_f F_f^T): Eq. 2, then col2im
    return _cast(col2im_p.bind(ct, w.astype(ct.dtype), spec=_plain(spec)), x.aval)


def _conv_t_w(ct: jax.Array, x: jax.Array, w: Any, *, spec: ConvSpec) -> jax.Array:
    # dL/dF_f = phi(I)^T dL/dO_f: Eq. 1
    return _cast(filter_grad_p.bind(x.astype(ct.dtype), ct, spec=_plain(spec)), w.aval)


def _col2im_t_d(ct: jax.Array, d: Any, w: jax.Array, *, spec: ConvSpec) -> jax.Array:
    # the conv's forward on the cotangent
    return _cast(conv_p.bind(ct, w.astype(ct.dtype), spec=_plain(spec)), d.aval)


def _col2im_t_w(ct: jax.Array, d: jax.Array, w: Any, *, spec: ConvSpec) -> jax.Array:
    # Eq. 1 with the cotangent as the input and d as dL/dO
    return _cast(filter_grad_p.bind(ct, d.astype(ct.dtype), spec=_plain(spec)), w.aval)


def _filter_grad_t_x(ct: jax.Array, x: Any, d: jax.Array, *, spec: ConvSpec) -> jax.Array:
    return _cast(col2im_p.bind(d.astype(ct.dtype), ct, spec=_plain(spec)), x.aval)


def _filter_grad_t_d(ct: jax.Array, x: jax.Array, d: Any, *, spec: ConvSpec) -> jax.Array:
    return _cast(conv_p.bind(x.astype(ct.dtype), ct, spec=_plain(spec)), d.aval)


ad.defbilinear(conv_p, _conv_t_x, _conv_t_w)
ad.defbilinear(col2im_p, _col2im_t_d, _col2im_t_w)
ad.defbilinear(filter_grad_p, _filter_grad_t_x, _filter_grad_t_d)


# --- batching: a vmapped axis joins the batch, or the groups ------------------------------


def _fold_batch(
    prim: Primitive, images: jax.Array, other: jax.Array, axis: int, spec: ConvSpec
) -> tuple[jax.Array, int]:
    """Only the images are vmapped: ``B`` calls on ``N`` images are one call on ``B*N`` images."""
    images = jnp.moveaxis(images, axis, 0)
    size, batch = images.shape[:2]
    out = prim.bind(images.reshape((size * batch,) + images.shape[2:]), other, spec=spec)
    return out.reshape((size, batch) + out.shape[1:]), 0


def _images_as_groups(a: jax.Array, size: int) -> jax.Array:
    """``(B, N, F, *s) -> (N, B*F, *s)``: the vmapped calls' features side by side."""
    return a.swapaxes(0, 1).reshape((a.shape[1], size * a.shape[2]) + a.shape[3:])


def _batch_rule(prim: Primitive, images_second: bool) -> Callable[..., tuple[jax.Array, int]]:
    """``prim(a, b)`` under vmap; ``images_second``: b is images too (Eq. 1), else b is the filters."""

    def rule(args: tuple[jax.Array, jax.Array], dims: tuple[Any, Any], *, spec: ConvSpec) -> tuple[jax.Array, int]:
        (a, b), (a_dim, b_dim) = args, dims
        if not images_second and b_dim is None:
            return _fold_batch(prim, a, b, a_dim, spec)
        size = a.shape[a_dim] if a_dim is not None else b.shape[b_dim]
        a, b = (batching.bdim_at_front(v, d, size) for v, d in ((a, a_dim), (b, b_dim)))
        grouped = dataclasses.replace(spec, groups=spec.groups * size)
        # B calls with G groups each are one call with B*G groups: images' features, filters' rows side by side.
        b = _images_as_groups(b, size) if images_second else b.reshape((size * b.shape[1],) + b.shape[2:])
        out = prim.bind(_images_as_groups(a, size), b, spec=grouped)
        if prim is filter_grad_p:  # (B*FN, C/G, *k): the calls' filter gradients, one after another
            return out.reshape((size, out.shape[0] // size) + out.shape[1:]), 0
        batch, features = out.shape[:2]
        return out.reshape((batch, size, features // size) + out.shape[2:]), 1

    return rule


batching.primitive_batchers[conv_p] = _batch_rule(conv_p, images_second=False)
batching.primitive_batchers[col2im_p] = _batch_rule(col2im_p, images_second=False)
batching.primitive_batchers[filter_grad_p] = _batch_rule(filter_grad_p, images_second=True)


# --- entry points -------------------------------------------------------------------


def conv_with_bias(x: jax.Array, w: jax.Array, b: jax.Array | None, spec: ConvSpec) -> jax.Array:
    """``conv_p`` and its bias: ``(N, C, *s) x (FN, C/G, *k) -> (N, FN, *out)``, differentiable in every mode."""
    return add_bias(conv_p.bind(x, w, spec=spec), b)


@functools.partial(jax.jit, static_argnames=("spec",))
def apply_conv(x: jax.Array, w: jax.Array, b: jax.Array | None, spec: ConvSpec) -> jax.Array:
    """Jitted entry point: the primitives for inexact dtypes, the plain forward for integers and bool."""
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return under_auto_axes(functools.partial(conv_with_bias, spec=spec), x, w, b)
    # Inside shard_map a replicated w meets a sharded x: the products must see them vary alike (dL/dW is
    # then summed over the devices by the cast's own transpose, as for lax's conv).
    x, w, b = match_varying_axes(x, w, b)
    return under_auto_axes(functools.partial(conv_with_bias, spec=spec), x, w, b)


@functools.partial(jax.jit, static_argnames=("spec",))
def apply_conv_transpose(d: jax.Array, w: jax.Array, spec: ConvSpec) -> jax.Array:
    """The transposed conv ``col2im_p``: ``d`` ``(N, FN, *out)`` and the conv's filters ``w`` -> ``(N, C, *in)``."""
    d, w = match_varying_axes(d, w)
    return under_auto_axes(lambda d, w: col2im_p.bind(d, w, spec=spec), d, w)
