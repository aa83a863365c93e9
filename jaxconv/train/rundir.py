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
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax

from jaxconv.train import checkpoint
from jaxconv.train.config import TrainConfig, check_resumable

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
CURVES = "curves.png"


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


def checkpoint_path(out_dir: str | os.PathLike) -> str:
    """Where the checkpoint of a run in ``out_dir`` lives."""
    return os.path.join(os.fspath(out_dir), CHECKPOINT)


def read_config(out_dir: str | os.PathLike) -> TrainConfig:
    """The config saved in the checkpoint of ``out_dir`` (for ``--resume``)."""
    path = checkpoint_path(out_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint to resume in {os.fspath(out_dir)} (expected {path})")
    return TrainConfig.from_dict(checkpoint.read_metadata(path)["config"])


def save(config: TrainConfig, state: RunState, steps_per_epoch: int, *, defer_interrupts: bool = True) -> str:
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
    with interrupts_deferred(reraise=defer_interrupts):
        checkpoint.save(path, tree, metadata)
        write_metrics(config, state.history)
    return path


def restore(config: TrainConfig, template: RunState, steps_per_epoch: int) -> RunState:
    """The state saved in ``config.out_dir``, in the structure of ``template``, if it continues ``config``."""
    path = checkpoint_path(config.out_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint to resume in {config.out_dir} (expected {path})")
    check_resumable(TrainConfig.from_dict(checkpoint.read_metadata(path)["config"]), config)
    tree = {"params": template.params, "opt_state": template.opt_state, "key": template.key}
    tree, metadata = checkpoint.load(path, tree)
    if metadata["steps_per_epoch"] != steps_per_epoch:
        raise ValueError(f"{path} has {metadata['steps_per_epoch']} steps per epoch, this run {steps_per_epoch}")
    running = metadata["running"]
    return RunState(
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


def write_metrics(config: TrainConfig, history: Sequence[dict[str, Any]]) -> None:
    """``metrics.json``: the config and one entry per completed epoch, written atomically."""
    text = json.dumps({"config": dataclasses.asdict(config), "history": list(history)}, indent=2)
    checkpoint.atomic_write(os.path.join(config.out_dir, METRICS), lambda file: file.write(text.encode()))


def remove_outputs(out_dir: str | os.PathLike) -> None:
    """Removes a run's three files from ``out_dir`` (for ``--overwrite``), leaving anything else."""
    for name in (CHECKPOINT, METRICS, CURVES):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(os.fspath(out_dir), name))


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


@contextlib.contextmanager
def interrupts_deferred(*, reraise: bool = True) -> Iterator[None]:
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
