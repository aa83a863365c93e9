"""The measurements behind jaxconv's design choices, as Markdown sections of ``RESULTS.md``.

Three questions the issues leave to measurement, each answered on benchmark
shapes in the same process as the main benchmark (``benchmarks/run.py``
appends these sections to ``RESULTS.md``), or alone::

    python benchmarks/design.py

1. **What the forward saves for the backward**: phi(I)^T, or x with phi(I)^T
   rebuilt in the backward (what ``jaxconv._conv._conv_fwd`` does).
2. **col2im**: one strided ``lax.pad`` per kernel offset, summed
   (``"pad_add"``, the default), or one scatter-add with the im2col indices
   (``"scatter_add"``).
3. **The memory-bounded mode**: ``max_cols_bytes`` chunks the batch; on a
   batch whose phi(I) is 0.6 GB, XLA's temp memory and the time with no
   budget, 32 MiB and the default, and the largest difference from the
   unchunked results.

Times are the median of interleaved calls of ``jax.value_and_grad`` of
``sum(conv(x, w) * g)`` with respect to x and w, jitted; memory is XLA's
``memory_analysis().temp_size_in_bytes`` of that executable.
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jaxconv
from jaxconv._conv import from_output, to_output, unflatten_filters
from jaxconv._custom_vjp import conv_forward, conv_vjp
from jaxconv.compare import time_interleaved

MIB = 2**20


# --- the variant that saves phi ---------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_saving_phi(x: jax.Array, w: jax.Array, spec: jaxconv.ConvSpec) -> jax.Array:
    """jaxconv's conv (no groups, no bias) whose forward saves phi(I)^T instead of x."""
    return conv_forward(x, w, None, spec)


def _saving_phi_fwd(x, w, spec):
    phi_t = jaxconv.im2col_t(x, spec.geometry)
    out = to_output(jaxconv.forward_gemm(phi_t, jaxconv.flatten_filters(w, 1)), spec.geometry, x.shape[0])
    return out, (phi_t, w, x.shape[0])


def _saving_phi_bwd(spec, residuals, dout):
    phi_t, w, batch = residuals
    dout_t = from_output(dout, spec.geometry, 1)
    dw = unflatten_filters(jaxconv.filter_grad(phi_t, dout_t), w.shape)
    dx = jaxconv.col2im_t(jaxconv.cols_grad(dout_t, jaxconv.flatten_filters(w, 1)), spec.geometry, batch)
    return dx, dw


conv_saving_phi.defvjp(_saving_phi_fwd, _saving_phi_bwd)


# --- measuring --------------------------------------------------------------------


def _normal(shape: Sequence[int], seed: int) -> jax.Array:
    # NumPy: an eager jax.random.normal compiles a kernel per shape, seconds each on a CPU.
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


def _inputs(x_shape: Sequence[int], w_shape: Sequence[int]) -> tuple[jax.Array, jax.Array]:
    return _normal(x_shape, 0), _normal(w_shape, 1)


def _value_and_grad(conv_fn: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, w: jax.Array):
    """The compiled value_and_grad of sum(conv(x, w) * g) and its cotangent-weighted loss."""
    out_shape = jax.eval_shape(conv_fn, x, w).shape
    g = _normal(out_shape, 2)
    loss = lambda x, w: jnp.sum(conv_fn(x, w) * g)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(x, w).compile()


def _blocking(fn: Callable, args: Sequence[jax.Array]) -> Callable[[], object]:
    return lambda: jax.block_until_ready(fn(*args))


def _median_times(compiled: dict[str, Callable], args: Sequence[jax.Array], repeats: int) -> dict[str, float]:
    """Median seconds per call of ``jaxconv compare``'s interleaved timer: exactly ``repeats`` calls each."""
    calls = {name: _blocking(fn, args) for name, fn in compiled.items()}
    return {name: t.median for name, t in time_interleaved([calls], repeats=repeats, min_time=0).items()}


def _held_bytes(conv_fn: Callable, x: jax.Array, w: jax.Array) -> int:
    """Bytes a bare ``jax.vjp`` keeps between the forward and the backward pass."""
    _, vjp_fn = jax.jit(lambda x, w: jax.vjp(conv_fn, x, w))(x, w)
    return sum(leaf.nbytes for leaf in jax.tree.leaves(vjp_fn))


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


SHAPES = {
    "cifar2": ((64, 64, 32, 32), (64, 64, 3, 3), 1),
    "cifar3": ((64, 128, 16, 16), (128, 128, 3, 3), 1),
    "lenet2": ((128, 32, 12, 12), (64, 32, 5, 5), 0),
}


def saved_residuals(repeats: int = 10) -> list[str]:
    """Question 1: save phi^T or x? Whole batch (no chunking) so the two differ only in that."""
    rows = []
    for name, (x_shape, w_shape, pad) in SHAPES.items():
        x, w = _inputs(x_shape, w_shape)
        spec = jaxconv.ConvSpec(jaxconv.conv_geometry(x_shape[2:], w_shape[2:], padding=pad), max_cols_bytes=None)
        variants = {
            "x (phi rebuilt)": functools.partial(conv_vjp, b=None, spec=spec),
            "phi^T": functools.partial(conv_saving_phi, spec=spec),
        }
        compiled = {label: _value_and_grad(fn, x, w) for label, fn in variants.items()}
        times = _median_times(compiled, (x, w), repeats)
        for label, fn in variants.items():
            temp = compiled[label].memory_analysis().temp_size_in_bytes
            held = _held_bytes(fn, x, w)
            rows.append([name, label, f"{times[label] * 1e3:.1f}", f"{temp / MIB:.1f}", f"{held / MIB:.1f}"])
    return [
        "### What the forward saves for the backward",
        "",
        "Whole batch, no chunking. value_and_grad inside one jit, and the bytes a bare `jax.vjp` holds "
        "between the passes (what a training step that splits the passes, or a long model, keeps alive).",
        "",
        *_table(["case", "forward saves", "vag ms", "XLA temp MiB", "held by jax.vjp MiB"], rows),
    ]


def col2im_methods(repeats: int = 10) -> list[str]:
    """Question 2: pad_add or scatter_add, at the default budget."""
    rows = []
    for name, (x_shape, w_shape, pad) in SHAPES.items():
        x, w = _inputs(x_shape, w_shape)
        compiled = {
            method: _value_and_grad(functools.partial(jaxconv.conv, padding=pad, col2im_method=method), x, w)
            for method in ("pad_add", "scatter_add")
        }
        times = _median_times(compiled, (x, w), repeats)
        rows.append(
            [name, f"{times['pad_add'] * 1e3:.1f}", f"{times['scatter_add'] * 1e3:.1f}",
             f"{times['scatter_add'] / times['pad_add']:.2f}"]
        )  # fmt: skip
    return [
        "### col2im: strided pad-adds or one scatter-add",
        "",
        *_table(["case", "vag ms pad_add", "vag ms scatter_add", "scatter_add / pad_add"], rows),
    ]


def memory_bounded(repeats: int = 3, batch: int = 256) -> list[str]:
    """Question 3: the cols budget on a batch large enough to matter."""
    x_shape, w_shape, pad = (batch, 64, 32, 32), (64, 64, 3, 3), 1
    x, w = _inputs(x_shape, w_shape)
    phi_bytes = jaxconv.conv_geometry(x_shape[2:], w_shape[2:], padding=pad).num_windows * 64 * 9 * 4 * batch
    default = jaxconv.default_max_cols_bytes()
    budgets = {"none": None, "32 MiB": 32 * MIB, f"{default // MIB} MiB (default)": default}
    fns = {label: functools.partial(jaxconv.conv, padding=pad, max_cols_bytes=b) for label, b in budgets.items()}
    compiled = {label: _value_and_grad(fn, x, w) for label, fn in fns.items()}
    times = _median_times(compiled, (x, w), repeats)
    results = {label: fn(x, w) for label, fn in compiled.items()}
    reference = jax.tree.leaves(results["none"])
    rows = []
    for label in budgets:
        temp = compiled[label].memory_analysis().temp_size_in_bytes
        diff = max(
            float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
            for a, b in zip(jax.tree.leaves(results[label]), reference)
        )
        rows.append([label, f"{temp / MIB:.0f}", f"{times[label] * 1e3:.0f}", f"{diff:.1e}"])
    return [
        "### The memory-bounded mode",
        "",
        f"x {x_shape}, w {w_shape}, padding {pad}: phi(I) of the whole batch is {phi_bytes / MIB:.0f} MiB. "
        "max rel diff: the largest |difference| from the unchunked loss and gradients over the largest "
        "|value| (chunks change only the order in which dL/dW sums over images).",
        "",
        *_table(["max_cols_bytes", "vag XLA temp MiB", "vag ms", "max rel diff vs none"], rows),
    ]


def design_sections(repeats: int = 10) -> list[str]:
    """All three, as Markdown lines, then the earlier measurements kept in ``design_history.md``."""
    return [
        "## Design choices",
        "",
        *saved_residuals(repeats),
        "",
        *col2im_methods(repeats),
        "",
        *memory_bounded(max(3, repeats // 3)),
        "",
        *(pathlib.Path(__file__).with_name("design_history.md").read_text().splitlines()),
        "",
    ]


if __name__ == "__main__":
    print("\n".join(design_sections()))
