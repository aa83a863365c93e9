"""What defines a training run: :class:`TrainConfig`, every ``jaxconv train`` option that changes the result."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

from jaxconv import nn
from jaxconv._validate import as_finite, as_int, check_choice

OPTIMIZERS = ("adam", "sgd", "momentum")
DTYPES = ("float32", "bfloat16")
LAYOUTS = ("auto", "NCHW", "NHWC")  # how the images of an .npz are read; see jaxconv.train.data.image_layout
SEED_LIMIT = 2**32  # seeds are 0 .. 2**32 - 1

# The options a resumed run may change: every other TrainConfig field would not continue the same run. conv and
# dtype change how the same model is computed (to rounding), devices (fit's argument, not a field) only how each
# batch is split, since checkpoints hold host arrays. out_dir is not an option here: it is the run resumed.
RESUMABLE_CHANGES = ("epochs", "conv", "dtype", "devices")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; every ``jaxconv train`` option. Serialisable to JSON.

    Attributes:
      data: path of an ``.npz`` (see :func:`jaxconv.train.data.load_npz`), or None for sklearn's digits.
      layout: how ``data``'s 4-D images are read: ``"NCHW"``, ``"NHWC"``, or ``"auto"`` (see
        :func:`jaxconv.train.data.image_layout`).
      conv: conv backend, ``"im2col"`` (the custom VJP) or ``"lax"``.
      optimizer: ``"adam"``, ``"sgd"`` or ``"momentum"`` (SGD with momentum 0.9).
      learning_rate: the optimizer's step size.
      epochs: total number of epochs (a resumed run trains up to this many).
      batch_size: examples per step; the last incomplete batch of an epoch is dropped.
      seed: seeds the init, the data order and the digits train/test split; ``0 <= seed < 2**32``.
      channels: output channels of each conv stage of :func:`jaxconv.nn.cnn`.
      test_fraction: fraction of the digits held out for testing (ignored with ``data``).
      max_train: use only the first this many training examples (None: all).
      max_test: use only the first this many test examples (None: all).
      out_dir: where metrics, plot and checkpoint go; None writes nothing.
      dtype: the compute dtype: ``"float32"``, or ``"bfloat16"`` for mixed precision (parameters and
        optimizer state stay float32; the forward and backward passes run in bfloat16, the loss in float32).

    >>> config = TrainConfig(epochs=3, channels=[8])
    >>> TrainConfig.from_json(config.to_json()) == config
    True
    >>> TrainConfig(epochs=0)
    Traceback (most recent call last):
    ValueError: epochs must be >= 1, got 0
    """

    data: str | None = None
    layout: str = "auto"
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
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_choice(self.layout, LAYOUTS, "layout")
        check_choice(self.conv, nn.BACKENDS, "conv")
        check_choice(self.dtype, DTYPES, "dtype")
        check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        self._set("learning_rate", as_finite(self.learning_rate, "learning_rate", positive=True))
        self._set("epochs", as_int(self.epochs, "epochs", minimum=1))
        self._set("batch_size", as_int(self.batch_size, "batch_size", minimum=1))
        # One rule for every data source: the digits split (scikit-learn's random_state) takes only these.
        self._set("seed", as_int(self.seed, "seed", minimum=0))
        if self.seed >= SEED_LIMIT:
            raise ValueError(f"seed must be < 2**32 = {SEED_LIMIT}, got {self.seed}")
        for name in ("max_train", "max_test"):
            if getattr(self, name) is not None:
                self._set(name, as_int(getattr(self, name), name, minimum=1))
        if isinstance(self.channels, (str, bytes)) or not hasattr(self.channels, "__iter__"):
            raise TypeError(f"channels must be a sequence of ints, got {self.channels!r}")
        self._set("channels", tuple(as_int(value, "channels", minimum=1) for value in self.channels))
        if not self.channels:
            raise ValueError("channels must name at least one conv stage")
        test_fraction = as_finite(self.test_fraction, "test_fraction")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self._set("test_fraction", test_fraction)
        for name in ("data", "out_dir"):
            if getattr(self, name) is not None:
                self._set(name, os.fspath(getattr(self, name)))
                if not getattr(self, name):  # os.path would read it as the working directory
                    raise ValueError(f"{name} '' is an empty path: give a path, or None")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def to_json(self) -> str:
        """The config as a JSON object."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Builds a config from :meth:`to_json`'s fields, rejecting unknown ones."""
        if not isinstance(values, dict):
            raise TypeError(f"a TrainConfig is read from a JSON object, got {type(values).__name__}")
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _same(name: str, saved: TrainConfig, config: TrainConfig) -> bool:
    a, b = getattr(saved, name), getattr(config, name)
    if name == "data" and a is not None and b is not None:
        return os.path.realpath(a) == os.path.realpath(b)  # one file, however the path was written
    return a == b


def resumable_options(name: Callable[[str], str] = str) -> str:
    """The options a resumed run may change (:data:`RESUMABLE_CHANGES`), each as ``name`` writes it, in one phrase.

    >>> resumable_options()
    'epochs, conv, dtype and devices'
    """
    names = [name(option) for option in RESUMABLE_CHANGES]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def check_resumable(saved: TrainConfig, config: TrainConfig, *, name: Callable[[str], str] = str) -> None:
    """Raises ValueError naming each option that differs between ``saved`` and ``config`` but may not.

    Args:
      saved: the config of the run resumed.
      config: the config it is resumed with.
      name: how the message writes an option (a field name, or the command's flag).

    >>> check_resumable(TrainConfig(), TrainConfig(epochs=30))
    >>> check_resumable(TrainConfig(), TrainConfig(seed=1))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: cannot resume with a different seed (0 -> 1): only epochs, conv, dtype and devices may change; ...
    """
    changed = [
        f"{name(field.name)} ({getattr(saved, field.name)!r} -> {getattr(config, field.name)!r})"
        for field in dataclasses.fields(TrainConfig)
        if field.name not in (*RESUMABLE_CHANGES, "out_dir") and not _same(field.name, saved, config)
    ]
    if changed:
        raise ValueError(
            f"cannot resume with a different {', '.join(changed)}: only {resumable_options(name)} may change; "
            "start a new run (another --out) to change the rest"
        )
