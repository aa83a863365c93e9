"""The training loop: :func:`fit`, epoch by epoch, saving after each one and on Ctrl-C."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from jaxconv import _interrupts as interrupts
from jaxconv import nn
from jaxconv.train import parallel, rundir, steps
from jaxconv.train.config import TrainConfig
from jaxconv.train.data import Dataset, load_data, warn_empty_classes
from jaxconv.train.rundir import RunState


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`; the state at ``step`` was saved to ``checkpoint`` (None without an out_dir)."""

    def __init__(self, epoch: int, step: int, checkpoint: str | None) -> None:
        super().__init__(f"interrupted in epoch {epoch} at step {step}")
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint


class RunExistsError(FileExistsError):
    """``out_dir`` holds an earlier run's checkpoint, and :func:`fit` was asked neither to resume nor overwrite it."""

    def __init__(self, out_dir: str) -> None:
        super().__init__(
            f"{out_dir} holds the checkpoint of an earlier run: continue it with resume=True, "
            "start over with overwrite=True, or choose another out_dir"
        )
        self.out_dir = out_dir


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
      trained_steps: how many steps this call trained: 0 when a resumed run had trained ``config.epochs`` already.
    """

    config: TrainConfig
    model: nn.Sequential
    params: Any
    opt_state: Any
    history: list[dict[str, Any]]
    compile_time_s: float
    data: Dataset
    trained_steps: int = 0

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


class _Run(NamedTuple):
    """What stays fixed while a run trains: its config, data (also on the devices), model, optimizer and mesh."""

    config: TrainConfig
    data: Dataset
    model: nn.Sequential
    optimizer: steps.OptimizerSpec
    steps_per_epoch: int
    mesh: Mesh
    placed: tuple[jax.Array, ...]  # x_train, y_train, x_test, y_test, replicated on the mesh
    saves: bool  # this process writes the run's files (there is an out_dir, and it is process 0)
    replacing: bool  # a new run in an earlier run's folder, whose files stay until the first checkpoint


class _EpochInterrupted(KeyboardInterrupt):
    """Ctrl-C inside :func:`_run_epoch`, carrying the state after the epoch's last completed step."""

    def __init__(self, state: RunState) -> None:
        super().__init__()
        self.state = state


def fit(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    data: Dataset | None = None,
    devices: int | None = None,
) -> TrainResult:
    """Trains :func:`jaxconv.nn.cnn` on the config's data; see :mod:`jaxconv.train`.

    Args:
      config: the run.
      resume: continue from the checkpoint in ``config.out_dir`` (up to ``config.epochs``).
      overwrite: start a new run in an ``out_dir`` that holds an earlier run's checkpoint, replacing it.
        Without it (and without ``resume``) that is an error, so no saved run is lost by accident.
      progress: show a tqdm progress bar per epoch.
      log: called with one line per epoch when there is no progress bar, and with the run's set-up.
      data: use this data set instead of loading the config's (such as :func:`~jaxconv.train.data.from_arrays`'s).
      devices: train data-parallel on this many devices of each process (None: all local devices); see
        :mod:`jaxconv.train.parallel`. A multi-process run calls ``jax.distributed.initialize`` first.

    Returns:
      A :class:`TrainResult`.

    Ctrl-C (SIGINT, in the main thread) is recorded and honoured at the next
    safe point: after the data is loaded, after compiling, after each step or
    epoch; never inside a JAX call (see :mod:`jaxconv._interrupts`).

    Raises:
      TrainingInterrupted: on Ctrl-C once training started, after saving the current state (with an ``out_dir``).
      KeyboardInterrupt: on Ctrl-C while the data is loaded and the model built; nothing is written.
      ValueError: for data or checkpoints that do not fit the config (a
        :class:`~jaxconv.train.checkpoint.CheckpointError` names a damaged file), or an unwritable ``out_dir``.
      RunExistsError: a ``FileExistsError``, when ``config.out_dir`` holds a checkpoint and neither ``resume``
        nor ``overwrite`` is set.

    >>> config = TrainConfig(epochs=1, batch_size=16, channels=(4,), max_train=64, max_test=32)
    >>> result = fit(config)
    >>> [entry["epoch"] for entry in result.history], result.history[0]["steps"]
    ([1], 4)
    """
    log = log or (lambda line: None)
    _check_out_dir(config, resume=resume, overwrite=overwrite)
    with interrupts.recording():
        data = load_data(config) if data is None else data
        _check_interrupt(every_process=True)
        run, state = _prepare(config, data, resume=resume, replacing=overwrite and not resume, devices=devices)
        _check_interrupt(every_process=True)
        if len(state.history) >= config.epochs:  # a finished run: no set-up to report, nothing written
            return _result(run, state, 0.0, trained_steps=0)
        _log_setup(run, state, log, resume=resume)
        created = rundir.check_writable(rundir.out_dir_of(config)) if run.saves else ()
        try:
            return _train(run, state, progress, log, resume=resume)
        except BaseException:
            rundir.remove_empty(created)  # a folder this run made, if it stopped before saving anything in it
            raise


def _train(run: _Run, state: RunState, progress: bool, log: Callable[[str], None], *, resume: bool) -> TrainResult:
    """Compiles, trains the remaining epochs and plots the curves; on Ctrl-C saves and raises TrainingInterrupted."""
    start_step = state.step
    try:
        compile_time_s = _compile(run, state)
        _check_interrupt(every_process=True)
        state = _train_epochs(run, state, progress, log)
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, _EpochInterrupted):
            state = interrupt.state  # the steps of the interrupted epoch that completed
        saved = _save_interrupted(run, state) if state.step > start_step or resume else None
        raise TrainingInterrupted(len(state.history) + 1, state.step, saved) from None
    if run.saves:
        rundir.plot_curves(state.history, os.path.join(rundir.out_dir_of(run.config), rundir.CURVES), title=_title(run))
    return _result(run, state, compile_time_s, trained_steps=state.step - start_step)


def _check_interrupt(*, every_process: bool = False) -> None:
    """Raises KeyboardInterrupt here if Ctrl-C was recorded.

    Processes of a multi-process run stop together, at a point that all of
    them reach (``every_process``): a lone process stopping mid-epoch would
    leave the others waiting in the gradients' all-reduce.
    """
    if jax.process_count() == 1:
        interrupts.raise_if_requested()
    elif every_process and parallel.any_process(interrupts.requested()):
        raise KeyboardInterrupt


def _result(run: _Run, state: RunState, compile_time_s: float, *, trained_steps: int) -> TrainResult:
    history = list(state.history)
    return TrainResult(
        run.config, run.model, state.params, state.opt_state, history, compile_time_s, run.data, trained_steps
    )


def _check_out_dir(config: TrainConfig, *, resume: bool, overwrite: bool) -> None:
    if resume and config.out_dir is None:
        raise ValueError("resume needs config.out_dir, the directory of the run to continue")
    if (
        not (resume or overwrite)
        and config.out_dir is not None
        and os.path.isfile(rundir.checkpoint_path(config.out_dir))
    ):
        raise RunExistsError(config.out_dir)


def _prepare(
    config: TrainConfig, data: Dataset, *, resume: bool, replacing: bool, devices: int | None
) -> tuple[_Run, RunState]:
    """The run's fixed parts and its state at the start (step 0, or the checkpoint's), placed on the mesh."""
    num_train = len(data.x_train)
    if config.batch_size > num_train:
        raise ValueError(f"batch_size {config.batch_size} is larger than the {num_train} training examples")
    mesh = parallel.make_mesh(devices)
    if config.batch_size % mesh.size:
        raise ValueError(
            f"batch_size {config.batch_size} does not divide among the {mesh.size} devices: each device takes an "
            f"equal share of a batch, so use a multiple of {mesh.size} (or another --devices)"
        )
    steps_per_epoch = num_train // config.batch_size
    steps.check_image_size(data.image_shape, config.channels)
    model = steps.build_model(config, data.num_classes)
    params, opt_state, key = steps.init_state(config, model, data.image_shape)
    state = RunState(params, opt_state, key, 0, (), 0.0, 0, 0, 0.0)
    if resume:
        state = rundir.restore(config, state, steps_per_epoch)
    state = state._replace(**parallel.replicate({"params": state.params, "opt_state": state.opt_state}, mesh))
    placed = tuple(parallel.replicate((data.x_train, data.y_train, data.x_test, data.y_test), mesh))
    optimizer = steps.OptimizerSpec(config.optimizer, config.learning_rate)
    saves = config.out_dir is not None and jax.process_index() == 0
    return _Run(config, data, model, optimizer, steps_per_epoch, mesh, placed, saves, replacing), state


def _log_setup(run: _Run, state: RunState, log: Callable[[str], None], *, resume: bool) -> None:
    config, data = run.config, run.data
    log(f"data: {data.name}, {data.describe()}")
    warn_empty_classes(data)
    log(f"devices: {parallel.describe(run.mesh)}, {config.batch_size // run.mesh.size} examples each per step")
    num_params = sum(leaf.size for leaf in jax.tree.leaves(state.params))
    log(
        f"model: cnn channels={list(config.channels)}, {num_params} params, conv={config.conv}, {config.dtype}; "
        f"{config.optimizer} lr={config.learning_rate}, batch {config.batch_size}, {run.steps_per_epoch} steps/epoch"
        + (f"; resuming at epoch {len(state.history) + 1}, step {state.step}" if resume else "")
    )


def _compile(run: _Run, state: RunState) -> float:
    """Compiles the train and eval steps once, outside the timed epochs; returns the seconds it took."""
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = run.placed
    indices = parallel.split_rows(np.zeros(run.config.batch_size, np.int32), run.mesh)
    warmup = steps.train_step(
        state.params, state.opt_state, x_train, y_train, indices, model=run.model, optimizer=run.optimizer,
        mesh=run.mesh, dtype=run.config.dtype,
    )  # fmt: skip
    jax.block_until_ready(warmup)
    steps.evaluate(state.params, run.model, x_test, y_test, mesh=run.mesh, dtype=run.config.dtype)
    steps.batch_order(state.key, 0, len(x_train), run.config.batch_size)
    return time.perf_counter() - start


def _train_epochs(run: _Run, state: RunState, progress: bool, log: Callable[[str], None]) -> RunState:
    """Trains up to ``config.epochs``, saving after each epoch; Ctrl-C raises :class:`_EpochInterrupted`."""
    while len(state.history) < run.config.epochs:
        state = _train_epoch(run, state, progress, log)
    return state


def _train_epoch(run: _Run, state: RunState, progress: bool, log: Callable[[str], None]) -> RunState:
    """The rest of the current epoch: its steps, the evaluation, the log line and the checkpoint."""
    config = run.config
    epoch = len(state.history)
    first = state.step - epoch * run.steps_per_epoch  # > 0 when resuming mid-epoch
    bar = _progress_bar(progress, run.steps_per_epoch, first, f"epoch {epoch + 1}/{config.epochs}")
    try:
        try:
            state = _run_epoch(run, state, bar)
            state = _end_epoch(run, state)
            if bar is not None:
                bar.set_postfix_str(_epoch_summary(state.history[-1], timing=False))
        finally:
            if bar is not None:
                bar.close()
        if bar is None:
            log(f"epoch {epoch + 1}/{config.epochs}: {_epoch_summary(state.history[-1])}")
        if run.saves:
            rundir.save(config, state, run.steps_per_epoch, replacing=run.replacing, info=_info(run))
        _check_interrupt(every_process=True)
    except _EpochInterrupted:
        raise
    except KeyboardInterrupt:
        raise _EpochInterrupted(state) from None  # after the steps: while evaluating or saving
    return state


def _run_epoch(run: _Run, state: RunState, bar: Any) -> RunState:
    """The remaining train steps of epoch ``len(state.history)``: from a fresh start or a mid-epoch checkpoint."""
    config = run.config
    epoch = len(state.history)
    x_train, y_train = run.placed[:2]
    try:
        order = steps.batch_order(state.key, epoch, len(x_train), config.batch_size)
        for batch in range(state.step - epoch * run.steps_per_epoch, run.steps_per_epoch):
            start = time.perf_counter()
            indices = parallel.split_rows(order[batch], run.mesh)
            params, opt_state, loss, correct = steps.train_step(
                state.params, state.opt_state, x_train, y_train, indices, model=run.model, optimizer=run.optimizer,
                mesh=run.mesh, dtype=config.dtype,
            )  # fmt: skip
            loss, correct = float(loss), int(correct)  # waits for the step: a Ctrl-C now finds it complete
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
            _check_interrupt()
    except KeyboardInterrupt:
        raise _EpochInterrupted(state) from None  # hand the last completed step to fit, which saves it
    return state


def _end_epoch(run: _Run, state: RunState) -> RunState:
    """Evaluates on the test set and moves the epoch's metrics into the history."""
    start = time.perf_counter()
    x_test, y_test = run.placed[2:]
    test_loss, test_accuracy = steps.evaluate(
        state.params, run.model, x_test, y_test, mesh=run.mesh, dtype=run.config.dtype
    )
    entry = {
        "epoch": len(state.history) + 1,
        "step": state.step,
        "train_loss": state.loss_sum / state.seen,
        "train_accuracy": state.correct / state.seen,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "train_time_s": state.train_time_s,
        "steps": run.steps_per_epoch,
        "steps_per_s": run.steps_per_epoch / state.train_time_s,
        "eval_time_s": time.perf_counter() - start,
    }
    return state._replace(history=(*state.history, entry), loss_sum=0.0, correct=0, seen=0, train_time_s=0.0)


def _save_interrupted(run: _Run, state: RunState) -> str | None:
    """After Ctrl-C: saves the state and the curves so far (a further Ctrl-C is only recorded); returns the path."""
    if not run.saves:
        return None
    saved = rundir.save(run.config, state, run.steps_per_epoch, replacing=run.replacing, info=_info(run))
    if state.history:
        rundir.plot_curves(state.history, os.path.join(rundir.out_dir_of(run.config), rundir.CURVES), title=_title(run))
    return saved


def _info(run: _Run) -> dict[str, Any]:
    """What metrics.json records beside the config: how the run was computed."""
    return {"num_devices": run.mesh.size, "num_processes": jax.process_count()}


def _epoch_summary(entry: dict[str, Any], *, timing: bool = True) -> str:
    summary = (
        f"train loss {entry['train_loss']:.4f} acc {entry['train_accuracy']:.2%} | "
        f"test loss {entry['test_loss']:.4f} acc {entry['test_accuracy']:.2%}"
    )
    return summary + (f" | {entry['train_time_s']:.2f} s, {entry['steps_per_s']:.0f} steps/s" if timing else "")


def _title(run: _Run) -> str:
    config = run.config
    model = f"cnn {list(config.channels)}, conv={config.conv}, {config.dtype}"
    return f"{run.data.name}: {model}, {config.optimizer} lr={config.learning_rate}"


def _progress_bar(enabled: bool, total: int, initial: int, description: str) -> Any:
    if enabled:  # imported only then: in Jupyter without ipywidgets, tqdm.auto warns on import
        with contextlib.suppress(ImportError):  # the train extra brings tqdm; without it, epoch lines only
            from tqdm.auto import tqdm

            return tqdm(total=total, initial=initial, desc=description, unit="step", dynamic_ncols=True)
    return None
