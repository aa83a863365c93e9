"""Training a CNN with the conv differentiated by the note: :func:`fit` and the ``jaxconv train`` command.

The Python API, for scripts and notebooks::

    from jaxconv.train import TrainConfig, fit
    result = fit(TrainConfig(epochs=10))          # sklearn digits, conv backend "im2col"
    result.test_accuracy, result.history[-1]
    fit(TrainConfig(), data=from_arrays(x_train, y_train, x_test, y_test))  # arrays, checked as --data's

The command is a thin layer over it (:mod:`jaxconv.train.cli`)::

    jaxconv train                                 # digits, writes runs/digits/
    jaxconv train --conv lax                      # the same model with lax's conv
    jaxconv train --data mnist.npz --epochs 3     # your own images
    jaxconv train --data rgb.npz --layout NHWC    # ... stored channels-last (N, H, W, C)
    jaxconv train --resume runs/digits --epochs 20
    jaxconv train --devices 4 --dtype bfloat16    # data-parallel, mixed precision

A run is a jitted optax loop (:mod:`~jaxconv.train.loop`): ``train_step`` is
``value_and_grad`` of the mean softmax cross-entropy plus an optax update,
``evaluate`` a jitted pass over the test set (:mod:`~jaxconv.train.steps`).
The data order of epoch ``e`` is a permutation drawn from
``jax.random.fold_in(key, e)``, so it depends only on the seed and the epoch:
a run interrupted at any step and resumed from its checkpoint ends with
exactly the parameters of an uninterrupted run.

With an output directory (:mod:`~jaxconv.train.rundir`), each epoch writes
``metrics.json`` (the config and per-epoch history) and ``checkpoint.npz``
(params, optimizer state, RNG key, step, history; see
:mod:`~jaxconv.train.checkpoint`: no pickle, atomic), and the end of the run
writes ``curves.png``. Ctrl-C is recorded and honoured between steps
(:mod:`~jaxconv._interrupts`); it saves the current state and raises
:class:`TrainingInterrupted`, which the command turns into a message and exit status 130.

Training is data-parallel over a 1-D device mesh, across processes too
(:mod:`~jaxconv.train.parallel`), and computes in float32 or, with
``TrainConfig(dtype="bfloat16")``, in bfloat16 with float32 state.
"""

from jaxconv.train.cli import add_arguments as add_arguments
from jaxconv.train.cli import run as run
from jaxconv.train.config import TrainConfig as TrainConfig
from jaxconv.train.data import Dataset as Dataset
from jaxconv.train.data import DataWarning as DataWarning
from jaxconv.train.data import from_arrays as from_arrays
from jaxconv.train.data import load_data as load_data
from jaxconv.train.loop import RunExistsError as RunExistsError
from jaxconv.train.loop import TrainingInterrupted as TrainingInterrupted
from jaxconv.train.loop import TrainResult as TrainResult
from jaxconv.train.loop import fit as fit
from jaxconv.train.rundir import plot_curves as plot_curves
from jaxconv.train.rundir import read_config as read_config
from jaxconv.train.steps import build_model as build_model
from jaxconv.train.steps import evaluate as evaluate
from jaxconv.train.steps import init_state as init_state

__all__ = [
    "DataWarning",
    "Dataset",
    "RunExistsError",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "add_arguments",
    "build_model",
    "evaluate",
    "fit",
    "from_arrays",
    "init_state",
    "load_data",
    "plot_curves",
    "read_config",
    "run",
]
