"""Training a CNN with the custom-VJP conv: :func:`fit` and the ``jaxconv train`` command.

The Python API, for scripts and notebooks::

    from jaxconv.train import TrainConfig, fit
    result = fit(TrainConfig(epochs=10))          # sklearn digits, conv backend "im2col"
    result.test_accuracy, result.history[-1]

The command is a thin layer over it::

    jaxconv train                                 # digits, writes runs/digits/
    jaxconv train --conv lax                      # the same model with lax's conv
    jaxconv train --data mnist.npz --epochs 3     # your own images
    jaxconv train --resume runs/digits --epochs 20

A run is a jitted optax loop: ``train_step`` is ``value_and_grad`` of the mean
softmax cross-entropy plus an optax update, ``evaluate`` a jitted pass over
the test set. The data order of epoch ``e`` is a permutation drawn from
``jax.random.fold_in(key, e)``, so it depends only on the seed and the epoch:
a run interrupted at any step and resumed from its checkpoint ends with
exactly the parameters of an uninterrupted run.

With an output directory, each epoch writes ``metrics.json`` (the config and
per-epoch history) and ``checkpoint.npz`` (params, optimizer state, RNG key,
step, history; see :mod:`jaxconv._checkpoint`: no pickle, atomic), and the
end of the run writes ``curves.png``. Ctrl-C saves the current state and
raises :class:`TrainingInterrupted`, which the command turns into a message
and exit status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxconv import _checkpoint, nn
from jaxconv.data import Dataset, load_digits, load_npz

OPTIMIZERS = ("adam", "sgd", "momentum")
CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
CURVES = "curves.png"
EVAL_BATCH_SIZE = 1000
INTERRUPTED_STATUS = 130  # 128 + SIGINT, what shells report for Ctrl-C

# Options that may differ between a run and its resumption; anything else would not continue the same run.
RESUMABLE_CHANGES = ("epochs", "conv", "out_dir")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; every ``jaxconv train`` option. Serialisable to JSON.

    Attributes:
      data: path of an ``.npz`` (see :func:`jaxconv.data.load_npz`), or None for sklearn's digits.
      conv: conv backend, ``"im2col"`` (the custom VJP) or ``"lax"``.
      optimizer: ``"adam"``, ``"sgd"`` or ``"momentum"`` (SGD with momentum 0.9).
      learning_rate: the optimizer's step size.
      epochs: total number of epochs (a resumed run trains up to this many).
      batch_size: examples per step; the last incomplete batch of an epoch is dropped.
      seed: seeds the init, the data order and the digits train/test split.
      channels: output channels of each conv stage of :func:`jaxconv.nn.cnn`.
      test_fraction: fraction of the digits held out for testing (ignored with ``data``).
      max_train: use only the first this many training examples (None: all).
      max_test: use only the first this many test examples (None: all).
      out_dir: where metrics, plot and checkpoint go; None writes nothing.

    >>> config = TrainConfig(epochs=3, channels=[8])
    >>> TrainConfig.from_json(config.to_json()) == config
    True
    """

    data: str | None = None
    conv: nn.Backend = "im2col"
    optimizer: str = "adam"
    learning_rate: float = 3e-3
    epochs: int = 15
    batch_size: int = 32
    seed: int = 0
    channels: tuple[int, ...] = (16, 32)
    test_fraction: float = 0.2
    max_train: int | None = None
    max_test: int | None = None
    out_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        if self.data is not None:
            object.__setattr__(self, "data", os.fspath(self.data))
        if self.out_dir is not None:
            object.__setattr__(self, "out_dir", os.fspath(self.out_dir))
        if self.conv not in nn.BACKENDS:
            raise ValueError(f"conv must be one of {nn.BACKENDS}, got {self.conv!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)) or (
            self.learning_rate <= 0
        ):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        for name in ("epochs", "batch_size"):
            _check_int(getattr(self, name), name, minimum=1)
        _check_int(self.seed, "seed", minimum=None)
        for name in ("max_train", "max_test"):
            if getattr(self, name) is not None:
                _check_int(getattr(self, name), name, minimum=1)
        if not self.channels:
            raise ValueError("channels must name at least one conv stage")
        for value in self.channels:
            _check_int(value, "channels", minimum=1)
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")

    def to_json(self) -> str:
        """The config as a JSON object."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Builds a config from :meth:`to_json`'s fields, rejecting unknown ones."""
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _check_int(value: Any, name: str, *, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`; the state at ``step`` was saved to ``checkpoint`` (None without an out_dir)."""

    def __init__(self, epoch: int, step: int, checkpoint: str | None) -> None:
        super().__init__(f"interrupted in epoch {epoch} at step {step}")
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint


@dataclasses.dataclass(frozen=True, eq=False)
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
      config: the run's config.
      model: the :class:`jaxconv.nn.Sequential` trained.
      params: the final parameters (a pytree for ``model.apply``).
      opt_state: the final optimizer state.
      history: one dict per epoch: ``epoch, step, train_loss, train_accuracy,
        test_loss, test_accuracy, train_time_s, steps, steps_per_s, eval_time_s``.
      compile_time_s: time of the first (compiling) call of the train and eval steps in this process.
      data: the data set, as trained on.
    """

    config: TrainConfig
    model: nn.Sequential
    params: Any
    opt_state: Any
    history: list[dict[str, Any]]
    compile_time_s: float
    data: Dataset

    @property
    def test_accuracy(self) -> float:
        """Test accuracy after the last epoch."""
        return self.history[-1]["test_accuracy"] if self.history else float("nan")

    @property
    def time_per_epoch(self) -> float:
        """Mean wall time of an epoch's train steps (compilation excluded)."""
        return float(np.mean([entry["train_time_s"] for entry in self.history])) if self.history else float("nan")

    @property
    def steps_per_second(self) -> float:
        """Train steps per second over all epochs (compilation excluded)."""
        seconds = sum(entry["train_time_s"] for entry in self.history)
        return sum(entry["steps"] for entry in self.history) / seconds if seconds else float("nan")


# ---------------------------------------------------------------------------------------------------------------
# The jitted steps. Static arguments are hashable configs, so equal configs share one compilation per process.


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


def loss_and_logits(params: Any, model: nn.Sequential, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy of ``model`` on a batch, and its logits.

    >>> model = nn.cnn(channels=(4,))
    >>> params, _ = model.init(jax.random.key(0), (1, 8, 8))
    >>> loss, logits = loss_and_logits(params, model, jnp.zeros((2, 1, 8, 8)), jnp.array([0, 1]))
    >>> logits.shape
    (2, 10)
    """
    logits = model.apply(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@functools.partial(jax.jit, static_argnames=("model", "optimizer"))
def train_step(
    params: Any,
    opt_state: Any,
    x_all: jax.Array,
    y_all: jax.Array,
    batch_indices: jax.Array,
    *,
    model: nn.Sequential,
    optimizer: OptimizerSpec,
) -> tuple[Any, Any, jax.Array, jax.Array]:
    """One optax step on the examples ``batch_indices`` of ``(x_all, y_all)`` (device-resident data).

    Returns:
      ``(params, opt_state, loss, correct)``: the updated state, the batch's
      mean loss before the update and how many of its examples were classified right.
    """
    x, y = x_all[batch_indices], y_all[batch_indices]
    (loss, logits), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(params, model, x, y)
    # optax mixes Python floats with int32 step counts (Adam's bias correction), which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = make_optimizer(*optimizer).update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, loss, jnp.sum(jnp.argmax(logits, axis=-1) == y)


@functools.partial(jax.jit, static_argnames=("model",))
def _eval_batch(
    params: Any, x: jax.Array, y: jax.Array, mask: jax.Array, *, model: nn.Sequential
) -> tuple[jax.Array, jax.Array]:
    logits = model.apply(params, x)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = (jnp.argmax(logits, axis=-1) == y) & mask
    return jnp.sum(jnp.where(mask, losses, 0.0)), jnp.sum(correct)


def evaluate(
    params: Any, model: nn.Sequential, x: np.ndarray, y: np.ndarray, *, batch_size: int = EVAL_BATCH_SIZE
) -> tuple[float, float]:
    """Mean loss and accuracy over ``(x, y)``, in fixed-size batches (the last one padded and masked).

    >>> from jaxconv.data import synthetic
    >>> data = synthetic(num_test=5)
    >>> model = nn.cnn(channels=(4,))
    >>> params, _ = model.init(jax.random.key(0), data.image_shape)
    >>> loss, accuracy = evaluate(params, model, data.x_test, data.y_test, batch_size=2)
    >>> 0.0 <= accuracy <= 1.0
    True
    """
    n = len(x)
    batch_size = max(1, min(batch_size, n))
    loss_sum, correct = 0.0, 0
    for start in range(0, n, batch_size):
        x_batch, y_batch = x[start : start + batch_size], y[start : start + batch_size]
        valid = len(x_batch)
        pad = batch_size - valid
        if pad:
            x_batch = np.concatenate([x_batch, np.zeros((pad, *x_batch.shape[1:]), x_batch.dtype)])
            y_batch = np.concatenate([y_batch, np.zeros(pad, y_batch.dtype)])
        mask = np.arange(batch_size) < valid
        batch_loss, batch_correct = _eval_batch(params, x_batch, y_batch, mask, model=model)
        loss_sum += float(batch_loss)
        correct += int(batch_correct)
    return loss_sum / n, correct / n


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


# ---------------------------------------------------------------------------------------------------------------
# The loop.


class _RunState(NamedTuple):
    """Everything a checkpoint holds; replaced as a whole, so a Ctrl-C never sees half an update."""

    params: Any
    opt_state: Any
    key: jax.Array
    step: int  # global step count
    history: tuple[dict[str, Any], ...]  # completed epochs; the current epoch is len(history)
    loss_sum: float  # running sums of the current epoch's train steps
    correct: int
    seen: int
    train_time_s: float


class _EpochInterrupted(KeyboardInterrupt):
    """Ctrl-C inside :func:`_run_epoch`, carrying the state after the epoch's last completed step."""

    def __init__(self, state: _RunState) -> None:
        super().__init__()
        self.state = state


def load_data(config: TrainConfig) -> Dataset:
    """The data set of ``config``: its ``.npz`` or the digits, limited to ``max_train``/``max_test``."""
    data = (
        load_npz(config.data)
        if config.data is not None
        else load_digits(test_fraction=config.test_fraction, seed=config.seed)
    )
    return data.limit(config.max_train, config.max_test)


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


def checkpoint_path(out_dir: str | os.PathLike) -> str:
    """Where the checkpoint of a run in ``out_dir`` lives."""
    return os.path.join(os.fspath(out_dir), CHECKPOINT)


def read_config(out_dir: str | os.PathLike) -> TrainConfig:
    """The config saved in the checkpoint of ``out_dir`` (for ``--resume``)."""
    path = checkpoint_path(out_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint to resume in {os.fspath(out_dir)} (expected {path})")
    return TrainConfig.from_dict(_checkpoint.read_metadata(path)["config"])


def _check_resumable(saved: TrainConfig, config: TrainConfig) -> None:
    changed = [
        f"{field.name} ({getattr(saved, field.name)!r} -> {getattr(config, field.name)!r})"
        for field in dataclasses.fields(TrainConfig)
        if field.name not in RESUMABLE_CHANGES and getattr(saved, field.name) != getattr(config, field.name)
    ]
    if changed:
        raise ValueError(
            f"cannot resume with a different {', '.join(changed)}: only {', '.join(RESUMABLE_CHANGES[:-1])} "
            "may change; start a new run (another --out) to change the rest"
        )


def _save(config: TrainConfig, state: _RunState, steps_per_epoch: int, *, defer_interrupts: bool = True) -> str:
    """Writes the checkpoint and metrics.json, holding back Ctrl-C until both are complete.

    With ``defer_interrupts=False`` (saving after a Ctrl-C) a further Ctrl-C during the write is
    ignored rather than raised afterwards, so the caller can still report the saved checkpoint.
    """
    path = checkpoint_path(config.out_dir)
    metadata = {
        "config": dataclasses.asdict(config),
        "epoch": len(state.history),
        "step": state.step,
        "steps_per_epoch": steps_per_epoch,
        "history": list(state.history),
        "running": {
            "loss_sum": state.loss_sum,
            "correct": state.correct,
            "seen": state.seen,
            "train_time_s": state.train_time_s,
        },
    }
    tree = {"params": state.params, "opt_state": state.opt_state, "key": state.key}
    with _interrupts_deferred(reraise=defer_interrupts):
        _checkpoint.save(path, tree, metadata)
        _write_metrics(config, state.history)
    return path


def _restore(config: TrainConfig, template: _RunState, steps_per_epoch: int) -> _RunState:
    path = checkpoint_path(config.out_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint to resume in {config.out_dir} (expected {path})")
    _check_resumable(TrainConfig.from_dict(_checkpoint.read_metadata(path)["config"]), config)
    tree = {"params": template.params, "opt_state": template.opt_state, "key": template.key}
    tree, metadata = _checkpoint.load(path, tree)
    if metadata["steps_per_epoch"] != steps_per_epoch:
        raise ValueError(f"{path} has {metadata['steps_per_epoch']} steps per epoch, this run {steps_per_epoch}")
    running = metadata["running"]
    return _RunState(
        tree["params"],
        tree["opt_state"],
        tree["key"],
        int(metadata["step"]),
        tuple(metadata["history"]),
        float(running["loss_sum"]),
        int(running["correct"]),
        int(running["seen"]),
        float(running["train_time_s"]),
    )


def _write_metrics(config: TrainConfig, history: Sequence[dict[str, Any]]) -> None:
    text = json.dumps({"config": dataclasses.asdict(config), "history": list(history)}, indent=2)
    _checkpoint.atomic_write(os.path.join(config.out_dir, METRICS), lambda file: file.write(text.encode()))


def plot_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike, *, title: str = "") -> None:
    """Writes a PNG of train/test loss and accuracy per epoch (matplotlib's Agg renderer, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [entry["epoch"] for entry in history]
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for split in ("train", "test"):
        loss_axes.plot(epochs, [entry[f"{split}_loss"] for entry in history], marker="o", label=split)
        accuracy_axes.plot(epochs, [100 * entry[f"{split}_accuracy"] for entry in history], marker="o", label=split)
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="loss")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    _checkpoint.atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=100))


@contextlib.contextmanager
def _interrupts_deferred(*, reraise: bool = True) -> Iterator[None]:
    """Holds back Ctrl-C while a checkpoint is written; raises it afterwards unless ``reraise`` is False.

    Main thread only: elsewhere Python delivers no SIGINT.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and reraise:
        raise KeyboardInterrupt


def _progress_bar(enabled: bool, total: int, initial: int, description: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=description, unit="step", leave=True, dynamic_ncols=True)


def fit(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    data: Dataset | None = None,
) -> TrainResult:
    """Trains :func:`jaxconv.nn.cnn` on the config's data; see the module docstring.

    Args:
      config: the run.
      resume: continue from the checkpoint in ``config.out_dir`` (up to ``config.epochs``).
      overwrite: start a new run in an ``out_dir`` that holds an earlier run's checkpoint, replacing it.
        Without it (and without ``resume``) that is an error, so no saved run is lost by accident.
      progress: show a tqdm progress bar per epoch.
      log: called with one line per epoch when there is no progress bar, and with the run's set-up.
      data: use this data set instead of loading the config's (for notebooks and tests).

    Returns:
      A :class:`TrainResult`.

    Raises:
      TrainingInterrupted: on Ctrl-C, after saving the current state (with an ``out_dir``).
      ValueError: for data or checkpoints that do not fit the config.
      FileExistsError: when ``config.out_dir`` holds a checkpoint and neither ``resume`` nor ``overwrite`` is set.

    >>> config = TrainConfig(epochs=1, batch_size=16, channels=(4,), max_train=64, max_test=32)
    >>> result = fit(config)
    >>> [entry["epoch"] for entry in result.history], result.history[0]["steps"]
    ([1], 4)
    """
    log = log or (lambda line: None)
    if resume and config.out_dir is None:
        raise ValueError("resume needs config.out_dir, the directory of the run to continue")
    if not (resume or overwrite) and config.out_dir is not None and os.path.exists(checkpoint_path(config.out_dir)):
        raise FileExistsError(
            f"{config.out_dir} holds the checkpoint of an earlier run: continue it with --resume {config.out_dir} "
            "(resume=True), start over with --overwrite (overwrite=True), or choose another --out directory"
        )
    data = load_data(config) if data is None else data
    num_train = len(data.x_train)
    if config.batch_size > num_train:
        raise ValueError(f"batch_size {config.batch_size} is larger than the {num_train} training examples")
    steps_per_epoch = num_train // config.batch_size
    model = build_model(config, data.num_classes)
    optimizer = OptimizerSpec(config.optimizer, config.learning_rate)
    params, opt_state, key = init_state(config, model, data.image_shape)
    state = _RunState(params, opt_state, key, 0, (), 0.0, 0, 0, 0.0)
    if resume:
        state = _restore(config, state, steps_per_epoch)
    if overwrite and not resume and config.out_dir is not None:
        # Only now that the new run passed its checks: the old run's files go, none to outlive it beside the new.
        for name in (CHECKPOINT, METRICS, CURVES):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(config.out_dir, name))
    log(
        f"data: {data.name}, {num_train} train / {len(data.x_test)} test images of shape {data.image_shape}, "
        f"{data.num_classes} classes"
    )
    num_params = sum(leaf.size for leaf in jax.tree.leaves(state.params))
    log(
        f"model: cnn channels={list(config.channels)}, {num_params} params, conv={config.conv}; "
        f"{config.optimizer} lr={config.learning_rate}, batch {config.batch_size}, {steps_per_epoch} steps/epoch"
        + (f"; resuming at epoch {len(state.history) + 1}, step {state.step}" if resume else "")
    )

    x_train, y_train = jax.device_put(data.x_train), jax.device_put(data.y_train)
    start_step = state.step
    compile_time_s = 0.0
    try:
        if len(state.history) < config.epochs:
            start = time.perf_counter()  # compile both steps once, outside the timed epochs
            warmup = train_step(
                state.params, state.opt_state, x_train, y_train, np.zeros(config.batch_size, np.int32),
                model=model, optimizer=optimizer,
            )  # fmt: skip
            jax.block_until_ready(warmup)
            evaluate(state.params, model, data.x_test, data.y_test)
            batch_order(state.key, 0, num_train, config.batch_size)
            compile_time_s = time.perf_counter() - start
        while len(state.history) < config.epochs:
            epoch = len(state.history)
            first = state.step - epoch * steps_per_epoch  # > 0 when resuming mid-epoch
            bar = _progress_bar(progress, steps_per_epoch, first, f"epoch {epoch + 1}/{config.epochs}")
            try:
                state = _run_epoch(state, config, model, optimizer, x_train, y_train, steps_per_epoch, bar)
                state = _end_epoch(state, model, data, steps_per_epoch)
                if bar is not None:
                    last = state.history[-1]
                    bar.set_postfix_str(
                        f"loss {last['train_loss']:.4f} acc {last['train_accuracy']:.2%} | "
                        f"test loss {last['test_loss']:.4f} acc {last['test_accuracy']:.2%}"
                    )
            finally:
                if bar is not None:
                    bar.close()
            if bar is None:
                log(f"epoch {epoch + 1}/{config.epochs}: {_epoch_summary(state.history[-1])}")
            if config.out_dir is not None:
                _save(config, state, steps_per_epoch)
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, _EpochInterrupted):
            state = interrupt.state  # the steps of the interrupted epoch that completed
        saved = None
        if config.out_dir is not None and (state.step > start_step or resume):
            saved = _save(config, state, steps_per_epoch, defer_interrupts=False)
            try:  # a second Ctrl-C may cut the plot short, but the checkpoint is saved: report it
                if state.history:
                    plot_curves(state.history, os.path.join(config.out_dir, CURVES), title=_title(config, data))
            except KeyboardInterrupt:
                pass
        raise TrainingInterrupted(len(state.history) + 1, state.step, saved) from None
    if config.out_dir is not None and state.history:
        plot_curves(state.history, os.path.join(config.out_dir, CURVES), title=_title(config, data))
    return TrainResult(config, model, state.params, state.opt_state, list(state.history), compile_time_s, data)


def _run_epoch(
    state: _RunState,
    config: TrainConfig,
    model: nn.Sequential,
    optimizer: OptimizerSpec,
    x_train: jax.Array,
    y_train: jax.Array,
    steps_per_epoch: int,
    bar: Any,
) -> _RunState:
    """The remaining train steps of epoch ``len(state.history)``: from a fresh start or a mid-epoch checkpoint."""
    epoch = len(state.history)
    try:
        order = batch_order(state.key, epoch, len(x_train), config.batch_size)
        for batch in range(state.step - epoch * steps_per_epoch, steps_per_epoch):
            start = time.perf_counter()
            params, opt_state, loss, correct = train_step(
                state.params, state.opt_state, x_train, y_train, order[batch], model=model, optimizer=optimizer
            )
            loss, correct = float(loss), int(correct)  # waits for the step
            elapsed = time.perf_counter() - start
            state = state._replace(
                params=params,
                opt_state=opt_state,
                step=state.step + 1,
                loss_sum=state.loss_sum + loss * config.batch_size,
                correct=state.correct + correct,
                seen=state.seen + config.batch_size,
                train_time_s=state.train_time_s + elapsed,
            )
            if bar is not None:
                bar.set_postfix_str(
                    f"loss {state.loss_sum / state.seen:.4f} acc {state.correct / state.seen:.2%}", False
                )
                bar.update()
    except KeyboardInterrupt:
        raise _EpochInterrupted(state) from None  # hand the last completed step to fit, which saves it
    return state


def _end_epoch(state: _RunState, model: nn.Sequential, data: Dataset, steps_per_epoch: int) -> _RunState:
    """Evaluates on the test set and moves the epoch's metrics into the history."""
    start = time.perf_counter()
    test_loss, test_accuracy = evaluate(state.params, model, data.x_test, data.y_test)
    entry = {
        "epoch": len(state.history) + 1,
        "step": state.step,
        "train_loss": state.loss_sum / state.seen,
        "train_accuracy": state.correct / state.seen,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "train_time_s": state.train_time_s,
        "steps": steps_per_epoch,
        "steps_per_s": steps_per_epoch / state.train_time_s,
        "eval_time_s": time.perf_counter() - start,
    }
    return state._replace(history=(*state.history, entry), loss_sum=0.0, correct=0, seen=0, train_time_s=0.0)


def _epoch_summary(entry: dict[str, Any]) -> str:
    return (
        f"train loss {entry['train_loss']:.4f} acc {entry['train_accuracy']:.2%} | "
        f"test loss {entry['test_loss']:.4f} acc {entry['test_accuracy']:.2%} | "
        f"{entry['train_time_s']:.2f} s, {entry['steps_per_s']:.0f} steps/s"
    )


def _title(config: TrainConfig, data: Dataset) -> str:
    return f"{data.name}: cnn {list(config.channels)}, conv={config.conv}, {config.optimizer} lr={config.learning_rate}"


# ---------------------------------------------------------------------------------------------------------------
# The command.

_CLI_OPTIONS = {
    # config field: (flags, argparse keywords)
    "data": (("--data",), dict(metavar="FILE.npz", help="an .npz with x_train, y_train, x_test, y_test "
                               "(images (N,H,W) or (N,C,H,W), uint8 or float); default: sklearn's 8x8 digits")),
    "conv": (("--conv",), dict(choices=nn.BACKENDS, help="conv backend: im2col (the custom VJP) or lax "
                               "(default: im2col)")),
    "optimizer": (("--optimizer",), dict(choices=OPTIMIZERS, help="default: adam")),
    "learning_rate": (("--lr", "--learning-rate"), dict(type=float, help="learning rate (default: 3e-3)")),
    "epochs": (("--epochs",), dict(type=int, help="total epochs; with --resume, train up to this many (default: 15)")),
    "batch_size": (("--batch-size",), dict(type=int, help="default: 32")),
    "seed": (("--seed",), dict(type=int, help="seeds init, data order and the digits split (default: 0)")),
    "channels": (("--channels",), dict(type=int, nargs="+", metavar="C", help="channels of each conv stage "
                                       "(default: 16 32)")),
    "test_fraction": (("--test-fraction",), dict(type=float, help="digits held out for testing (default: 0.2)")),
    "max_train": (("--max-train",), dict(type=int, metavar="N", help="use only the first N training examples")),
    "max_test": (("--max-test",), dict(type=int, metavar="N", help="use only the first N test examples")),
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``jaxconv train``: every :class:`TrainConfig` field, plus output and resume."""
    for name, (flags, options) in _CLI_OPTIONS.items():
        parser.add_argument(*flags, dest=name, default=None, **options)
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="output directory (default: runs/digits or runs/<npz name>)"
    )
    parser.add_argument(
        "--resume", metavar="DIR", default=None, help="continue the run saved in DIR (options given override it)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start a new run in --out DIR even if DIR holds an earlier run"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    """``(config, resume)`` from parsed options: the defaults, or the resumed run's saved config, overridden."""
    given = {name: getattr(args, name) for name in _CLI_OPTIONS if getattr(args, name, None) is not None}
    if args.resume is not None:
        if getattr(args, "overwrite", False):
            raise ValueError("--resume DIR continues the run in DIR and --overwrite replaces it: give one of them")
        if args.out is not None and os.path.abspath(args.out) != os.path.abspath(args.resume):
            raise ValueError("--resume DIR continues the run in DIR: give --out only without --resume")
        return dataclasses.replace(read_config(args.resume), **given, out_dir=args.resume), True
    config = TrainConfig(**given)
    if args.out is not None:
        return dataclasses.replace(config, out_dir=args.out), False
    # The default directory: runs/<data name>, or runs/<data name>-2, -3, ... when earlier runs hold those.
    name = "digits" if config.data is None else os.path.splitext(os.path.basename(config.data))[0]
    out_dir, number = os.path.join("runs", name), 1
    while os.path.exists(checkpoint_path(out_dir)) and not getattr(args, "overwrite", False):
        number += 1
        out_dir = os.path.join("runs", f"{name}-{number}")
    return dataclasses.replace(config, out_dir=out_dir), False


def run(args: argparse.Namespace) -> int:
    """``jaxconv train``: :func:`fit` with a progress bar, then a summary; 130 after Ctrl-C, 2 on bad input."""
    quiet = getattr(args, "quiet", False)
    wall_start = time.perf_counter()
    try:
        config, resume = config_from_args(args)
        overwrite = getattr(args, "overwrite", False)
        if overwrite and os.path.exists(checkpoint_path(config.out_dir)):
            print(f"note: --overwrite: the run saved in {config.out_dir} is replaced by a new one")
        progress = not quiet and sys.stderr.isatty()
        result = fit(config, resume=resume, overwrite=overwrite, progress=progress, log=None if quiet else print)
    except TrainingInterrupted as interrupt:
        print(f"\ninterrupted in epoch {interrupt.epoch} after step {interrupt.step}.", file=sys.stderr)
        if interrupt.checkpoint is not None:
            out_dir = os.path.dirname(interrupt.checkpoint)
            print(f"saved {interrupt.checkpoint}; continue with: jaxconv train --resume {out_dir}", file=sys.stderr)
        return INTERRUPTED_STATUS
    except KeyboardInterrupt:
        print("\ninterrupted before training started; nothing saved.", file=sys.stderr)
        return INTERRUPTED_STATUS
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
        print(f"jaxconv train: error: {error}", file=sys.stderr)
        return 2
    _print_summary(result, time.perf_counter() - wall_start)
    return 0


def _print_summary(result: TrainResult, wall_s: float) -> None:
    config, history = result.config, result.history
    last = history[-1]
    print(
        f"test accuracy {last['test_accuracy']:.2%} (loss {last['test_loss']:.4f}) after {last['epoch']} epochs, "
        f"{last['step']} steps, conv={config.conv}"
    )
    print(
        f"time per epoch {result.time_per_epoch:.2f} s (train steps, mean of {len(history)}), "
        f"{result.steps_per_second:.0f} steps/s; compile {result.compile_time_s:.1f} s; wall {wall_s:.1f} s"
    )
    if config.out_dir is not None:
        files = ", ".join(os.path.join(config.out_dir, name) for name in (METRICS, CURVES, CHECKPOINT))
        print(f"wrote {files}")
