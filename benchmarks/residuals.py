"""What should the forward save for the backward: phi(I)^T, or x (rebuilding phi^T in the backward)?

Runs both on three benchmark shapes, whole batch (no chunking), and prints the
time and XLA temp memory of a jitted value_and_grad, and the bytes a bare
``jax.vjp`` holds between the passes. Run: ``python benchmarks/residuals.py``.
"""

import functools
import time

import jax
import jax.numpy as jnp

from jaxconv._conv import (
    ConvSpec,
    _from_output,
    _to_output,
    cols_grad,
    conv_forward,
    conv_vjp,
    filter_grad,
    flatten_filters,
    forward_gemm,
    unflatten_filters,
)
from jaxconv._geometry import conv_geometry
from jaxconv._im2col import _col2im_t, _im2col_t


def bench(f, *args, reps=10):
    jax.block_until_ready(f(*args))
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
    return min(ts)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def save_phi(x, w, spec):
    return conv_forward(x, w, None, spec)


def _fwd(x, w, spec):
    phi_t = _im2col_t(x, spec.geometry)
    out = _to_output(forward_gemm(phi_t, flatten_filters(w, 1)), spec.geometry, x.shape[0])
    return out, (phi_t, w, x.shape[0])


def _bwd(spec, res, dout):
    phi_t, w, n = res
    w_flat = flatten_filters(w, 1)
    dout_t = _from_output(dout, spec)
    dw = unflatten_filters(filter_grad(phi_t, dout_t), w.shape)
    dx = _col2im_t(cols_grad(dout_t, w_flat), spec.geometry, n)
    return dx, dw


save_phi.defvjp(_fwd, _bwd)


def measure(fn, x, w):
    """(value_and_grad seconds, its XLA temp bytes, bytes a bare jax.vjp holds between the passes)."""
    vag = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(fn(x, w) ** 2), argnums=(0, 1)))
    temp = vag.lower(x, w).compile().memory_analysis().temp_size_in_bytes
    _, vjp_fn = jax.jit(lambda x, w: jax.vjp(fn, x, w))(x, w)
    held = sum(leaf.nbytes for leaf in jax.tree.leaves(vjp_fn))
    return bench(vag, x, w), temp, held


CASES = [
    ("cifar2", (64, 64, 32, 32), (64, 64, 3, 3), 1),
    ("cifar3", (64, 128, 16, 16), (128, 128, 3, 3), 1),
    ("lenet2", (128, 32, 12, 12), (64, 32, 5, 5), 0),
]

if __name__ == "__main__":
    print("| case | forward saves | value_and_grad (ms) | XLA temp (MiB) | held by jax.vjp (MiB) |")
    print("|---|---|---|---|---|")
    for name, x_shape, w_shape, pad in CASES:
        spec = ConvSpec(conv_geometry(x_shape[2:], w_shape[2:], padding=pad))
        x = jax.random.normal(jax.random.key(0), x_shape)
        w = jax.random.normal(jax.random.key(1), w_shape)
        variants = {
            "x (phi rebuilt)": functools.partial(conv_vjp, b=None, spec=spec),
            "phi^T": functools.partial(save_phi, spec=spec),
        }
        for label, fn in variants.items():
            seconds, temp, held = measure(fn, x, w)
            print(f"| {name} | {label} | {seconds * 1e3:.1f} | {temp / 2**20:.1f} | {held / 2**20:.1f} |", flush=True)
