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
# # 03 · jaxconv's primitives beside `jax.grad` of `lax.conv_general_dilated`
#
# `jaxconv.conv` is a JAX primitive, `jaxconv_conv`, computing $O_f = \phi(I)\,F_f$. The product is
# bilinear (linear in the images, linear in the filters), and JAX differentiates a bilinear primitive
# through its two *transposes* (`ad.defbilinear`, `jaxconv/_primitives.py`). Ours are the backward pass
# derived in the note, each a primitive of its own:
#
# | primitive | computes | in the note |
# |---|---|---|
# | `jaxconv_conv` | $O_f = \phi(I)\,F_f$ | the forward pass |
# | `jaxconv_filter_grad` | $\phi(I)^T\,\partial L/\partial O_f$ | Eq. (1): $\partial L/\partial F_f$ |
# | `jaxconv_col2im` | $\mathrm{col2im}(\partial L/\partial O_f\,F_f^T)$ | Eq. (2) and col2im: $\partial L/\partial I$ |
#
# Each is bilinear too, and its transposes are the other two, so every derivative of the conv, in either
# mode and of any order, is again these three. `lax.conv_general_dilated` is registered the same way: one
# bilinear primitive, whose transposes JAX expresses as two more convolutions. This notebook puts the two
# side by side:
#
# 1. the programs `jax.grad` builds through each (their jaxprs), and what our primitives lower to, where
#    the note's formulas can be read off line by line;
# 2. forward mode and a transposed convolution, checked against lax;
# 3. values, gradients and times on a few small cases, measured by `jaxconv.compare`.
#
# The file's name is for the other way to attach the note's backward pass to a function, a
# `jax.custom_vjp`: jaxconv keeps one, `jaxconv._custom_vjp.conv_vjp`, on the same formulas, and section 2
# shows what it cannot do.
#
# Everything is float32, what a network trains in; notebooks 01 and 02 used float64 to check identities
# to rounding.

# %%
import collections
import functools
import re

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax import lax

import jaxconv
from jaxconv._api import conv_spec
from jaxconv._custom_vjp import conv_vjp
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


def conv_primitives(jaxpr):
    """The counts of the convolution primitives, ours and lax's, in a jaxpr."""
    counts = primitive_counts(jaxpr)
    return {name: n for name, n in counts.items() if name.startswith("jaxconv_") or name == "conv_general_dilated"}


def relative_error(got, want):
    return float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))


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
    error = relative_error(got, want)
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
# ### jaxconv: the forward primitive and its two transposes
#
# Ours is as short, and has no convolution primitive. The outer program calls the forward pass, a
# nested `jit` holding `jaxconv_conv`, then a second `jit` holding its two transposes:
# `jaxconv_filter_grad` of the images and the cotangent gives $\partial L/\partial w$, and
# `jaxconv_col2im` of the cotangent and the filters gives $\partial L/\partial x$. The backward pass
# takes the images, not $\phi$, from the forward pass: `jaxconv_filter_grad` builds $\phi$ again (for a
# real layer $\phi$ is many times larger than the input; see notebook 02).
#
# Each primitive carries a `spec`, the static `jaxconv.ConvSpec` (geometry, groups, precision, $\phi$'s
# memory budget, ...), the same for all three here: we print it once and shorten it to `spec=...` below.

# %%
jaxpr_ours = jax.make_jaxpr(grad_ours)(x, w)
(spec,) = {eqn.params["spec"] for eqn in equations(jaxpr_ours) if eqn.primitive.name.startswith("jaxconv_")}
print(spec, end="\n\n")
print(re.sub(r"spec=ConvSpec\(.*\)", "spec=...", jaxpr_ours.pretty_print(use_color=False)))
counts_ours = conv_primitives(jaxpr_ours)
print(counts_ours)
assert counts_ours == {"jaxconv_conv": 1, "jaxconv_filter_grad": 1, "jaxconv_col2im": 1}, counts_ours

# %% [markdown]
# ### Inside the primitives: gathers, matrix products and pads
#
# A primitive reaches XLA through a lowering; ours lower (`mlir.lower_fun`) to the drivers in
# `jaxconv/_conv.py`, where the note's formulas are written, and each primitive's `impl` calls the same
# driver. `jax.make_jaxpr` of a primitive's `impl`, on operands shaped like those it gets in the program
# above, prints that driver's program. In the three:
#
# * **im2col** (`jaxconv.im2col_t`) is the `gather` (after a `pad`, empty here, for the convolution's
#   padding): it reads the windows of the padded images into $\phi^T$, reshaped to $(K, M) = (12, 32)$.
#   `jaxconv_conv` and `jaxconv_filter_grad` each have one; `jaxconv_col2im` needs none;
# * **the filters** `w` are reshaped and transposed into $F_f$, $(K, FN) = (12, 4)$;
# * **the GEMMs** are the `dot_general`s, one per primitive: the forward's $O_f^T = F_f^T \phi^T$;
#   $\partial L/\partial F_f = \phi^T\,\partial L/\partial O_f$, contracting over the $M = 32$ rows; and
#   $(\partial L/\partial\phi)^T = F_f\,(\partial L/\partial O_f)^T$, contracting over the $FN = 4$
#   filters. The library holds $\phi$ and $O_f$ transposed (the natural layout of an NCHW output); the
#   leading axis of size 1 is the group axis of grouped convolutions;
# * **col2im** (`jaxconv.col2im_t`) is the rest of `jaxconv_col2im`: one `slice` per kernel offset picks
#   that offset's rows of $(\partial L/\partial\phi)^T$, a `pad` puts them back where the offset's pixels
#   sit in the image, and a `reduce_sum` over their `stack` sums the $FH\cdot FW = 4$ of them: a pixel
#   read by several windows collects all their gradients. (With a stride each phase of the image is
#   summed on its own grid and the phases are interleaved by a reshape; at stride 1 there is one.) A last
#   `pad` and `slice` would crop the convolution's padding (there is none here).
#
# Finally $\partial L/\partial F_f$ is transposed and reshaped to the filters' shape $(FN, C, FH, FW)$.
# A body may also hold a few scalar operations (`is_finite`, `select_n`, a `mul` by 0, an `add`) before
# its im2col or its $F_f$: they add an exact zero read from the other operand, which changes no value but
# keeps XLA from sharing the backward's rebuilt $\phi$ with the forward's, or from flattening the filters
# before the layer's input exists (`jaxconv/_conv.py`).

# %%
bodies = {}
for eqn in equations(jaxpr_ours):
    if eqn.primitive.name.startswith("jaxconv_"):
        operands = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars]
        bodies[eqn.primitive.name] = jax.make_jaxpr(functools.partial(eqn.primitive.impl, **eqn.params))(*operands)
        print(f"--- {eqn.primitive.name}{tuple(tuple(a.shape) for a in operands)}")
        print(bodies[eqn.primitive.name].pretty_print(use_color=False))

# %% [markdown]
# The same, counted. We walk each primitive's program, nested `jit`s included, and check: no
# convolution primitive; an im2col gather in `jaxconv_conv` and in `jaxconv_filter_grad`; one
# `dot_general` in each primitive, whose operand and output shapes are those of the note's product for
# that primitive; and at least $FH\cdot FW$ pads in `jaxconv_col2im`. A shape is written without its
# size-1 group axis.

# %%
PRODUCTS = {  # each primitive's dot_general: its output's sizes (M, K, FN all differ), and the product
    "jaxconv_conv": ({FN, M}, "forward:  O_f^T = F_f^T phi^T"),
    "jaxconv_filter_grad": ({K, FN}, "backward: dL/dF_f = phi^T dL/dO_f"),
    "jaxconv_col2im": ({K, M}, "backward: (dL/dphi)^T = F_f (dL/dO_f)^T"),
}
squeeze = lambda shape: tuple(d for d in shape if d != 1)
for name, body in bodies.items():
    counts = primitive_counts(body)
    print(f"{name:<20} {dict((p, counts[p]) for p in ('gather', 'dot_general', 'pad'))}")
    assert "conv_general_dilated" not in counts, counts
    assert counts["gather"] == (0 if name == "jaxconv_col2im" else 1), (name, counts)
    assert counts["dot_general"] == 1, (name, counts)
    (dot,) = [eqn for eqn in equations(body) if eqn.primitive.name == "dot_general"]
    operands = " x ".join(str(squeeze(v.aval.shape)) for v in dot.invars)
    out = squeeze(dot.outvars[0].aval.shape)
    sizes, product = PRODUCTS[name]
    print(f"{'':<20} dot_general {operands:<20} -> {str(out):<9} {product}")
    assert set(out) == sizes, (name, out)
assert primitive_counts(bodies["jaxconv_col2im"])["pad"] >= FH * FW

# %% [markdown]
# ## 2. Forward mode, and a transposed convolution
#
# **Forward mode.** `jax.jvp` pushes a tangent $(\dot x, \dot w)$ through the conv; the conv being
# bilinear, the output's tangent is $\mathrm{conv}(\dot x, w) + \mathrm{conv}(x, \dot w)$: two more
# `jaxconv_conv`s. `jax.jacfwd` builds a Jacobian from such products, one per column. Both agree with
# lax's. The `jax.custom_vjp` registration of the same formulas, `conv_vjp`, agrees with lax in reverse
# mode, but JAX cannot run a `custom_vjp` function forward: `jax.jvp` of it raises a `TypeError`.

# %%
x_dot = jax.random.normal(jax.random.key(1), x.shape)
w_dot = jax.random.normal(jax.random.key(2), w.shape)
_, tangent_ours = jax.jvp(jaxconv.conv, (x, w), (x_dot, w_dot))
_, tangent_lax = jax.jvp(lax_conv, (x, w), (x_dot, w_dot))
jacobian_ours = jax.jacfwd(jaxconv.conv, argnums=1)(x, w)  # d O / d w: (N, FN, OH, OW, FN, C, FH, FW)
jacobian_lax = jax.jacfwd(lax_conv, argnums=1)(x, w)
custom_vjp_conv = lambda x, w: conv_vjp(x, w, None, conv_spec(x, w, None))
grads_custom_vjp = jax.grad(lambda x, w: jnp.sum(custom_vjp_conv(x, w) * G), argnums=(0, 1))(x, w)
for name, got, want in [
    ("jax.jvp(jaxconv.conv): tangent", tangent_ours, tangent_lax),
    ("jax.jacfwd(jaxconv.conv) wrt w", jacobian_ours, jacobian_lax),
    ("jax.grad(conv_vjp): dL/dx", grads_custom_vjp[0], grad_lax(x, w)[0]),
    ("jax.grad(conv_vjp): dL/dw", grads_custom_vjp[1], grad_lax(x, w)[1]),
]:
    error = relative_error(got, want)
    print(f"{name:<32} max |ours - lax| / max |lax| = {error:.1e}")
    assert error < TOLERANCES["float32"], (name, error)

jaxpr_jvp = jax.make_jaxpr(lambda x, w: jax.jvp(jaxconv.conv, (x, w), (x_dot, w_dot)))(x, w)
print("in the jaxpr of jax.jvp(jaxconv.conv):", conv_primitives(jaxpr_jvp))
assert conv_primitives(jaxpr_jvp) == {"jaxconv_conv": 3}  # the output and the tangent's two terms
try:
    jax.jvp(custom_vjp_conv, (x, w), (x_dot, w_dot))
except TypeError as error:
    print(f"jax.jvp(conv_vjp): TypeError: {error}")
else:
    raise AssertionError("jax.jvp of a custom_vjp function ran")

# %% [markdown]
# **A transposed convolution** is the note read backwards. `lax.conv_transpose` computes it as a
# convolution of its input dilated by the stride, zeros inserted between the pixels; that convolution is
# the input gradient of a strided one, which `jaxconv.conv_transpose` (lax's arguments, lax's result)
# computes as it is: `jaxconv_col2im`, multiplying no inserted zero. Its gradients are that primitive's
# transposes, `jaxconv_conv` and `jaxconv_filter_grad`. Below, stride 2, "SAME" padding and a $3\times3$
# kernel, in lax's default layouts (NHWC input, HWIO kernel): the values and the gradients agree with lax.

# %%
x_t = jax.random.normal(jax.random.key(3), (N, 4, 4, C))  # NHWC
w_t = jax.random.normal(jax.random.key(4), (3, 3, C, FN))  # HWIO
transposed = {
    "jaxconv": lambda x, w: jaxconv.conv_transpose(x, w, (2, 2), "SAME"),
    "lax": lambda x, w: lax.conv_transpose(x, w, (2, 2), "SAME"),
}
G_t = jax.random.normal(jax.random.key(5), (N, 8, 8, FN))  # dL/dO
values, primitives = {}, {}
for name, fn in transposed.items():
    grad = jax.grad(lambda x, w, fn=fn: jnp.sum(fn(x, w) * G_t), argnums=(0, 1))
    values[name] = (fn(x_t, w_t), *grad(x_t, w_t))
    primitives[name] = [conv_primitives(jax.make_jaxpr(f)(x_t, w_t)) for f in (fn, grad)]
    print(f"{name + '.conv_transpose':<22} {primitives[name][0]}")
    print(f"{'  and its jax.grad':<22} {primitives[name][1]}")
assert primitives["jaxconv"] == [
    {"jaxconv_col2im": 1},
    {"jaxconv_col2im": 1, "jaxconv_conv": 1, "jaxconv_filter_grad": 1},
], primitives["jaxconv"]
for quantity, got, want in zip(("output", "dL/dx", "dL/dw"), values["jaxconv"], values["lax"]):
    error = relative_error(got, want)
    print(f"{quantity:<6} {str(got.shape):<15} max |jaxconv - lax| / max |lax| = {error:.1e}")
    assert error < TOLERANCES["float32"], (quantity, error)

# %% [markdown]
# ## 3. Errors and times on small cases
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
