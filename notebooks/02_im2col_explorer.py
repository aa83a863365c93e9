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
# # 02 · im2col explorer
#
# $\phi(I) = $ `jaxconv.im2col(I)` has one row per output position (a window of the input) and one
# column per (channel, kernel offset). This notebook draws which input pixel each entry of $\phi$
# reads as stride, padding and dilation change; shows that `jaxconv.col2im` is the adjoint of im2col
# (it *adds* each entry back onto the pixel it came from, so a pixel read by several windows gets their
# sum: the overlap-count image); and measures how much bigger $\phi$ is than the input.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax import lax

import jaxconv
from nbhelpers import check, style_figures  # check: prints max |got - want|, asserts it is tiny

jax.config.update("jax_enable_x64", True)  # float64, before any array exists
# %matplotlib inline
style_figures()

# jaxconv.im2col and col2im run op by op; jitted, each configuration compiles once, several times faster.
im2col = jax.jit(jaxconv.im2col, static_argnames=("kernel_size", "stride", "padding", "dilation"))
col2im = jax.jit(
    jaxconv.col2im, static_argnames=("input_shape", "kernel_size", "stride", "padding", "dilation", "method")
)


# %% [markdown]
# ## 1. Which pixel does each entry of $\phi$ read?
#
# Give a $7\times 7$ single-channel image the pixel *ids* $1, \dots, 49$ (row-major) as values; then
# every entry of $\phi(\text{ids})$ is the id of the pixel it read, and 0 where a window reads padding.
# Four $3\times 3$ configurations: stride 1; stride 2; padding 1; dilation 2. Each is checked against
# `lax.conv_general_dilated_patches` (an independent im2col) and against `jaxconv.window_indices`, the
# NumPy table of the padded pixel each entry of $\phi$ reads.

# %%
H = W = 7
KERNEL = (3, 3)
ids = jnp.arange(1.0, H * W + 1).reshape(1, 1, H, W)  # pixel id, 1-based; 0 will mean padding

CONFIGS = {
    "stride 1": dict(stride=1, padding=0, dilation=1),
    "stride 2": dict(stride=2, padding=0, dilation=1),
    "padding 1": dict(stride=1, padding=1, dilation=1),
    "dilation 2": dict(stride=1, padding=0, dilation=2),
}

reads = {}  # config -> phi(ids), (OH*OW, FH*FW)
for name, config in CONFIGS.items():
    geometry = jaxconv.conv_geometry((H, W), KERNEL, **config)
    cols = im2col(ids, KERNEL, **config)[0]
    stride, pad, dilation = config["stride"], config["padding"], config["dilation"]
    strides, pads, dilations = (stride, stride), [(pad, pad)] * 2, (dilation, dilation)
    patches = lax.conv_general_dilated_patches(ids, KERNEL, strides, pads, rhs_dilation=dilations)
    check(f"{name}: im2col == lax.conv_general_dilated_patches", cols, patches[0].reshape(cols.shape[1], -1).T, tol=0)
    # window_indices index the padded image; map them back to ids (0 on the padding).
    padded_ids = np.pad(np.asarray(ids[0, 0]), pad)
    from_table = padded_ids.reshape(-1)[jaxconv.window_indices(geometry)]
    check(f"{name}: im2col == padded ids at window_indices", cols, from_table, tol=0)
    reads[name] = (geometry, np.asarray(cols))
    print(f"{'':<10}OH, OW = {geometry.out_spatial}; phi is {cols.shape}")

# %%
fig, axes = plt.subplots(1, 4, figsize=(15, 9), layout="constrained")  # tall enough for padding 1's 49 rows
offsets = [f"({i},{j})" for i in range(KERNEL[0]) for j in range(KERNEL[1])]
id_colors = plt.get_cmap("viridis").with_extremes(under="white")  # ids below 1, i.e. padding, in white
for ax, (name, (_, cols)) in zip(axes, reads.items()):
    image = ax.imshow(cols, cmap=id_colors, vmin=1, vmax=H * W, aspect="auto", interpolation="nearest")
    fontsize = 7 if cols.shape[0] <= 25 else 6  # every panel prints its ids, the 49 windows of padding 1 too
    for (m, k), value in np.ndenumerate(cols):
        color = "white" if 0 < value < 0.6 * H * W else "black"
        ax.text(k, m, f"{int(value)}", ha="center", va="center", fontsize=fontsize, color=color)
    ax.set_title(f"{name}: phi is {cols.shape[0]} x {cols.shape[1]}")
    ax.set_xticks(range(len(offsets)), offsets, rotation=90)
    ax.set_xlabel("column of phi: kernel offset (kh, kw)")
    ax.set_ylabel("row of phi: window, row-major")
fig.colorbar(image, ax=axes, shrink=0.8, extend="min", label="id of the input pixel read (white, 0 = padding)")
fig.suptitle("phi(ids): the input pixel each entry of phi reads (7x7 image, 3x3 kernel)")
plt.show()


# %% [markdown]
# The same reads on the image itself. Top: three *rows* of $\phi$ (three windows: the first, the
# second, the last); each window reads a $3\times3$ patch, spread out by dilation, shifted by the
# stride from one window to the next. Bottom: two *columns* of $\phi$ (kernel offsets); a column reads
# one pixel per window, so it is the image subsampled by the stride and shifted by the offset (times the
# dilation). Grey cells are padding.


# %%
def draw_image_grid(ax, geometry):
    """The padded image: input pixels white with their ids, padding grey; axes in input coordinates."""
    (lo_h, hi_h), (lo_w, hi_w) = geometry.padding
    ph, pw = geometry.padded_spatial
    is_pad = np.ones((ph, pw))
    is_pad[lo_h : lo_h + H, lo_w : lo_w + W] = 0
    extent = (-lo_w - 0.5, W + hi_w - 0.5, H + hi_h - 0.5, -lo_h - 0.5)
    ax.imshow(is_pad, cmap="Greys", vmin=0, vmax=3, extent=extent, interpolation="nearest")
    for h in range(H):
        for w in range(W):
            ax.text(w, h, f"{h * W + w + 1}", ha="center", va="center", fontsize=6, color="0.55")
    ax.set_xticks(range(-lo_w, W + hi_w))
    ax.set_yticks(range(-lo_h, H + hi_h))
    ax.set_xlabel("input column w")
    ax.set_ylabel("input row h")
    return lo_h, lo_w


def pixels_read(geometry, flat_positions):
    """Padded flat positions -> (h, w) in input coordinates."""
    (lo_h, _), (lo_w, _) = geometry.padding
    rows, cols = np.divmod(np.asarray(flat_positions), geometry.padded_spatial[1])
    return rows - lo_h, cols - lo_w


colors = ["tab:red", "tab:blue", "tab:orange"]
fig, axes = plt.subplots(2, 4, figsize=(16, 9.5), layout="constrained")
for column, (name, (geometry, _)) in enumerate(reads.items()):
    table = jaxconv.window_indices(geometry)  # (OH*OW, FH*FW) padded flat positions
    last = geometry.num_windows - 1
    ax = axes[0, column]
    draw_image_grid(ax, geometry)
    for color, (row, shift) in zip(colors, [(0, -0.18), (1, 0.0), (last, 0.18)]):
        h, w = pixels_read(geometry, table[row])
        oh, ow = divmod(row, geometry.out_spatial[1])
        label = f"row {row}: window ({oh},{ow})"
        ax.scatter(w + shift, h + shift, s=70, marker="s", color=color, alpha=0.85, label=label)
    ax.set_title(f"{name}: three rows of phi")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8)

    ax = axes[1, column]
    draw_image_grid(ax, geometry)
    for color, (offset, shift) in zip(colors[:2], [(0, -0.12), (KERNEL[0] * KERNEL[1] - 1, 0.12)]):
        h, w = pixels_read(geometry, table[:, offset])
        kh, kw = divmod(offset, KERNEL[1])
        label = f"column {offset}: kernel offset ({kh},{kw})"
        ax.scatter(w + shift, h + shift, s=60, marker="o", color=color, alpha=0.85, label=label)
    ax.set_title(f"{name}: two columns of phi")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8)
fig.suptitle("The pixels read by rows (windows, top) and columns (kernel offsets, bottom) of phi; grey = padding")
plt.show()

# %% [markdown]
# ## 2. col2im is the adjoint of im2col
#
# im2col is linear and only copies: $\mathrm{vec}(\phi(I)) = S\,\mathrm{vec}(I)$ with a 0/1 matrix $S$
# (one 1 per entry of $\phi$ that reads a pixel, an all-zero row where it reads padding). Its adjoint
# $S^T$ is col2im: every entry of $\phi$ is *added* back onto the pixel it was read from. That is the
# step $\partial L/\partial I = \mathrm{col2im}(\partial L/\partial\phi)$ of the backward pass.
# Adjointness means
#
# $$\langle \mathrm{im2col}(x),\, c\rangle = \langle x,\, \mathrm{col2im}(c)\rangle \quad\text{for all } x, c.$$
#
# We check it with random $x$ and $c$ (two images, three channels) for each configuration, with both of
# `col2im`'s methods (`"pad_add"`: one strided pad per kernel offset, summed; `"scatter_add"`: one
# scatter-add with im2col's indices), and against `jax.linear_transpose` of `im2col`, which JAX derives
# by itself.

# %%
rng = np.random.default_rng(0)
x_shape = (2, 3, H, W)
x = rng.standard_normal(x_shape)
print(f"{'configuration':<12} {'<im2col(x), c>':>18} {'<x, col2im(c)>':>18} {'rel. diff':>10}")
for name, config in CONFIGS.items():
    cols_x = im2col(x, KERNEL, **config)
    c = rng.standard_normal(cols_x.shape)
    back = {method: col2im(c, x_shape, KERNEL, **config, method=method) for method in ("pad_add", "scatter_add")}
    lhs = np.vdot(cols_x, c)
    rhs = np.vdot(x, back["pad_add"])
    rel = abs(lhs - rhs) / abs(lhs)
    print(f"{name:<12} {lhs:>18.12f} {rhs:>18.12f} {rel:>10.1e}")
    assert rel < 1e-12, (name, lhs, rhs)
    check(f"  {name}: col2im pad_add == scatter_add", back["pad_add"], back["scatter_add"])
    transpose = jax.jit(jax.linear_transpose(lambda v, config=config: jaxconv.im2col(v, KERNEL, **config), x))
    check(f"  {name}: col2im == jax.linear_transpose(im2col)", back["pad_add"], transpose(c)[0])

# %% [markdown]
# ### The overlap-count image
#
# $\mathrm{col2im}(\mathbf{1}) = S^T\mathbf{1}$ counts, for each pixel, the entries of $\phi$ that read
# it: how many windows cover it. It is the picture of why $\partial L/\partial I$ is not a reshape of
# $\partial L/\partial\phi$: interior pixels collect the gradient of up to $FH\cdot FW$ windows, edge
# pixels fewer. With a stride equal to the kernel the windows tile the image (ones: col2im is a pure
# scatter; on a 7-pixel side the last row and column are left over, zeros); with a stride larger than the
# kernel some pixels are never read (zeros: they get no gradient). Since each entry of $\phi$ reads at
# most one pixel, $S^TS$ is diagonal with these counts on its diagonal, so
# $\mathrm{col2im}(\mathrm{im2col}(x)) = \text{count}\odot x$; checked below.

# %%
OVERLAP_CONFIGS = {
    "3x3, stride 1": dict(kernel=(3, 3), stride=1, padding=0, dilation=1),
    "3x3, stride 1, padding 1": dict(kernel=(3, 3), stride=1, padding=1, dilation=1),
    "3x3, stride 2, padding 1": dict(kernel=(3, 3), stride=2, padding=1, dilation=1),
    "3x3, stride 1, dilation 2": dict(kernel=(3, 3), stride=1, padding=0, dilation=2),
    "2x2, stride 2: tiles, odd edge unread": dict(kernel=(2, 2), stride=2, padding=0, dilation=1),
    "2x2, stride 3: gaps": dict(kernel=(2, 2), stride=3, padding=0, dilation=1),
}
image_shape = (1, 1, H, W)
fig, axes = plt.subplots(2, 3, figsize=(13, 8), layout="constrained")
for ax, (name, config) in zip(axes.flat, OVERLAP_CONFIGS.items()):
    config = dict(config)
    kernel = config.pop("kernel")
    cols_ids = im2col(ids, kernel, **config)
    count = np.asarray(col2im(np.ones(cols_ids.shape), image_shape, kernel, **config))
    # Every entry of phi that reads a pixel adds 1 somewhere: the counts sum to the non-padding reads.
    non_padding_reads = int((np.asarray(cols_ids) > 0).sum())
    assert int(count.sum()) == non_padding_reads, (name, count.sum(), non_padding_reads)
    check(f"{name}: col2im(im2col(x)) == count * x", col2im(cols_ids, image_shape, kernel, **config), count * ids)

    count = count[0, 0]
    image = ax.imshow(count, cmap="magma", vmin=0, vmax=max(count.max(), 1), interpolation="nearest")
    for (h, w), value in np.ndenumerate(count):
        color = "white" if value < 0.6 * count.max() else "black"
        ax.text(w, h, f"{int(value)}", ha="center", va="center", fontsize=8, color=color)
    ax.set_title(name)
    ax.set_xlabel("input column w")
    ax.set_ylabel("input row h")
    fig.colorbar(image, ax=ax, shrink=0.85, ticks=range(int(count.max()) + 1), label="windows reading the pixel")
fig.suptitle("Overlap counts col2im(ones): how many entries of phi read each pixel of a 7x7 image")
plt.show()

# %% [markdown]
# ## 3. The memory cost of $\phi$
#
# For one image $\phi$ holds $OH\cdot OW \cdot C\cdot FH\cdot FW$ numbers against the input's
# $C\cdot H\cdot W$: every pixel is copied once per window that reads it (the counts above). With
# "SAME" padding $OH \approx H/s$, so
#
# $$\frac{\text{bytes}(\phi)}{\text{bytes}(I)} = \frac{OH\cdot OW}{H\cdot W}\,FH\cdot FW
#   \approx \frac{\prod k}{\prod s} = \frac{k^2}{s^2}.$$
#
# Dilation does not change it (the same number of windows, each still reads $FH\cdot FW$ pixels). Below,
# the ratio of the bytes of `im2col`'s output to the input's, for a $3\times32\times32$ float32 image; the
# output shape comes from `jax.eval_shape(jaxconv.im2col, ...)`, which traces im2col without computing it.

# %%
x = jax.ShapeDtypeStruct((1, 3, 32, 32), jnp.float32)
x_bytes = x.size * x.dtype.itemsize


def cols_bytes(kernel, **config):
    cols = jax.eval_shape(lambda v: jaxconv.im2col(v, kernel, **config), x)
    return cols.size * cols.dtype.itemsize


kernels = range(1, 8)
fig, ax = plt.subplots(figsize=(8, 5))
for stride, color in zip((1, 2, 3), ("tab:blue", "tab:orange", "tab:green")):
    ratios = []
    for k in kernels:
        geometry = jaxconv.conv_geometry((32, 32), (k, k), stride=stride, padding="SAME")
        ratios.append(cols_bytes(k, stride=stride, padding="SAME") / x_bytes)
        assert ratios[-1] == geometry.num_windows * k * k / (32 * 32)
    ax.plot(kernels, ratios, "o-", color=color, label=f"stride {stride}: bytes(im2col) / bytes(input)")
    formula = [k * k / stride**2 for k in kernels]
    ax.plot(kernels, formula, "--", color=color, alpha=0.6, label=f"stride {stride}: $k^2/s^2$")
dilated = [cols_bytes(k, dilation=2, padding="SAME") / x_bytes for k in kernels]
ax.plot(kernels, dilated, "x", color="black", markersize=9, label="stride 1, dilation 2: bytes(im2col) / bytes(input)")
ax.set_yscale("log")
ax.set_xlabel("kernel size k (k x k)")
ax.set_ylabel("bytes(phi) / bytes(input)")
ax.set_title("im2col's memory blow-up, 3x32x32 input, SAME padding")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# For real layers the blow-up is large in absolute terms, which is why `jaxconv.conv` never holds $\phi$
# for a whole large batch at once: it processes the batch in chunks of images so that $\phi$ stays under
# `max_cols_bytes` (`jaxconv.default_max_cols_bytes()`: 8 MiB on a CPU), and its backward pass rebuilds
# $\phi$ instead of keeping it from the forward pass. The sizes below come from `jaxconv.conv_geometry`
# alone (nothing is allocated), float32, batch 64.

# %%
LAYERS = [  # name, (C, H, W), kernel, stride, padding
    ("ResNet stem 7x7/2", (3, 224, 224), 7, 2, 3),
    ("3x3 conv, 64 ch, 56x56", (64, 56, 56), 3, 1, 1),
    ("3x3/2 conv, 128 ch, 56x56", (128, 56, 56), 3, 2, 1),
    ("1x1 conv, 256 ch, 56x56", (256, 56, 56), 1, 1, 0),
    ("5x5 conv, 32 ch, 28x28", (32, 28, 28), 5, 1, 2),
]
batch, itemsize, mib = 64, 4, 2**20
print(f"{'layer':<28} {'input MiB':>10} {'phi MiB':>10} {'ratio':>7} {'k^2/s^2':>8}")
for name, (channels, h, w), k, s, p in LAYERS:
    geometry = jaxconv.conv_geometry((h, w), (k, k), stride=s, padding=p)
    input_bytes = batch * channels * h * w * itemsize
    phi_bytes = batch * geometry.num_windows * channels * geometry.window_size * itemsize
    ratio = phi_bytes / input_bytes
    print(f"{name:<28} {input_bytes / mib:>10.1f} {phi_bytes / mib:>10.1f} {ratio:>7.2f} {k * k / s**2:>8.2f}")
