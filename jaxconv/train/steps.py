"""The jitted pieces of a run: the model and optimizer of a config, one train step, evaluation, the data order.

Static arguments of the jitted steps are hashable descriptions (the model's
layers, an :class:`OptimizerSpec`, the device mesh), so equal configs share
one compilation per process. With a ``mesh`` the steps run data-parallel
(:mod:`jaxconv.train.parallel`): the data set and the parameters sit whole on
every device, the batch's example indices are split among them, so each
device gathers and differentiates only its share of the batch.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jaxconv import nn
from jaxconv.train import parallel
from jaxconv.train.config import OPTIMIZERS, TrainConfig

EVAL_BATCH_SIZE = 1000


class OptimizerSpec(NamedTuple):
    """A hashable description of an optax optimizer, for ``jax.jit``'s static arguments."""

    name: str
    learning_rate: float


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    """``"adam"``, ``"sgd"`` or ``"momentum"`` (SGD, momentum 0.9) as an optax transformation.

    >>> optimizer = make_optimizer("momentum", 0.1)
    >>> state = optimizer.init({"w": jnp.zeros(2)})
    """
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "sgd":
        return optax.sgd(learning_rate)
    if name == "momentum":
        return optax.sgd(learning_rate, momentum=0.9)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def check_image_size(image_shape: tuple[int, ...], channels: tuple[int, ...]) -> None:
    """Refuses images that :func:`jaxconv.nn.cnn`'s pooling stages would shrink to nothing.

    >>> check_image_size((1, 8, 8), (4, 4, 4))
    >>> check_image_size((1, 8, 8), (4, 4, 4, 4))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: images of 8x8 are too small for 4 conv stages (channels 4 4 4 4): ... at least 16x16; ...
    """
    spatial, stages = image_shape[1:], len(channels)
    if min(spatial) < 2**stages:
        raise ValueError(
            f"images of {'x'.join(map(str, spatial))} are too small for {stages} conv stages "
            f"(channels {' '.join(map(str, channels))}): each stage's 2x2 max pool halves H and W, "
            f"so {stages} stages need images of at least {2**stages}x{2**stages}; use fewer stages or larger images"
        )


def build_model(config: TrainConfig, num_classes: int) -> nn.Sequential:
    """The :func:`jaxconv.nn.cnn` of ``config``."""
    return nn.cnn(num_classes, channels=config.channels, backend=config.conv)


def init_state(config: TrainConfig, model: nn.Sequential, image_shape: tuple[int, ...]) -> tuple[Any, Any, jax.Array]:
    """``(params, opt_state, key)`` at step 0: the init key and the data-order key both come from ``seed``.

    >>> config = TrainConfig(channels=(4,))
    >>> params, opt_state, key = init_state(config, build_model(config, 10), (1, 8, 8))
    >>> [p["w"].shape for p in params if p]
    [(4, 1, 3, 3), (64, 10)]
    """
    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    params, _ = model.init(init_key, image_shape)
    opt_state = make_optimizer(config.optimizer, config.learning_rate).init(params)
    return params, opt_state, data_key


def loss_and_logits(
    params: Any, model: nn.Sequential, x: jax.Array, y: jax.Array, dtype: str = "float32"
) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy of ``model`` on a batch, and its float32 logits.

    ``dtype`` is the compute dtype: the parameters and images are cast to it
    here, inside the differentiated function, so that the gradients reach the
    (float32) parameters cast back; the logits are cast to float32 before the softmax.

    >>> model = nn.cnn(channels=(4,))
    >>> params, _ = model.init(jax.random.key(0), (1, 8, 8))
    >>> x, y = jnp.ones((2, 1, 8, 8)), jnp.array([0, 1])
    >>> loss, logits = loss_and_logits(params, model, x, y, "bfloat16")
    >>> logits.shape, logits.dtype
    ((2, 10), dtype('float32'))
    >>> grads = jax.grad(lambda params: loss_and_logits(params, model, x, y, "bfloat16")[0])(params)
    >>> grads[0]["w"].dtype
    dtype('float32')
    """
    params, x = jax.tree.map(lambda leaf: leaf.astype(dtype), (params, x))
    logits = model.apply(params, x).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


def _gather(x_all: jax.Array, y_all: jax.Array, indices: jax.Array, mesh: Mesh | None) -> tuple[jax.Array, ...]:
    """The examples ``indices`` of the data set; with a mesh, each device's share where its indices are."""
    x, y = x_all[indices], y_all[indices]
    return (x, y) if mesh is None else jax.lax.with_sharding_constraint((x, y), parallel.split(mesh))


@functools.partial(jax.jit, static_argnames=("model", "optimizer", "mesh", "dtype"))
def train_step(
    params: Any,
    opt_state: Any,
    x_all: jax.Array,
    y_all: jax.Array,
    batch_indices: jax.Array,
    *,
    model: nn.Sequential,
    optimizer: OptimizerSpec,
    mesh: Mesh | None = None,
    dtype: str = "float32",
) -> tuple[Any, Any, jax.Array, jax.Array]:
    """One optax step on the examples ``batch_indices`` of ``(x_all, y_all)`` (device-resident data).

    With a ``mesh``: ``params``, ``opt_state`` and the data replicated on it,
    ``batch_indices`` split along ``"data"`` (:func:`jaxconv.train.parallel.split_rows`);
    the gradients are summed across devices (an all-reduce) and the updated state stays replicated.
    ``dtype`` is the compute dtype of :func:`loss_and_logits`; the update is float32.

    Returns:
      ``(params, opt_state, loss, correct)``: the updated state, the batch's
      mean loss before the update and how many of its examples were classified right.
    """
    x, y = _gather(x_all, y_all, batch_indices, mesh)
    (loss, logits), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(params, model, x, y, dtype)
    # optax mixes Python floats with int32 step counts (Adam's bias correction), which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = make_optimizer(*optimizer).update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if mesh is not None:
        params, opt_state = jax.lax.with_sharding_constraint((params, opt_state), parallel.replicated(mesh))
    return params, opt_state, loss, jnp.sum(jnp.argmax(logits, axis=-1) == y)


@functools.partial(jax.jit, static_argnames=("model", "mesh", "dtype"))
def _eval_batch(
    params: Any,
    x_all: jax.Array,
    y_all: jax.Array,
    indices: jax.Array,
    mask: jax.Array,
    *,
    model: nn.Sequential,
    mesh: Mesh | None,
    dtype: str,
) -> tuple[jax.Array, jax.Array]:
    x, y = _gather(x_all, y_all, indices, mesh)
    _, logits = loss_and_logits(params, model, x, y, dtype)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = (jnp.argmax(logits, axis=-1) == y) & mask
    return jnp.sum(jnp.where(mask, losses, 0.0)), jnp.sum(correct)


def evaluate(
    params: Any,
    model: nn.Sequential,
    x: np.ndarray | jax.Array,
    y: np.ndarray | jax.Array,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    mesh: Mesh | None = None,
    dtype: str = "float32",
) -> tuple[float, float]:
    """Mean loss and accuracy over ``(x, y)``, in fixed-size batches (the last one padded and masked).

    With a ``mesh`` each batch is split among its devices (the batch size
    rounded up to a multiple of their number); ``params`` and, ideally, ``x``
    and ``y`` already replicated on it. ``dtype``: the compute dtype, as in :func:`train_step`.

    >>> from jaxconv.train.data import synthetic
    >>> data = synthetic(num_test=5)
    >>> model = nn.cnn(channels=(4,))
    >>> params, _ = model.init(jax.random.key(0), data.image_shape)
    >>> loss, accuracy = evaluate(params, model, data.x_test, data.y_test, batch_size=2)
    >>> 0.0 <= accuracy <= 1.0
    True
    """
    n = len(x)
    devices = 1 if mesh is None else mesh.size
    batch_size = -(-max(1, min(batch_size, n)) // devices) * devices
    x_all: np.ndarray | jax.Array
    y_all: np.ndarray | jax.Array
    if mesh is None:
        x_all, y_all = jnp.asarray(x), jnp.asarray(y)
    else:
        x_all, y_all = (v if _replicated_on(v, mesh) else parallel.replicate(v, mesh) for v in (x, y))
    loss_sum, correct = 0.0, 0
    indices: np.ndarray | jax.Array
    mask: np.ndarray | jax.Array
    for start in range(0, n, batch_size):
        indices = np.arange(start, start + batch_size)
        mask = indices < n
        indices = np.where(mask, indices, 0).astype(np.int32)  # padding: example 0, masked out
        if mesh is not None:
            indices, mask = parallel.split_rows(indices, mesh), parallel.split_rows(mask, mesh)
        batch_loss, batch_correct = _eval_batch(
            params, x_all, y_all, indices, mask, model=model, mesh=mesh, dtype=dtype
        )
        loss_sum += float(batch_loss)
        correct += int(batch_correct)
    return loss_sum / n, correct / n


def _replicated_on(value: Any, mesh: Mesh) -> bool:
    return isinstance(value, jax.Array) and value.sharding == parallel.replicated(mesh)


def batch_order(key: jax.Array, epoch: int, num_examples: int, batch_size: int) -> np.ndarray:
    """The example indices of each step of ``epoch``: ``(num_examples // batch_size, batch_size)``.

    A permutation drawn from ``fold_in(key, epoch)``: it depends only on the
    key and the epoch, which is what makes resuming exact. The remainder is dropped.

    >>> order = batch_order(jax.random.key(0), 0, 10, 3)
    >>> order.shape, len(set(order.ravel().tolist()))
    ((3, 3), 9)
    """
    steps = num_examples // batch_size
    permutation = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), num_examples))
    return permutation[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)
