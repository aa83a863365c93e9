"""``jaxconv train``: options, the run, the summary. Bad input ends in one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any, cast

import jax

from jaxconv import _interrupts as interrupts
from jaxconv import nn
from jaxconv.train import parallel, rundir
from jaxconv.train.config import DTYPES, LAYOUTS, OPTIMIZERS, TrainConfig, check_resumable, resumable_options
from jaxconv.train.data import DataWarning
from jaxconv.train.loop import RunExistsError, TrainingInterrupted, TrainResult, fit

INTERRUPTED_STATUS = 130  # 128 + SIGINT, what shells report for Ctrl-C
ERROR_STATUS = 2

_CLI_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    # config field: (flags, argparse keywords)
    "data": (("--data",), dict(metavar="FILE.npz", help="an .npz with x_train, y_train, x_test, y_test "
                               "(images (N,H,W), (N,C,H,W) or (N,H,W,C), uint8 or float); default: sklearn's 8x8 "
                               "digits")),
    "layout": (("--layout",), dict(choices=LAYOUTS, help="how --data's 4-D images are laid out: NCHW (N,C,H,W), "
                                   "NHWC (N,H,W,C), or auto: channels-last if only the last axis is 1, 3 or 4 "
                                   "long, channels-first otherwise, refused if both axis 1 and the last are "
                                   "(default: auto)")),
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
    "dtype": (("--dtype",), dict(choices=DTYPES, help="compute dtype; bfloat16: mixed precision, float32 params "
                                 "and optimizer state (default: float32)")),
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``jaxconv train``: every :class:`TrainConfig` field, plus output and resume."""
    for name, (flags, options) in _CLI_OPTIONS.items():
        parser.add_argument(*flags, dest=name, default=None, **options)
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="output directory (default: runs/digits or runs/<npz name>)"
    )
    parser.add_argument(
        "--resume",
        metavar="DIR",
        default=None,
        help=f"continue the run saved in DIR; only {resumable_options(_flag)} may differ from that run "
        "(other options of the run are refused)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start a new run in --out DIR even if DIR holds an earlier run"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    parser.add_argument(
        "--devices", type=int, metavar="N", help="train data-parallel on N devices of each process (default: all)"
    )
    group = parser.add_argument_group("multi-process runs (one process per host, through jax.distributed.initialize)")
    group.add_argument("--coordinator-address", metavar="HOST:PORT", help="process 0's address, the same for all")
    group.add_argument("--num-processes", type=int, metavar="N", help="how many processes take part")
    group.add_argument("--process-id", type=int, metavar="I", help="this process, 0 .. N-1; 0 writes the files")


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    """``(config, resume)`` from parsed options: the defaults, or the resumed run's saved config, overridden."""
    given = {name: getattr(args, name) for name in _CLI_OPTIONS if getattr(args, name, None) is not None}
    for flag, path in (("--data", given.get("data")), ("--out", args.out), ("--resume", args.resume)):
        if path == "":  # os.path would read it as the working directory
            raise ValueError(f"{flag} '' is an empty path: give a {'file' if flag == '--data' else 'folder'}")
    if "data" in given:  # stored absolute, so the run resumes from any working directory
        given["data"] = os.path.abspath(given["data"])
    if args.resume is not None:
        if getattr(args, "overwrite", False):
            raise ValueError("--resume DIR continues the run in DIR and --overwrite replaces it: give one of them")
        if args.out is not None and os.path.abspath(args.out) != os.path.abspath(args.resume):
            raise ValueError("--resume DIR continues the run in DIR: give --out only without --resume")
        saved = rundir.read_config(args.resume)
        with _naming_flags():
            config = dataclasses.replace(saved, **given, out_dir=args.resume)
        check_resumable(saved, config, name=_flag)  # here, to name the flags; fit checks again
        return config, True
    with _naming_flags():
        config = TrainConfig(**given)
    if args.out is not None:
        return dataclasses.replace(config, out_dir=args.out), False
    # The default directory: runs/<data name>, or runs/<data name>-2, -3, ... when earlier runs hold those.
    name = "digits" if config.data is None else os.path.splitext(os.path.basename(config.data))[0]
    out_dir, number = os.path.join("runs", name), 1
    while os.path.exists(rundir.checkpoint_path(out_dir)) and not getattr(args, "overwrite", False):
        number += 1
        out_dir = os.path.join("runs", f"{name}-{number}")
    return dataclasses.replace(config, out_dir=out_dir), False


def _flag(option: str) -> str:
    """The flag of an option: ``learning_rate`` -> ``--lr``, ``devices`` -> ``--devices``."""
    return _CLI_OPTIONS[option][0][0] if option in _CLI_OPTIONS else f"--{option.replace('_', '-')}"


@contextlib.contextmanager
def _naming_flags() -> Iterator[None]:
    """TrainConfig's errors name the field (``seed must be >= 0``); on the command line, name the flag."""
    try:
        yield
    except (ValueError, TypeError) as error:
        field, _, rest = str(error).partition(" ")
        if field not in _CLI_OPTIONS:
            raise
        raise type(error)(f"{_flag(field)} {rest}") from None


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Shows each :class:`DataWarning` as one ``jaxconv train: warning:`` line on stderr, from process 0 only."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def show_line(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if not issubclass(category, DataWarning):
                show(message, category, *args, **kwargs)
            elif jax.process_index() == 0:
                print(f"jaxconv train: warning: {message}", file=sys.stderr)

        warnings.showwarning = show_line
        warnings.simplefilter("always", DataWarning)
        yield


def run(args: argparse.Namespace) -> int:
    """``jaxconv train``: :func:`fit` with a progress bar, then a summary; 130 after Ctrl-C, 2 on bad input.

    Ctrl-C is recorded from here on and honoured where stopping is safe (see
    :mod:`jaxconv._interrupts`), never inside an XLA compilation.
    """
    wall_start = time.perf_counter()
    with interrupts.recording():
        try:
            parallel.initialize_distributed(
                getattr(args, "coordinator_address", None),
                getattr(args, "num_processes", None),
                getattr(args, "process_id", None),
            )
            if jax.process_count() > 1 and args.out is None and args.resume is None:
                raise ValueError("a multi-process run needs --out DIR (or --resume DIR), the same in every process")
            config, resume = config_from_args(args)
            if getattr(args, "data", None) is not None and not os.path.exists(cast(str, config.data)):
                raise FileNotFoundError(f"--data {args.data}: no such file")
        except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
            return _error(error)
        try:
            with _warnings_as_lines():
                result = _fit(args, config, resume)
        except TrainingInterrupted as interrupt:
            if jax.process_index() == 0:  # the one that saved: the others would say "nothing saved"
                _print_interrupted(interrupt)
            return INTERRUPTED_STATUS
        except KeyboardInterrupt:
            print("\ninterrupted before training started; nothing saved.", file=sys.stderr)
            return INTERRUPTED_STATUS
        except RunExistsError as error:
            out = error.out_dir
            return _error(
                f"{out} holds the checkpoint of an earlier run: continue it with --resume {out}, "
                "start over with --overwrite, or choose another --out folder"
            )
        except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
            return _error(error)
        if jax.process_index() == 0:
            _print_summary(result, time.perf_counter() - wall_start)
        return 0


def _fit(args: argparse.Namespace, config: TrainConfig, resume: bool) -> TrainResult:
    quiet = getattr(args, "quiet", False) or jax.process_index() > 0  # process 0 speaks for all
    overwrite = getattr(args, "overwrite", False)
    if overwrite and os.path.isfile(rundir.checkpoint_path(rundir.out_dir_of(config))) and jax.process_index() == 0:
        print(
            f"note: --overwrite: the run saved in {config.out_dir} is replaced by a new one "
            "(it stays until the new run saves its first checkpoint)"
        )
    progress = not quiet and sys.stderr.isatty()
    log = None if quiet else print
    devices = getattr(args, "devices", None)
    return fit(config, resume=resume, overwrite=overwrite, progress=progress, log=log, devices=devices)


def _error(error: Exception | str) -> int:
    print(f"jaxconv train: error: {error}", file=sys.stderr)
    return ERROR_STATUS


def _print_interrupted(interrupt: TrainingInterrupted) -> None:
    where = f"in epoch {interrupt.epoch} after step {interrupt.step}"
    if interrupt.checkpoint is None:
        where = "before training started" if interrupt.step == 0 else where
        print(f"\ninterrupted {where}; nothing saved.", file=sys.stderr)
        return
    print(f"\ninterrupted {where}.", file=sys.stderr)
    out_dir = os.path.dirname(interrupt.checkpoint)
    print(f"saved {interrupt.checkpoint}; continue with: jaxconv train --resume {out_dir}", file=sys.stderr)


def _print_summary(result: TrainResult, wall_s: float) -> None:
    config, history = result.config, result.history
    last = history[-1]
    after = f"after {_count(last['epoch'], 'epoch')}, {_count(last['step'], 'step')}"
    if not result.trained_steps:
        print(
            f"nothing to train: {config.out_dir} holds {_count(len(history), 'epoch')} and --epochs is "
            f"{config.epochs}; no files written (give a larger --epochs to train further)"
        )
        print(f"saved run: test accuracy {last['test_accuracy']:.2%} (loss {last['test_loss']:.4f}) {after}")
        return
    print(
        f"test accuracy {last['test_accuracy']:.2%} (loss {last['test_loss']:.4f}) {after}, "
        f"conv={config.conv}, {config.dtype}"
    )
    print(
        f"time per epoch {result.time_per_epoch:.2f} s (train steps, mean of {len(history)}), "
        f"{result.steps_per_second:.0f} steps/s; compile {result.compile_time_s:.1f} s; wall {wall_s:.1f} s"
    )
    if config.out_dir is not None:
        files = ", ".join(
            os.path.join(config.out_dir, name) for name in (rundir.METRICS, rundir.CURVES, rundir.CHECKPOINT)
        )
        print(f"wrote {files}")


def _count(number: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
