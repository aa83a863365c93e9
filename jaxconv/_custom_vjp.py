"""The conv's ``jax.custom_vjp`` registration: the note's backward in reverse mode only, beside the primitives.

:mod:`jaxconv._primitives` is how jaxconv tells JAX the backward (forward mode
included); this registration of the same drivers, :func:`conv_vjp`, stays for
reverse mode, tested against ``jax.grad`` of lax. Its backward computes dL/dI
and dL/dW in one loop over the chunks, and under ``jax.vmap`` its phi budget
counts every vmapped call (:func:`jaxconv._batching.budget_under_vmap`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

from jaxconv._batching import budget_under_vmap
from jaxconv._contraction import multiply_reduce_input_grad
from jaxconv._conv import (
    ConvSpec,
    _filter_grad_and,
    _forward,
    _multiply_reduce_filter_grad_and,
    _spread,
    add_bias,
    bias_grad,
    flatten_filters,
    from_output,
    phi_bytes_per_image,
)


def _backward(spec: ConvSpec, x: jax.Array, w: jax.Array, dout: jax.Array) -> tuple[jax.Array, jax.Array]:
    """dL/dI and dL/dW from dL/dO: the note's three lines, a chunk of images at a time."""
    if spec.backend == "pallas":
        from jaxconv import _pallas

        dx = _pallas.fused_input_grad(dout, w, spec.geometry, spec.groups, precision=spec.precision)
        return dx, _pallas.fused_filter_grad(x, dout, spec.geometry, spec.groups, precision=spec.precision)
    if spec.contraction == "multiply_reduce":
        step: Callable[..., Any] = lambda x_chunk, dout_chunk: multiply_reduce_input_grad(
            dout_chunk, w, spec.geometry, spec.groups, dout.dtype
        )
        return _multiply_reduce_filter_grad_and(spec, x, w.shape, dout, step)
    w_flat = flatten_filters(w, spec.groups).astype(dout.dtype)  # F_f
    step = lambda phi_t, dout_t, batch: _spread(spec, dout_t, w_flat, batch, dout.dtype)  # Eq. 2 + col2im
    return _filter_grad_and(spec, x, w.shape, dout, step)


def _under_vmap_budget(fn: Callable[..., Any], *, fold_batch: bool = False) -> Callable[..., Any]:
    """``fn(spec, images, w, ...)``, with its phi budget honoured under ``jax.vmap`` too (:mod:`jaxconv._batching`).

    phi(I) is of images with ``w.shape[1] * groups`` channels, whichever the first array holds.
    """

    @functools.wraps(fn)
    def wrapped(spec: ConvSpec, *arrays: jax.Array) -> Any:
        if spec.backend != "xla" or spec.max_cols_bytes is None:
            return fn(spec, *arrays)
        first, w = arrays[:2]
        per_item = first.shape[0] * phi_bytes_per_image(spec, w.shape[1] * spec.groups, first.dtype)
        call = budget_under_vmap(functools.partial(fn, spec), per_item, spec.max_cols_bytes, fold_batch=fold_batch)
        return call(*arrays)

    return wrapped


forward = _under_vmap_budget(_forward, fold_batch=True)  # images in, images out: a vmapped axis is more images
backward = _under_vmap_budget(_backward)  # dL/dW is each vmapped call's own: chunks of vmapped calls


# --- the custom VJP: the same drivers, reverse mode only ---------------------------


def conv_forward(x: jax.Array, w: jax.Array, b: jax.Array | None, spec: ConvSpec) -> jax.Array:
    """The forward pass with its bias, ``(N, C, *s) x (FN, C/G, *k) -> (N, FN, *out)``, no VJP attached."""
    return add_bias(forward(spec, x, w), b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def conv_vjp(x: jax.Array, w: jax.Array, b: jax.Array | None, spec: ConvSpec) -> jax.Array:
    """:func:`conv_forward` whose backward pass is the note's formulas (:func:`_conv_bwd`)."""
    return conv_forward(x, w, b, spec)


def _conv_fwd(
    x: jax.Array, w: jax.Array, b: jax.Array | None, spec: ConvSpec
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array | None]]:
    # The forward keeps x, not phi(I), and the backward rebuilds phi chunk by chunk: phi is FH*FW/stride^2
    # times the size of x, and holding it between the passes costs that memory for no speed (RESULTS.md).
    return conv_forward(x, w, b, spec), (x, w, b)


def _conv_bwd(
    spec: ConvSpec, residuals: tuple[jax.Array, jax.Array, jax.Array | None], dout: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    x, w, b = residuals
    dx, dw = backward(spec, x, w, dout)
    db = None if b is None else bias_grad(from_output(dout, spec.geometry, spec.groups)).astype(b.dtype)
    return dx.astype(x.dtype), dw.astype(w.dtype), db


conv_vjp.defvjp(_conv_fwd, _conv_bwd)
