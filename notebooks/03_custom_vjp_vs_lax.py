# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · The custom VJP beside `jax.grad` of `lax.conv_general_dilated`
#
# `jaxconv.conv` is a `jax.custom_vjp`: JAX does not differentiate its im2col and GEMM, it calls the
# backward pass derived in the note,
#
# $$\frac{\partial L}{\partial F_f} = \phi(I)^T\,\frac{\partial L}{\partial O_f}, \qquad
#   \frac{\partial L}{\partial \phi(I)} = \frac{\partial L}{\partial O_f}\,F_f^T, \qquad
#   \frac{\partial L}{\partial I} = \mathrm{col2im}\Big(\frac{\partial L}{\partial \phi(I)}\Big).$$
#
# `lax.conv_general_dilated` is differentiated by JAX itself, whose transpose rules express the
# gradients of a convolution as two more convolutions. This notebook puts the two side by side:
#
# 1. the programs `jax.grad` builds through each (their jaxprs), where the note's formulas can be read
#    off ours line by line;
# 2. values, gradients and times on a few small cases, measured by `jaxconv.compare`.
#
# Everything is float32, what a network trains in; notebooks 01 and 02 used float64 to check identities
# to rounding.

# %%
import collections

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax import lax

import jaxconv
from jaxconv.compare import PRESETS, TOLERANCES, compare, format_results
from nbhelpers import style_figures

# %matplotlib inline
style_figures()


def equations(jaxpr):
    """Every equation of a jaxpr, and of the jaxprs nested in its equations' parameters (jit, scan, ...)."""
    for eqn in getattr(jaxpr, "jaxpr", jaxpr).eqns:  # a ClosedJaxpr holds its Jaxpr in .jaxpr
        yield eqn
        for value in eqn.params.values():
            for inner in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(inner, "eqns"):
                    yield from equations(inner)


def primitive_counts(jaxpr):
    return collections.Counter(eqn.primitive.name for eqn in equations(jaxpr))


# %% [markdown]
# ## 1. What `jax.grad` traces
#
# A batch of $N = 2$ images with $C = 3$ channels of $5\times5$ pixels, $FN = 4$ filters of $2\times2$,
# stride 1, no padding, so $OH = OW = 4$. The batch's $\phi$ stacks the images' windows as rows:
# $M = N\cdot OH\cdot OW = 32$ rows and $K = C\cdot FH\cdot FW = 12$ columns. The three sizes differ, so
# a matrix's shape says which of the note's matrices it is. The loss is $L = \sum O \odot G$ for a fixed
# random $G$, so that $\partial L/\partial O = G$ (the loss `jaxconv.compare` uses too), and we ask for
# the gradient with respect to both the images and the filters.

# %%
N, C, H, W = 2, 3, 5, 5
FN, FH, FW = 4, 2, 2
key_x, key_w, key_g = jax.random.split(jax.random.key(0), 3)
x = jax.random.normal(key_x, (N, C, H, W))
w = jax.random.normal(key_w, (FN, C, FH, FW))
OH, OW = jaxconv.conv_geometry((H, W), (FH, FW)).out_spatial
M, K = N * OH * OW, C * FH * FW
G = jax.random.normal(key_g, (N, FN, OH, OW))  # dL/dO
print(f"OH, OW = {OH}, {OW};  phi: (M, K) = ({M}, {K});  F_f: (K, FN) = ({K}, {FN})")


def lax_conv(x, w):
    return lax.conv_general_dilated(x, w, window_strides=(1, 1), padding="VALID")


grad_ours = jax.grad(lambda x, w: jnp.sum(jaxconv.conv(x, w) * G), argnums=(0, 1))
grad_lax = jax.grad(lambda x, w: jnp.sum(lax_conv(x, w) * G), argnums=(0, 1))
for name, got, want in zip(("dL/dx", "dL/dw"), grad_ours(x, w), grad_lax(x, w)):
    error = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
    print(f"{name}: max |ours - lax| / max |lax| = {error:.1e}")
    assert error < TOLERANCES["float32"], (name, error)

# %% [markdown]
# ### lax: three convolutions
#
# `jax.make_jaxpr` prints the program JAX traces. Through `lax.conv_general_dilated` it is short: the
# forward convolution (the first `conv_general_dilated`), then the two transposes JAX derives for it,
# each itself a `conv_general_dilated` with other dimension numbers. $\partial L/\partial w$ convolves
# the images with the cotangent, the batch playing the role of the channels that are summed over;
# $\partial L/\partial x$ convolves the cotangent, padded by the kernel size minus one, with the filters
# flipped in space (`rev`) and their input and output channels swapped.

# %%
jaxpr_lax = jax.make_jaxpr(grad_lax)(x, w)
print(jaxpr_lax.pretty_print(use_color=False))
counts_lax = primitive_counts(jaxpr_lax)
print(dict(counts_lax))
assert counts_lax["conv_general_dilated"] == 3, counts_lax  # the forward and its two transposes

# %% [markdown]
# ### jaxconv: gathers, matrix products and pads
#
# Ours is longer, and has no convolution primitive at all. It is easiest read from the bottom: the
# outer program calls the forward pass and then the backward pass, the two halves of the custom VJP,
# each a nested `jit`. Inside each, a `custom_jvp_call` around a `custom_vmap_call` does no arithmetic:
# it gives `jax.vmap` a rule that keeps $\phi$ within its memory budget (the `custom_jvp` lets JAX
# differentiate through the `custom_vmap`). The two bodies they call are printed at the top. In them:
#
# * **im2col** (`jaxconv.im2col_t`) is the `gather` (after a `pad`, empty here, for the convolution's
#   padding): it reads the windows of the padded images into $\phi^T$, reshaped to $(K, M) = (12, 32)$.
#   The backward pass builds $\phi$ again from the images instead of keeping it from the forward pass
#   (for a real layer $\phi$ is many times larger than the input; see notebook 02);
# * **the filters** `w` are reshaped and transposed into $F_f$, $(K, FN) = (12, 4)$;
# * **the GEMMs** are the `dot_general`s: the forward's $O_f^T = F_f^T \phi^T$ and, in the backward
#   pass, $\partial L/\partial F_f = \phi^T\,\partial L/\partial O_f$, contracting over the $M = 32$
#   rows, and $(\partial L/\partial\phi)^T = F_f\,(\partial L/\partial O_f)^T$, contracting over the
#   $FN = 4$ filters. The library holds $\phi$ and $O_f$ transposed (the natural layout of an NCHW
#   output); the leading axis of size 1 is the group axis of grouped convolutions;
# * **col2im** (`jaxconv.col2im_t`) is the rest of the backward pass: one `slice` per kernel offset
#   picks that offset's rows of $(\partial L/\partial\phi)^T$, a `pad` puts them back where the
#   offset's pixels sit in the image, and a `reduce_sum` over their `stack` sums the $FH\cdot FW = 4$
#   of them: a pixel read by several windows collects all their gradients. A last `pad` and `slice`
#   would crop the convolution's padding (there is none here).
#
# Finally $\partial L/\partial F_f$ is transposed and reshaped to the filters' shape $(FN, C, FH, FW)$.

# %%
jaxpr_ours = jax.make_jaxpr(grad_ours)(x, w)
print(jaxpr_ours.pretty_print(use_color=False))

# %% [markdown]
# The same, counted. We walk the program, nested `jit`s and calls included, and check: no convolution
# primitive; two im2col gathers (forward, and backward rebuilding $\phi$); three `dot_general`s, whose
# operand and output shapes are those of the note's three products; and at least $FH\cdot FW$ pads for
# col2im. A shape is written without its size-1 group axis.

# %%
counts_ours = primitive_counts(jaxpr_ours)
print(dict(counts_ours))
assert "conv_general_dilated" not in counts_ours, counts_ours
assert counts_ours["gather"] == 2, counts_ours
assert counts_ours["pad"] >= FH * FW, counts_ours

# Which product each dot_general computes, from the sizes of its output (M, K, FN all differ).
PRODUCTS = {
    frozenset((FN, M)): "forward:  O_f^T = F_f^T phi^T",
    frozenset((K, FN)): "backward: dL/dF_f = phi^T dL/dO_f",
    frozenset((K, M)): "backward: (dL/dphi)^T = F_f (dL/dO_f)^T",
}
found = []
for eqn in equations(jaxpr_ours):
    if eqn.primitive.name == "dot_general":
        squeeze = lambda shape: tuple(d for d in shape if d != 1)
        operands = " x ".join(str(squeeze(v.aval.shape)) for v in eqn.invars)
        out = squeeze(eqn.outvars[0].aval.shape)
        found.append(PRODUCTS[frozenset(out)])
        print(f"dot_general {operands:<20} -> {str(out):<9} {found[-1]}")
assert sorted(found) == sorted(PRODUCTS.values()), found

# %% [markdown]
# ## 2. Errors and times on small cases
#
# `jaxconv.compare.compare` runs each case through `jaxconv.conv` and through lax on the same random
# inputs, compares the output and the gradients $\partial L/\partial x$, $\partial L/\partial w$ (and
# $\partial L/\partial b$ with a bias) against lax at `precision=HIGHEST`, and times the jitted forward
# and the jitted `jax.value_and_grad`, the two implementations called by turns so that machine noise
# hits both alike. A relative error is the largest absolute error divided by the largest absolute value
# of the reference; float32's tolerance is $10^{-4}$.
#
# The cases are from the `cpu-small` preset, tiny ones of each kind: a 2-d convolution with padding and
# bias, a strided one with "SAME" padding, a grouped and dilated one with uneven padding, and a strided
# 1-d one. (The preset's 3-d case is left out to keep the notebook quick: each case compiles six
# programs. `jaxconv compare` runs it, and the test suite checks 3-d convolutions.)
#
# **The times here are indicative only.** The cases are tiny, each is timed for a fraction of a second,
# and the machine that ran this notebook may have been busy with other work; at these sizes the
# fixed cost of a call weighs as much as the arithmetic. The measurement is the benchmark,
# `benchmarks/run.py`, on CNN-sized layers with many repeats and settled memory allocation; its
# results are in `benchmarks/RESULTS.md`.

# %%
cases = [case for case in PRESETS["cpu-small"] if case.name != "conv3d"]
for case in cases:
    print(f"{case.name:<8} {case.spec}")
results = compare(cases, repeats=5, min_time=0.02, torch=False)
print()
print(format_results(results))

tolerance = TOLERANCES["float32"]
eps = float(jnp.finfo(jnp.float32).eps)
for result in results:
    assert result.ok and result.max_rel_error <= tolerance, (result.case.name, result.errors)
    assert result.max_rel_error < 100 * eps, (result.case.name, result.errors)  # roundoff, not a bug

# %%
names = [result.case.name for result in results]
positions = np.arange(len(results))
fig, (ax_time, ax_error) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")

for offset, kind, label in [(-0.2, "forward", "forward"), (0.2, "value_and_grad", "value_and_grad")]:
    ratios = [result.ratio(kind) for result in results]
    ax_time.bar(positions + offset, ratios, width=0.4, label=label)
ax_time.axhline(1.0, color="black", linewidth=1, linestyle="--", label="same time as lax")
ax_time.set_xticks(positions, names)
ax_time.set_xlabel("case")
ax_time.set_ylabel("median time, jaxconv / lax")
ax_time.set_title("Time ratio jaxconv / lax (below 1: jaxconv faster); indicative only")
ax_time.legend(fontsize=8)

markers = {"out": "o", "dx": "s", "dw": "^", "db": "D"}
labels = {"out": "output", "dx": "dL/dx", "dw": "dL/dw", "db": "dL/db"}
for shift, (quantity, marker) in zip((-0.15, -0.05, 0.05, 0.15), markers.items()):
    xs = [p + shift for p, r in zip(positions, results) if quantity in r.errors]
    errors = [r.errors[quantity].rel for r in results if quantity in r.errors]
    ax_error.scatter(xs, errors, marker=marker, s=40, label=labels[quantity])
ax_error.axhline(tolerance, color="tab:red", linestyle="--", label=f"float32 tolerance {tolerance:.0e}")
ax_error.axhline(eps, color="0.5", linestyle=":", label=f"float32 machine epsilon {eps:.1e}")
ax_error.set_yscale("log")
ax_error.set_xticks(positions, names)
ax_error.set_xlabel("case")
ax_error.set_ylabel("max relative error vs lax at HIGHEST (log)")
ax_error.set_title("Errors of jaxconv's output and gradients")
ax_error.legend(fontsize=8, loc="center right")
plt.show()

# %% [markdown]
# The errors are of the order of float32's machine epsilon and far below the tolerance: the two
# implementations add the same products in different orders, and nothing else differs. The times are
# this run's, on tiny cases; `benchmarks/RESULTS.md` has the benchmark's, on real layer sizes.
#
# Notebook 04 trains a CNN with each implementation.
