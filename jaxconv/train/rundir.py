"""A run's output directory: ``checkpoint.npz`` (its :class:`RunState`), ``metrics.json`` and ``curves.png``.

The checkpoint holds params, optimizer state, data-order key, step, the
completed epochs' history and the current epoch's running sums, with the
config as metadata (see :mod:`jaxconv.train.checkpoint`: no pickle, atomic).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import jax

from jaxconv._validate import as_finite, as_int
from jaxconv.train import checkpoint
from jaxconv.train.checkpoint import CheckpointError
from jaxconv.train.config import TrainConfig, check_resumable

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
CURVES = "curves.png"
HISTORY_KEYS = (
    "epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
    "train_time_s", "steps", "steps_per_s", "eval_time_s",
)  # fmt: skip


class OutputDirError(ValueError):
    """The output folder cannot be created or written."""


class RunState(NamedTuple):
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


def out_dir_of(config: TrainConfig) -> str:
    """``config.out_dir``, for the functions that write or read a run's files: only called when it is set."""
    return cast(str, config.out_dir)


def checkpoint_path(out_dir: str | os.PathLike) -> str:
    """Where the checkpoint of a run in ``out_dir`` lives."""
    return os.path.join(os.fspath(out_dir), CHECKPOINT)


def read_config(out_dir: str | os.PathLike) -> TrainConfig:
    """The config saved in the checkpoint of ``out_dir`` (for ``--resume``)."""
    path = checkpoint_path(out_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint to resume in {os.fspath(out_dir)} (expected {path})")
    metadata = checkpoint.read_metadata(path)
    if "config" not in metadata:
        raise CheckpointError(f"{path} is damaged: its metadata has no config")
    try:
        return TrainConfig.from_dict(metadata["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is damaged: its saved config is not valid ({error})") from None


def check_writable(out_dir: str | os.PathLike) -> tuple[str, ...]:
    """Creates ``out_dir`` if needed and writes a nameless file in it, so an unusable folder fails before training.

    Returns:
      The folders it created, ``out_dir`` first, then any parents it made (for :func:`remove_empty`).

    >>> check_writable(os.path.join(os.devnull, "run"))
    Traceback (most recent call last):
    jaxconv.train.rundir.OutputDirError: cannot write to the output folder /dev/null/run: Not a directory
    >>> check_writable(os.devnull)
    Traceback (most recent call last):
    jaxconv.train.rundir.OutputDirError: cannot write to the output folder /dev/null: it is a file, not a folder
    """
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputDirError(f"cannot write to the output folder {out_dir}: it is a file, not a folder")
    for name in (CHECKPOINT, METRICS, CURVES):  # each is replaced by a rename, which a folder refuses
        if os.path.isdir(os.path.join(out_dir, name)):
            raise OutputDirError(f"cannot write {os.path.join(out_dir, name)}: it is a folder, not a file")
    missing = []
    folder = os.path.abspath(out_dir)
    while not os.path.exists(folder) and folder != os.path.dirname(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        remove_empty(missing)
        reason = error.strerror or str(error)
        raise OutputDirError(f"cannot write to the output folder {out_dir}: {reason}") from None
    return tuple(missing)


def remove_empty(folders: Sequence[str]) -> None:
    """Removes each of ``folders``, in order, that is empty; one holding anything stays (``os.rmdir`` refuses it).

    >>> folder = tempfile.mkdtemp()
    >>> remove_empty([folder]); os.path.exists(folder)
    False
    """
    for folder in folders:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def save(
    config: TrainConfig,
    state: RunState,
    steps_per_epoch: int,
    *,
    replacing: bool = False,
    info: dict[str, Any] | None = None,
) -> str:
    """Writes the checkpoint, then metrics.json (with ``info`` beside the config); returns the checkpoint's path.

    The checkpoint replaces an earlier one in one ``os.replace``, so the folder
    holds a complete run at every moment. ``replacing`` (a new run over an old
    one's files): the old run's ``curves.png`` goes too, once the new checkpoint is in place.
    """
    path = checkpoint_path(out_dir_of(config))
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
    checkpoint.save(path, {"params": state.params, "opt_state": state.opt_state, "key": state.key}, metadata)
    write_metrics(config, state.history, info)
    if replacing:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out_dir_of(config), CURVES))
    return path


def restore(config: TrainConfig, template: RunState, steps_per_epoch: int) -> RunState:
    """The state saved in ``config.out_dir``, in the structure of ``template``, if it continues ``config``.

    Raises:
      CheckpointError: naming the file, if it is damaged or written by a run that ``config`` does not continue.
    """
    path = checkpoint_path(out_dir_of(config))
    check_resumable(read_config(out_dir_of(config)), config)
    tree = {"params": template.params, "opt_state": template.opt_state, "key": template.key}
    tree, metadata = checkpoint.load(path, tree)
    try:
        progress = _progress(path, metadata, steps_per_epoch, config.batch_size)
    except CheckpointError:
        raise
    except KeyError as error:
        raise CheckpointError(f"{path} is damaged: its metadata has no {error}") from None
    except (TypeError, ValueError) as error:  # a value of the wrong kind or range
        raise CheckpointError(f"{path} is damaged: {error}") from None
    return RunState(tree["params"], tree["opt_state"], tree["key"], *progress)


def _progress(path: str, metadata: dict[str, Any], steps_per_epoch: int, batch_size: int) -> tuple[Any, ...]:
    """``(step, history, loss_sum, correct, seen, train_time_s)`` from checkpoint metadata, each checked."""
    saved_steps_per_epoch = as_int(metadata["steps_per_epoch"], "steps_per_epoch", minimum=1)
    if saved_steps_per_epoch != steps_per_epoch:
        raise CheckpointError(f"{path} has {saved_steps_per_epoch} steps per epoch, this run {steps_per_epoch}")
    epoch, step = as_int(metadata["epoch"], "epoch", minimum=0), as_int(metadata["step"], "step", minimum=0)
    history, running = metadata["history"], metadata["running"]
    done = step - epoch * steps_per_epoch
    if not 0 <= done <= steps_per_epoch:
        raise CheckpointError(
            f"{path} is damaged: step {step} is not a step of epoch {epoch + 1} at {steps_per_epoch} steps per epoch"
        )
    if not (isinstance(history, list) and len(history) == epoch and all(_is_entry(entry) for entry in history)):
        raise CheckpointError(f"{path} is damaged: its history is not a list of {epoch} epoch records")
    loss_sum = as_finite(running["loss_sum"], "the running loss_sum", minimum=0)
    correct, seen = as_int(running["correct"], "the running correct"), as_int(running["seen"], "the running seen")
    if seen != done * batch_size or not 0 <= correct <= seen:
        raise CheckpointError(
            f"{path} is damaged: epoch {epoch + 1}'s running totals ({correct} right of {seen}) do not fit "
            f"{done} steps of {batch_size} examples"
        )
    train_time_s = as_finite(running["train_time_s"], "the running train_time_s", minimum=0)
    return step, tuple(history), loss_sum, correct, seen, train_time_s


def _is_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and all(
        isinstance(entry.get(key), (int, float)) and not isinstance(entry.get(key), bool) for key in HISTORY_KEYS
    )


def write_metrics(config: TrainConfig, history: Sequence[dict[str, Any]], info: dict[str, Any] | None = None) -> None:
    """``metrics.json``: the config, ``info`` (such as the device count) and one entry per epoch, atomically."""
    metrics = {"config": dataclasses.asdict(config), **(info or {}), "history": list(history)}
    text = json.dumps(metrics, indent=2)
    checkpoint.atomic_write(os.path.join(out_dir_of(config), METRICS), lambda file: file.write(text.encode()))


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
    checkpoint.atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=100))
