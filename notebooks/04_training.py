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
# # 04 · Training a CNN on the note's backward pass
#
# The real test of a backward pass is training. `jaxconv.train.fit` trains `jaxconv.nn.cnn`, a small CNN
# (conv $3\times3$, 16 filters → ReLU → $2\times2$ max pool → conv $3\times3$, 32 filters → ReLU →
# max pool → dense, 10 classes), on scikit-learn's $8\times8$ handwritten digits with Adam, mean softmax
# cross-entropy and batches of 32. With `conv="im2col"` every convolution is `jaxconv.conv`, whose
# gradients are the note's formulas; with `conv="lax"` it is `lax.conv_general_dilated`, differentiated
# by JAX.
#
# We train the model twice with the same seed: the same initial parameters, the same train/test split,
# the same batches in the same order. The two runs then differ only by the rounding of their
# convolutions, so their curves should lie on top of each other, and they do. Then we look at what the
# im2col run learned: its first-layer filters and its confusion matrix on the test set.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxconv.train import TrainConfig, fit, init_state, load_data
from nbhelpers import style_figures

# %matplotlib inline
style_figures()

# %% [markdown]
# ## 1. The data
#
# 1797 grey images of digits, $8\times8$ pixels with values 0 to 16, split 80/20 into train and test,
# stratified by class, by the config's seed; each pixel is standardised with the training images' mean
# and standard deviation. `load_data(config)` is what `fit` loads; we load it once and pass it to both
# runs.

# %%
EPOCHS = 10
configs = {conv: TrainConfig(conv=conv, epochs=EPOCHS, seed=0) for conv in ("im2col", "lax")}
data = load_data(configs["im2col"])
print(f"{data.name}: train {data.x_train.shape}, test {data.x_test.shape}, {data.num_classes} classes")
print("test images per class:", np.bincount(data.y_test, minlength=data.num_classes))

fig, axes = plt.subplots(1, 10, figsize=(10, 1.6), layout="constrained")
for digit, ax in enumerate(axes):
    ax.imshow(data.x_train[np.flatnonzero(data.y_train == digit)[0], 0], cmap="gray_r")
    ax.set_title(f"label {digit}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.supxlabel("8 pixels", fontsize=9)
fig.supylabel("8 pixels", fontsize=9)
fig.suptitle("The first training image of each class (standardised)")
plt.show()

# %% [markdown]
# ## 2. Training with each backend
#
# `fit` compiles a train step (`jax.value_and_grad` of the loss and an optax update) once, then runs
# the epochs; after each it evaluates the test set. The lines below are `fit`'s log, one per epoch;
# the times in it are this run's, on whatever else the machine was doing, and say little about the
# speed of either convolution (the benchmark in `benchmarks/` measures that).

# %%
results = {}
for conv, config in configs.items():
    print(f"--- conv={conv}")
    results[conv] = fit(config, data=data, log=print)

# %% [markdown]
# Per epoch, the two runs' losses side by side. Relative differences at the level of float32's roundoff
# (the cell asserts below $10^{-4}$) mean the runs followed the same trajectory: every step of the im2col
# run received the gradient the lax run received, to rounding, for all the epochs.

# %%
ours, theirs = results["im2col"].history, results["lax"].history
print(
    f"{'epoch':>5} {'train loss im2col':>18} {'lax':>12} {'rel. diff':>10}  {'test loss im2col':>17} {'lax':>12}"
    f" {'rel. diff':>10}  {'test acc im2col':>15} {'lax':>7}"
)
worst = 0.0
for a, b in zip(ours, theirs):
    diffs = [abs(a[key] - b[key]) / abs(b[key]) for key in ("train_loss", "test_loss")]
    worst = max(worst, *diffs)
    print(
        f"{a['epoch']:>5} {a['train_loss']:>18.8f} {b['train_loss']:>12.8f} {diffs[0]:>10.1e}"
        f"  {a['test_loss']:>17.8f} {b['test_loss']:>12.8f} {diffs[1]:>10.1e}"
        f"  {a['test_accuracy']:>15.2%} {b['test_accuracy']:>7.2%}"
    )
print(f"largest relative difference of the losses: {worst:.1e}")
assert len(ours) == len(theirs) == EPOCHS
assert worst < 1e-4, worst

leaves = [jax.tree.leaves(results[conv].params) for conv in ("im2col", "lax")]
param_diff = max(float(jnp.max(jnp.abs(p - q))) for p, q in zip(*leaves))
print(f"largest difference of the final parameters: {param_diff:.1e}")
assert param_diff < 1e-4, param_diff

for conv, result in results.items():
    print(f"final test accuracy, conv={conv}: {result.test_accuracy:.2%}")
    assert result.test_accuracy >= 0.95, (conv, result.test_accuracy)
differing_images = round(abs(results["im2col"].test_accuracy - results["lax"].test_accuracy) * len(data.y_test))
assert differing_images <= 2, differing_images

# %%
epochs = [entry["epoch"] for entry in ours]
fig, (ax_loss, ax_accuracy) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
styles = {
    "im2col": dict(linestyle="-", marker="o", markersize=6),
    "lax": dict(linestyle="--", marker="x", markersize=8),
}
colors = {"train": "tab:blue", "test": "tab:orange"}
for conv, result in results.items():
    for split, color in colors.items():
        label = f"{split}, conv={conv}"
        loss = [entry[f"{split}_loss"] for entry in result.history]
        accuracy = [100 * entry[f"{split}_accuracy"] for entry in result.history]
        ax_loss.plot(epochs, loss, color=color, label=label, **styles[conv])
        ax_accuracy.plot(epochs, accuracy, color=color, label=label, **styles[conv])
ax_loss.set_yscale("log")
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("mean cross-entropy loss (log)")
ax_loss.set_title("Loss: im2col (the note's backward) and lax, same seed")
ax_accuracy.set_xlabel("epoch")
ax_accuracy.set_ylabel("accuracy (%)")
ax_accuracy.set_title("Accuracy: im2col (the note's backward) and lax, same seed")
for ax in (ax_loss, ax_accuracy):
    ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The crosses (lax) sit in the circles (im2col) at every epoch. The train loss is the mean over the
# epoch's batches, taken while the parameters were still changing; the test loss is measured after
# the epoch.
#
# ## 3. The learned first-layer filters
#
# The first convolution has 16 filters of shape $(1, 3, 3)$ (one input channel). Top row: the
# parameters at initialisation (He normal, drawn from the seed, the same for both runs); bottom row:
# after training with the im2col backend. One colour scale for all, blue negative and red positive.
# Training adjusts these filters rather than redrawing them: each bottom image is recognisably the one
# above it, changed by the relative amount printed below.

# %%
result = results["im2col"]
initial_params, _, _ = init_state(result.config, result.model, data.image_shape)
learned = np.asarray(result.params[0]["w"])  # the first Conv layer's params: {"w": (16, 1, 3, 3), "b": (16,)}
filters = {"initial": np.asarray(initial_params[0]["w"]), f"after {EPOCHS} epochs": learned}
lax_learned = np.asarray(results["lax"].params[0]["w"])
filter_diff = np.abs(learned - lax_learned).max()
print(f"first-layer filters: {learned.shape}; max |im2col - lax| after training: {filter_diff:.1e}")
assert filter_diff < 1e-4, filter_diff
change = np.linalg.norm(learned - filters["initial"]) / np.linalg.norm(filters["initial"])
print(f"relative change of the filters in training, |after - initial| / |initial|: {change:.0%}")

bound = max(np.abs(f).max() for f in filters.values())
num_filters = filters["initial"].shape[0]
fig, axes = plt.subplots(2, num_filters, figsize=(12, 2.4), layout="constrained")
for row, (when, values) in zip(axes, filters.items()):
    for f, ax in enumerate(row):
        image = ax.imshow(values[f, 0], cmap="RdBu_r", vmin=-bound, vmax=bound)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{f}", fontsize=8)
    row[0].set_ylabel(when, fontsize=8)
fig.colorbar(image, ax=axes, shrink=0.9, label="weight")
fig.supxlabel("filter number; each image is a 3x3 kernel (columns: kernel column, rows: kernel row)", fontsize=9)
fig.suptitle("First-layer filters of the im2col run: at initialisation (top) and after training (bottom)")
plt.show()

# %% [markdown]
# ## 4. Confusion matrix on the test set
#
# Predictions are the argmax of the logits, `result.model.apply(result.params, x_test)`; row $i$, column
# $j$ counts the test images of digit $i$ classified as $j$. The diagonal holds the correct ones; its
# sum over the number of test images is the test accuracy that `fit` reported.

# %%
logits = jax.jit(result.model.apply)(result.params, data.x_test)
predicted = np.asarray(jnp.argmax(logits, axis=-1))
confusion = np.zeros((data.num_classes, data.num_classes), dtype=int)
np.add.at(confusion, (data.y_test, predicted), 1)
correct = int(np.trace(confusion))
accuracy = correct / len(predicted)
print(f"correct: {correct} of {len(predicted)} = {accuracy:.2%} (fit reported {result.test_accuracy:.2%})")
assert abs(correct - round(result.test_accuracy * len(predicted))) <= 1
errors = [(int(t), int(p)) for t, p in zip(data.y_test, predicted) if t != p]
print("misclassified (true -> predicted):", ", ".join(f"{t} -> {p}" for t, p in errors))

fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
image = ax.imshow(confusion, cmap="Blues")
for (i, j), count in np.ndenumerate(confusion):
    if count:
        color = "white" if count > 0.6 * confusion.max() else "black"
        ax.text(j, i, str(count), ha="center", va="center", fontsize=9, color=color)
ax.set_xticks(range(data.num_classes))
ax.set_yticks(range(data.num_classes))
ax.set_xlabel("predicted digit")
ax.set_ylabel("true digit")
ax.set_title(f"Test-set confusion matrix, conv=im2col ({correct}/{len(predicted)} correct)")
fig.colorbar(image, ax=ax, label="test images")
plt.show()

# %% [markdown]
# ## Summary
#
# The same CNN, the same seed, trained with the note's hand-derived backward pass and with JAX's own
# differentiation of `lax.conv_general_dilated`, follows the same trajectory to float32 rounding: the
# same losses at every epoch, the same final parameters, the same test accuracy to within a test image
# or two. The backward pass is not only right on one convolution (notebooks 01 and 03): it trains a
# network.
#
# The command line does the same: `jaxconv train` and `jaxconv train --conv lax`.
