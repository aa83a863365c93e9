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
# # 01 · The derivation, checked number by number
#
# This notebook walks through Jiashu Xu's note *BP for convolutional layer* (retold in the docs'
# [derivation](../docs/derivation.md)) on shapes small enough to print, and checks every
# step against JAX's own differentiation of `jax.lax.conv_general_dilated`:
#
# 1. build $\phi(I)$ (im2col) and $F_f$ (the flattened filters);
# 2. the forward pass is one matrix product, $O_f = \phi(I)\,F_f$;
# 3. vec and the Kronecker product;
# 4. build the Kronecker matrices $I_{FN} \otimes \phi(I)$ and $F_f^T \otimes I_{OH\cdot OW}$ and check
#    the note's Eq. (1) and Eq. (2);
# 5. show that they *are* the Jacobians of the convolution, as `jax.jacrev` and `jax.jacfwd` compute them;
# 6. derive $\partial L/\partial F_f$ line by line as the note does, checking each line against
#    `jax.grad` (with the note's misprint "$(I \otimes B)^T = A^T \otimes B^T$");
# 7. the same for $\partial L/\partial \phi(I)$, and on to $\partial L/\partial I$ through col2im;
# 8. the note's other misprint: `F.reshape(-1, FN)` scrambles the filters;
# 9. batches.
#
# The explicit matrices (Kronecker products, vec, the steps of the derivation) are plain NumPy; JAX
# appears as the library under test (`jaxconv`) and as the independent reference (`lax`, `jax.jacrev`,
# `jax.grad`). Everything runs in float64 so that the equalities hold to ~1e-15; each check prints the
# largest absolute difference and `assert`s it is tiny, so the notebook fails loudly if anything disagrees.

# %%
import re

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax import lax

import jaxconv
from nbhelpers import check, style_figures  # check: prints max |got - want|, asserts it is tiny

jax.config.update("jax_enable_x64", True)  # float64, before any array exists: identities hold to rounding
# %matplotlib inline
style_figures()
np.set_printoptions(precision=3, suppress=True, linewidth=130)
rng = np.random.default_rng(0)


def vec(a):
    """Column-major vec of a matrix, its columns stacked: ``a.reshape(-1, order="F")``, for NumPy and JAX."""
    return a.T.reshape(-1)


def unvec(v, shape):
    """The inverse of vec: a vector back to a (rows, cols) matrix."""
    rows, cols = shape
    return v.reshape(cols, rows).T


# %% [markdown]
# ## 1. The objects: $I$, $F$, $\phi(I)$, $F_f$, $O_f$
#
# One image $I$ of shape $(C, H, W)$ and $FN$ filters $F$ of shape $(FN, C, FH, FW)$; stride 1, no
# padding, so $OH = H - FH + 1$ and $OW = W - FW + 1$. The note's matrices are
#
# | symbol | shape | what it is |
# |---|---|---|
# | $\phi(I)$ | $(OH\cdot OW,\ C\cdot FH\cdot FW)$ | im2col: a row per window, a column per (channel, kernel offset) |
# | $F_f$ | $(C\cdot FH\cdot FW,\ FN)$ | the filters, one per column, flattened in the same $(C, FH, FW)$ order |
# | $O_f$ | $(OH\cdot OW,\ FN)$ | the output, one column per output channel |
#
# `jaxconv.im2col` works on a batch $(N, C, H, W)$ and returns $(N, OH\cdot OW, C\cdot FH\cdot FW)$;
# here $N = 1$. `jaxconv.flatten_filters(F, groups)` returns $F_f$ with a leading group axis.

# %%
C, H, W = 2, 4, 4  # image
FN, FH, FW = 3, 2, 2  # filters
key_image, key_filters, key_target = jax.random.split(jax.random.key(0), 3)
I = jax.random.normal(key_image, (C, H, W))  # noqa: E741 (the note's name)
F = jax.random.normal(key_filters, (FN, C, FH, FW))

geometry = jaxconv.conv_geometry((H, W), (FH, FW))
OH, OW = geometry.out_spatial
M = OH * OW  # rows of phi: one per window
K = C * FH * FW  # columns of phi: one per (channel, kernel offset)

phi = np.asarray(jaxconv.im2col(I[None], (FH, FW))[0])
F_f = np.asarray(jaxconv.flatten_filters(F, 1)[0])

print(f"OH, OW = {OH}, {OW}")
print(f"phi(I): {phi.shape}   F_f: {F_f.shape}")
check("F_f == F.reshape(FN, -1).T", F_f, F.reshape(FN, -1).T, tol=0)

# %% [markdown]
# Row $m$ of $\phi(I)$ is the window under output position $m = (oh, ow)$ (row-major), flattened in
# $(C, FH, FW)$ order, so row 0 is `I[:, 0:FH, 0:FW]` flattened. As an independent im2col we use
# `jax.lax.conv_general_dilated_patches`, which returns the same patches as channels of an image.

# %%
check("row 0 of phi == I[:, :FH, :FW].reshape(-1)", phi[0], I[:, :FH, :FW].reshape(-1), tol=0)
check("row OW+1 of phi == I[:, 1:1+FH, 1:1+FW]", phi[OW + 1], I[:, 1 : 1 + FH, 1 : 1 + FW].reshape(-1), tol=0)
patches = lax.conv_general_dilated_patches(I[None], (FH, FW), (1, 1), "VALID")[0]  # (K, OH, OW)
check("phi == lax.conv_general_dilated_patches, as rows", phi, patches.reshape(K, M).T, tol=0)


# %% [markdown]
# ## 2. The forward pass is one matrix product: $O_f = \phi(I)\,F_f$
#
# Column $f$ of $O_f$ is output channel $f$, row-major over $(OH, OW)$: $O_f$ is the $(FN, OH, OW)$
# output reshaped to $(FN, OH\cdot OW)$ and transposed. `jaxconv.forward_gemm` computes the same
# product in the transposed layout the library keeps internally ($O_f^T = F_f^T \phi^T$, with a group
# axis), from $\phi^T$ as `jaxconv.im2col_t` builds it for the conv; `jaxconv.conv` is the whole layer.


# %%
def lax_conv(image, filters):
    """The reference: one (C, H, W) image through lax.conv_general_dilated -> (FN, OH, OW)."""
    return lax.conv_general_dilated(image[None], filters, (1, 1), "VALID")[0]


O = np.asarray(lax_conv(I, F))  # noqa: E741 (the note's name)
O_f = phi @ F_f

check("phi(I) @ F_f == lax conv output as (OH*OW, FN)", O_f, O.reshape(FN, M).T)
phi_t = jaxconv.im2col_t(I[None], geometry)  # phi^T, (K, M): the layout the conv computes in
check("jaxconv.im2col_t == phi^T", phi_t, phi.T, tol=0)
check("jaxconv.forward_gemm(phi^T, F_f)^T == phi @ F_f", jaxconv.forward_gemm(phi_t, F_f[None])[0].T, O_f)
check("jaxconv.conv == lax conv", jaxconv.conv(I[None], F)[0], O)

# %% [markdown]
# ## 3. vec and the Kronecker product
#
# $\mathrm{vec}(X)$ stacks the columns of $X$ (column-major). The one identity the note uses is
#
# $$\mathrm{vec}(AXB) = (B^T \otimes A)\,\mathrm{vec}(X).$$
#
# A pleasant consequence of column-major vec and of the shapes above: $\mathrm{vec}(O_f)$ is the
# $(FN, OH, OW)$ output flattened in its natural (row-major) order, and $\mathrm{vec}(F_f)$ is `F`
# flattened in its natural order. So Jacobians of the convolution with respect to the natural
# flattenings are exactly the Jacobians with respect to the note's vecs.

# %%
A, X, B = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal((5, 2))
check("vec(A X B) == (B^T kron A) vec(X)", vec(A @ X @ B), np.kron(B.T, A) @ vec(X))
check("unvec(vec(X)) == X", unvec(vec(X), X.shape), X, tol=0)

check("vec(O_f) == O.reshape(-1)", vec(O_f), O.reshape(-1))
check("vec(F_f) == F.reshape(-1)", vec(F_f), F.reshape(-1), tol=0)

# %% [markdown]
# ## 4. Eq. (1) and Eq. (2)
#
# Writing $O_f = \phi(I)\,F_f\,I_{FN}$ and $O_f = I_{OH\cdot OW}\,\phi(I)\,F_f$ and applying the vec
# identity gives the note's two linear forms of the same output:
#
# $$\mathrm{vec}(O_f) = (I_{FN} \otimes \phi(I))\,\mathrm{vec}(F_f) \qquad (1)$$
#
# $$\mathrm{vec}(O_f) = (F_f^T \otimes I_{OH\cdot OW})\,\mathrm{vec}(\phi(I)) \qquad (2)$$
#
# Eq. (1) is linear in the filters, Eq. (2) linear in the image's columns. We build both matrices
# explicitly.

# %%
kron_1 = np.kron(np.eye(FN), phi)  # I_FN (x) phi(I): (FN*M, K*FN)
kron_2 = np.kron(F_f.T, np.eye(M))  # F_f^T (x) I_{OH*OW}: (FN*M, M*K)
print(f"I_FN kron phi(I):     {kron_1.shape}")
print(f"F_f^T kron I_OH*OW:   {kron_2.shape}")

check("Eq. (1): (I_FN kron phi) vec(F_f) == vec(O_f)", kron_1 @ vec(F_f), vec(O_f))
check("Eq. (2): (F_f^T kron I) vec(phi) == vec(O_f)", kron_2 @ vec(phi), vec(O_f))

# %%
fig, axes = plt.subplots(
    1, 2, figsize=(12, 5), layout="constrained", gridspec_kw={"width_ratios": [kron_1.shape[1], kron_2.shape[1]]}
)
titles = [
    r"Eq. (1): $I_{FN} \otimes \phi(I)$" + "\n" + r"$FN$ copies of $\phi(I)$ on the diagonal",
    r"Eq. (2): $F_f^T \otimes I_{OH\cdot OW}$" + "\n" + r"block $(f, k)$ is $(F_f)_{kf}\, I_{OH\cdot OW}$",
]
xlabels = [r"entry of vec($F_f$), filter by filter", r"entry of vec($\phi(I)$), column by column of $\phi$"]
for ax, matrix, title, xlabel in zip(axes, [kron_1, kron_2], titles, xlabels):
    bound = np.abs(matrix).max()
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"entry of vec($O_f$)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="matrix entry")
plt.show()

# %% [markdown]
# ## 5. These matrices are the Jacobians of the convolution
#
# Because $\mathrm{vec}(O_f)$ is linear in $\mathrm{vec}(F_f)$ with matrix $I_{FN}\otimes\phi(I)$,
# that matrix is the Jacobian $\partial\,\mathrm{vec}(O_f) / \partial\,\mathrm{vec}(F_f)^T$. We compute
# it with `jax.jacrev` of `lax.conv_general_dilated`, which knows nothing about im2col, and also of
# `jaxconv.conv`. That is a JAX primitive, `jaxconv_conv`, registered as bilinear: its transposes are the
# note's backward products, `jaxconv_filter_grad` ($\phi(I)^T\,\cdot$, Eq. (1)) and `jaxconv_col2im`
# ($\cdot\,F_f^T$, Eq. (2), then col2im), so `jacrev` builds the Jacobian from them, one vector-Jacobian
# product per row. Forward mode works too: `jax.jacfwd` pushes one tangent per column through
# `jaxconv_conv` itself, and, the conv being linear in $F$, finds the same matrix.

# %%
jac_filters = jax.jacrev(lambda filters: lax_conv(I, filters).reshape(-1))(F)
jac_filters = np.asarray(jac_filters).reshape(FN * M, F.size)
check("jacrev(lax conv) wrt F == I_FN kron phi(I)  [Eq. (1)]", jac_filters, kron_1)

conv_flat = lambda filters: jaxconv.conv(I[None], filters).reshape(-1)
check("jacrev(jaxconv.conv) wrt F == I_FN kron phi(I)", np.reshape(jax.jacrev(conv_flat)(F), (FN * M, -1)), kron_1)
check("jacfwd(jaxconv.conv) wrt F == I_FN kron phi(I)", np.reshape(jax.jacfwd(conv_flat)(F), (FN * M, -1)), kron_1)


# %% [markdown]
# Eq. (2) is about $O_f$ as a function of $\phi$: $O_f = \phi\,F_f$ with $F_f$ fixed (the convolution
# itself is a function of $I$, not of $\phi$). `jacrev` of $\phi \mapsto \mathrm{vec}(\phi F_f)$ (the
# product computed by `jaxconv.forward_gemm`) has shape $(FN\cdot OH\cdot OW,\ OH\cdot OW,\ C\cdot FH\cdot FW)$:
# the derivative of each entry of $\mathrm{vec}(O_f)$ with respect to each $\phi[m, k]$. Putting the last
# two axes in column-major order, $(k, m)$, gives $\partial\,\mathrm{vec}(O_f) / \partial\,\mathrm{vec}(\phi)^T$.


# %%
def gemm(cols):
    return jaxconv.forward_gemm(cols.T, F_f[None])[0].T  # phi @ F_f


jac_cols = np.asarray(jax.jacrev(lambda cols: vec(gemm(cols)))(phi))  # (FN*M, M, K): d vec(O_f)[i] / d phi[m, k]
jac_cols = jac_cols.transpose(0, 2, 1).reshape(FN * M, K * M)  # columns in vec(phi) order: k-major
check("jacrev(phi -> phi F_f) wrt vec(phi) == F_f^T kron I  [Eq. (2)]", jac_cols, kron_2)

# %% [markdown]
# To reach the image, note that im2col only copies pixels: $\mathrm{vec}(\phi(I)) = S\,\mathrm{vec}(I)$
# for a 0/1 *selection matrix* $S$ of shape $(M\cdot K,\ C\cdot H\cdot W)$ with one 1 per row (here
# $\mathrm{vec}(I)$ is `I.reshape(-1)`). We build $S$ from `jaxconv.window_indices` (which padded pixel
# each window offset reads), check it is `jacrev` of `jaxconv.im2col`, and then check the chain rule
# $\partial\,\mathrm{vec}(O_f)/\partial\,\mathrm{vec}(I)^T = (F_f^T \otimes I_{OH\cdot OW})\,S$ against
# `jacrev` of the lax convolution with respect to the image.

# %%
pixel = np.asarray(jaxconv.window_indices(geometry))  # (M, FH*FW): flat (h, w) read by window m, offset
S = np.zeros((M * K, C * H * W))
for c in range(C):
    for offset in range(FH * FW):
        k = c * FH * FW + offset  # column of phi: (c, kh, kw) channel-major
        for m in range(M):
            S[k * M + m, c * H * W + pixel[m, offset]] = 1.0  # entry (m, k) of phi is entry k*M+m of vec(phi)

check("vec(phi) == S vec(I)", S @ np.asarray(I).reshape(-1), vec(phi), tol=0)
jac_im2col = jax.jacrev(lambda image: vec(jaxconv.im2col(image[None], (FH, FW))[0]))(I)
check("jacrev(jaxconv.im2col) == S", np.reshape(jac_im2col, (M * K, -1)), S, tol=0)

jac_image = jax.jacrev(lambda image: lax_conv(image, F).reshape(-1))(I)
check("jacrev(lax conv) wrt I == (F_f^T kron I) S", np.reshape(jac_image, (FN * M, -1)), kron_2 @ S)
jac_image_ours = jax.jacrev(lambda image: jaxconv.conv(image[None], F).reshape(-1))(I)
check("jacrev(jaxconv.conv) wrt I == (F_f^T kron I) S", np.reshape(jac_image_ours, (FN * M, -1)), kron_2 @ S)

fig, ax = plt.subplots(figsize=(5, 6))
ax.imshow(S, cmap="Greys", interpolation="nearest", aspect="auto")
ax.set_title(r"$S = \partial\,\mathrm{vec}(\phi(I)) / \partial\,\mathrm{vec}(I)^T$: one 1 per row (black)")
ax.set_xlabel(r"pixel of $I$  (c, h, w), row-major")
ax.set_ylabel(r"entry of vec($\phi(I)$)")
plt.show()

# %% [markdown]
# `S` has one 1 per row (each entry of $\phi$ copies one pixel) but several per column: a pixel is read by
# every window that covers it. $S^T$ is col2im, the subject of notebook 02.
#
# ## 6. $\partial L/\partial F_f$, step by step
#
# Take any scalar loss of the output; here $L = \tfrac12\lVert O - T\rVert^2$ for a fixed random
# target $T$. Backpropagation hands the layer $G = \partial L/\partial O_f$ (shape $(OH\cdot OW, FN)$);
# we get it from `jax.grad` of the loss as a function of $O_f$. The reference answer is `jax.grad` of the
# loss through `lax.conv_general_dilated` with respect to $F$, put in $F_f$'s layout.
#
# The note's lines, each checked:
#
# $$\frac{\partial L}{\partial \mathrm{vec}(F_f)}
# \overset{(a)}{=} \Big(\frac{\partial L}{\partial \mathrm{vec}(O_f)^T}\,
#     \frac{\partial \mathrm{vec}(O_f)}{\partial \mathrm{vec}(F_f)^T}\Big)^T
# \overset{(b)}{=} (I_{FN} \otimes \phi(I))^T\, \mathrm{vec}(G)
# \overset{(c)}{=} (I_{FN} \otimes \phi(I)^T)\, \mathrm{vec}(G)
# \overset{(d)}{=} \mathrm{vec}(\phi(I)^T\, G\, I_{FN})$$
#
# (a) chain rule; (b) the Jacobian is Eq. (1)'s matrix; (c) transposing a Kronecker product,
# $(A \otimes B)^T = A^T \otimes B^T$; (d) the vec identity with $A = \phi(I)^T$, $X = G$,
# $B = I_{FN}$. Un-vec-ing: $\partial L/\partial F_f = \phi(I)^T G$.

# %%
T = jax.random.normal(key_target, O.shape)


def loss_of_output(out):
    return 0.5 * jnp.sum((out - T) ** 2)


G = np.asarray(jax.grad(lambda out_f: loss_of_output(out_f.T.reshape(O.shape)))(O_f))  # dL/dO_f, (M, FN)
dF_reference = np.asarray(jax.grad(lambda filters: loss_of_output(lax_conv(I, filters)))(F))  # like F
dF_f_reference = dF_reference.reshape(FN, -1).T  # in F_f's layout

step_a = (vec(G)[None, :] @ jac_filters).T[:, 0]  # (dL/dvec(O_f)^T  dvec(O_f)/dvec(F_f)^T)^T, jacrev's matrix
step_b = kron_1.T @ vec(G)  # (I_FN kron phi)^T vec(G)
step_c = np.kron(np.eye(FN), phi.T) @ vec(G)  # (I_FN kron phi^T) vec(G)
step_d = vec(phi.T @ G @ np.eye(FN))  # vec(phi^T G I_FN)
for name, step in [
    ("(a) chain rule with jacrev's Jacobian", step_a),
    ("(b) (I_FN kron phi)^T vec(G)", step_b),
    ("(c) (I_FN kron phi^T) vec(G)", step_c),
    ("(d) vec(phi^T G I_FN)", step_d),
]:
    check(f"{name} == vec(jax.grad wrt F_f)", step, vec(dF_f_reference))

dF_f = phi.T @ G
check("dL/dF_f = phi^T G", dF_f, dF_f_reference)
check("jaxconv.filter_grad(phi^T, G^T) == phi^T G", jaxconv.filter_grad(phi.T, G.T[None])[0], dF_f)
check("back to the filters' shape: (phi^T G)^T.reshape(F.shape)", dF_f.T.reshape(F.shape), dF_reference)

# %% [markdown]
# **Misprint in the note, step (c).** The note justifies this step with "$(I \otimes B)^T = A^T \otimes
# B^T$", which mixes two letters; the identity is
#
# $$(A \otimes B)^T = A^T \otimes B^T,$$
#
# here with $A = I_{FN}$ (so $A^T = I_{FN}$) and $B = \phi(I)$. Checked below on rectangular matrices,
# where a wrong order of the factors would not even have the right shape. As the note says, the result
# $\partial L/\partial F_f = \phi(I)^T G$ is the backward pass of a linear layer $y = xW$,
# $\partial L/\partial W = x^T\,\partial L/\partial y$, with $\phi(I)$ as the input.

# %%
A, B = rng.standard_normal((2, 3)), rng.standard_normal((4, 5))
check("(A kron B)^T == A^T kron B^T", np.kron(A, B).T, np.kron(A.T, B.T))
check("(I_FN kron phi)^T == I_FN kron phi^T", kron_1.T, np.kron(np.eye(FN), phi.T))

# %% [markdown]
# ## 7. $\partial L/\partial \phi(I)$, step by step, and on to $\partial L/\partial I$
#
# The note's second derivation, row-vector form:
#
# $$\frac{\partial L}{\partial \mathrm{vec}(\phi)^T}
# \overset{(a)}{=} \frac{\partial L}{\partial \mathrm{vec}(O_f)^T}\,(F_f^T \otimes I_{OH\cdot OW})
# \overset{(b)}{=} \big[(F_f \otimes I_{OH\cdot OW})\,\mathrm{vec}(G)\big]^T
# \overset{(c)}{=} \mathrm{vec}(I_{OH\cdot OW}\, G\, F_f^T)^T$$
#
# (a) chain rule with Eq. (2)'s matrix; (b) transpose of a product, and
# $(F_f^T \otimes I)^T = F_f \otimes I$ by the same Kronecker identity; (c) the vec identity. So
# $\partial L/\partial\phi(I) = G\,F_f^T$. The reference is `jax.grad` of $\phi \mapsto L(\phi F_f)$.
# Then, since $\mathrm{vec}(\phi) = S\,\mathrm{vec}(I)$,
# $\partial L/\partial\,\mathrm{vec}(I) = S^T \mathrm{vec}(\partial L/\partial\phi)$, which is
# `jaxconv.col2im` (in the conv, `jaxconv.col2im_t` of $(\partial L/\partial\phi)^T$); the reference is
# `jax.grad` through `lax.conv_general_dilated` with respect to $I$.

# %%
dphi_reference = np.asarray(jax.grad(lambda cols: loss_of_output((cols @ F_f).T.reshape(O.shape)))(phi))

step_a = vec(G) @ kron_2  # a row vector
step_b = (np.kron(F_f, np.eye(M)) @ vec(G)).T
step_c = vec(np.eye(M) @ G @ F_f.T)
for name, step in [
    ("(a) vec(G)^T (F_f^T kron I)", step_a),
    ("(b) [(F_f kron I) vec(G)]^T", step_b),
    ("(c) vec(I G F_f^T)^T", step_c),
]:
    check(f"{name} == vec(jax.grad wrt phi)", step, vec(dphi_reference))

dphi = G @ F_f.T
check("dL/dphi = G F_f^T", dphi, dphi_reference)
check("jaxconv.cols_grad(G^T, F_f)^T == G F_f^T", jaxconv.cols_grad(G.T[None], F_f[None]).T, dphi)

dI_reference = jax.grad(lambda image: loss_of_output(lax_conv(image, F)))(I)
dI = jaxconv.col2im(dphi[None], (1, C, H, W), (FH, FW))[0]
check("dL/dI = col2im(dL/dphi) == jax.grad(lax conv) wrt I", dI, dI_reference)
check("col2im(dL/dphi) == S^T vec(dL/dphi)", dI.reshape(-1), S.T @ vec(dphi))
check("jaxconv.col2im_t((dL/dphi)^T) == col2im(dL/dphi)", jaxconv.col2im_t(dphi.T, geometry, 1)[0], dI)

# %% [markdown]
# ## 8. Misprint in the note: `F.reshape(-1, FN)` scrambles the filters
#
# The note defines $F_f$ as `F.reshape(-1, FN)`. For filters stored $(FN, C, FH, FW)$ that is wrong: a
# row-major reshape to $(C\cdot FH\cdot FW, FN)$ deals the flat entries out row by row, so each column
# mixes pieces of different filters. The right matrix, whose column $f$ is filter $f$ flattened in
# $\phi$'s $(C, FH, FW)$ order, is `F.reshape(FN, -1).T` (Deep Learning from Scratch's `col_W`,
# `jaxconv.flatten_filters`). To see it, label each filter entry $F[f, c, i, j]$ with the digits
# $f\,c\,i\,j$ (filter numbered from 1): every column of the right matrix has a single leading digit.

# %%
f, c, i, j = np.meshgrid(np.arange(FN), np.arange(C), np.arange(FH), np.arange(FW), indexing="ij")
labels = 1000 * (f + 1) + 100 * c + 10 * i + j  # F[f, c, i, j] -> "f c i j"
print("F.reshape(FN, -1).T  (right: column f is filter f)")
print(labels.reshape(FN, -1).T)
print()
print("F.reshape(-1, FN)    (the note: columns mix filters)")
print(labels.reshape(-1, FN))
assert all(len(set(column // 1000)) == 1 for column in labels.reshape(FN, -1))
assert any(len(set(column // 1000)) > 1 for column in labels.reshape(-1, FN).T)

wrong = np.abs(phi @ np.asarray(F).reshape(-1, FN) - O_f).max()
print(f"\nmax |phi @ F.reshape(-1, FN) - O_f| = {wrong:.2f}   (not a rounding error)")
assert wrong > 0.1

# %% [markdown]
# `F.reshape(-1, FN)` *is* right for another layout: filters stored $(FH, FW, C, FN)$ (TensorFlow's
# HWIO), with $\phi$'s columns ordered $(FH, FW, C)$ to match. That may be where the note's expression
# comes from. The order of $\phi$'s columns and of $F_f$'s rows must agree; which order is a convention.

# %%
F_hwio = np.asarray(F).transpose(2, 3, 1, 0)  # (FH, FW, C, FN)
phi_hwc = phi.reshape(M, C, FH, FW).transpose(0, 2, 3, 1).reshape(M, K)  # columns ordered (FH, FW, C)
check("HWIO filters: phi_(FH,FW,C) @ F_hwio.reshape(-1, FN) == O_f", phi_hwc @ F_hwio.reshape(-1, FN), O_f)

# %% [markdown]
# ## 9. Batches
#
# For $N$ images, stack their $\phi(I_n)$ on top of each other: $\phi$ has $N\cdot OH\cdot OW$ rows and
# $O_f = \phi F_f$ is still one matrix product. Then $\partial L/\partial F_f = \phi^T G =
# \sum_n \phi(I_n)^T G_n$ sums the images' contributions inside one GEMM, $\partial L/\partial\phi = G F_f^T$
# splits back into per-image blocks for col2im, and a bias $b$ added to every row of $O_f$ gets
# $\partial L/\partial b = \sum_\text{rows} G$ (`jaxconv.bias_grad`). This is what `jax.grad` through
# `jaxconv.conv` runs: the program it traces holds the forward primitive `jaxconv_conv` and its two
# transposes, `jaxconv_filter_grad` ($\phi^T G$) and `jaxconv_col2im` (col2im of $G F_f^T$), and no
# convolution primitive (the matrices held transposed, in chunks of images when $\phi$ would be large;
# the bias's gradient is JAX's own, a sum). We print those names and check the gradients against
# `jax.grad` of the lax convolution.

# %%
N = 3
x = jax.random.normal(jax.random.key(6), (N, C, H, W))
b = jax.random.normal(jax.random.key(7), (FN,))
target = np.asarray(jax.random.normal(jax.random.key(8), (N, FN, OH, OW)))

phi_per_image = np.asarray(jaxconv.im2col(x, (FH, FW)))  # (N, M, K)
phi_batch = phi_per_image.reshape(N * M, K)  # images stacked as rows
out_batch = np.asarray(lax.conv_general_dilated(x, F, (1, 1), "VALID")) + np.asarray(b)[None, :, None, None]
G_batch = (out_batch - target).transpose(0, 2, 3, 1).reshape(N * M, FN)  # dL/dO_f, images stacked
per_image = sum(phi_per_image[n].T @ G_batch[n * M : (n + 1) * M] for n in range(N))
check("phi^T G == sum_n phi(I_n)^T G_n", phi_batch.T @ G_batch, per_image)


def batch_loss(conv, x, filters, bias):
    return 0.5 * jnp.sum((conv(x, filters) + bias[None, :, None, None] - target) ** 2)


lax_batch = lambda x, filters: lax.conv_general_dilated(x, filters, (1, 1), "VALID")
dx_ref, dF_ref, db_ref = jax.grad(batch_loss, argnums=(1, 2, 3))(lax_batch, x, F, b)
dx, dF, db = jax.grad(batch_loss, argnums=(1, 2, 3))(jaxconv.conv, x, F, b)

check("phi^T G (batch) == jax.grad(lax) wrt F", (phi_batch.T @ G_batch).T.reshape(F.shape), dF_ref)
check("sum over rows of G == jax.grad(lax) wrt b", G_batch.sum(axis=0), db_ref)
dx_from_note = jaxconv.col2im((G_batch @ F_f.T).reshape(N, M, K), x.shape, (FH, FW))
check("col2im(G F_f^T) == jax.grad(lax) wrt x", dx_from_note, dx_ref)
check("jax.grad(jaxconv.conv): dL/dx", dx, dx_ref)
check("jax.grad(jaxconv.conv): dL/dF", dF, dF_ref)
check("jax.grad(jaxconv.conv): dL/db", db, db_ref)

grad_jaxpr = jax.make_jaxpr(jax.grad(batch_loss, argnums=(1, 2, 3)), static_argnums=0)(jaxconv.conv, x, F, b)
primitives = re.findall(r"\b(jaxconv_\w+|conv_general_dilated)\[", str(grad_jaxpr))  # in program order
print("conv primitives in the jaxpr of jax.grad(jaxconv.conv):", ", ".join(primitives))
assert sorted(primitives) == ["jaxconv_col2im", "jaxconv_conv", "jaxconv_filter_grad"], primitives

# %% [markdown]
# ## Summary
#
# | note | checked here against | jaxconv |
# |---|---|---|
# | $\phi(I)$ | `lax.conv_general_dilated_patches`; `jacrev(im2col)` $= S$ | `im2col(_t)` |
# | $F_f$ = `F.reshape(FN, -1).T` (not `F.reshape(-1, FN)`) | labelled filters | `flatten_filters` |
# | $O_f = \phi(I) F_f$ | `lax.conv_general_dilated` | `forward_gemm`, `conv` |
# | Eq. (1): $\mathrm{vec}(O_f) = (I_{FN}\otimes\phi(I))\,\mathrm{vec}(F_f)$ | `jacrev` wrt $F$ | |
# | Eq. (2): $\mathrm{vec}(O_f) = (F_f^T\otimes I_{OH\cdot OW})\,\mathrm{vec}(\phi)$ | `jacrev` wrt $\phi$ and $I$ | |
# | $\partial L/\partial F_f = \phi(I)^T\,\partial L/\partial O_f$ | `jax.grad` wrt $F$ | `filter_grad` |
# | $\partial L/\partial \phi(I) = \partial L/\partial O_f\, F_f^T$ | `jax.grad` wrt $\phi$ | `cols_grad` |
# | $\partial L/\partial I = $ col2im$(\partial L/\partial\phi)$ $= S^T \ldots$ | `jax.grad` wrt $I$ | `col2im(_t)` |
# | $(A\otimes B)^T = A^T \otimes B^T$ (the note prints "$(I \otimes B)^T$") | random rectangular $A$, $B$ | |
#
# Notebook 02 looks at $\phi$ and col2im for strides, padding and dilation.
