"""Tests for jaxconv.train.config: TrainConfig's checks, its JSON form, and what a resumed run may change."""

import pytest

from jaxconv.train.config import TrainConfig, check_resumable

BAD_CONFIGS = [
    (dict(optimizer="rmsprop"), ValueError, "optimizer must be one of"),
    (dict(conv="fft"), ValueError, "conv must be one of"),
    (dict(learning_rate=0.0), ValueError, "learning_rate must be > 0"),
    (dict(learning_rate=-1e-3), ValueError, "learning_rate must be > 0"),
    (dict(learning_rate=float("nan")), ValueError, "learning_rate must be finite"),
    (dict(learning_rate="0.1"), TypeError, "learning_rate must be a number"),
    (dict(epochs=0), ValueError, "epochs must be >= 1"),
    (dict(epochs=1.5), TypeError, "epochs must be an int"),
    (dict(epochs=True), TypeError, "epochs must be an int"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(seed="0"), TypeError, "seed must be an int"),
    (dict(seed=-3), ValueError, "seed must be >= 0, got -3"),
    (dict(seed=2**32), ValueError, r"seed must be < 2\*\*32 = 4294967296, got 4294967296"),
    (dict(out_dir=""), ValueError, "out_dir '' is an empty path"),
    (dict(data=""), ValueError, "data '' is an empty path"),
    (dict(channels=()), ValueError, "channels must name at least one conv stage"),
    (dict(channels=(4, 0)), ValueError, "channels must be >= 1"),
    (dict(max_train=0), ValueError, "max_train must be >= 1"),
    (dict(test_fraction=1.0), ValueError, r"test_fraction must be in \(0, 1\)"),
    (dict(dtype="float16"), ValueError, r"dtype must be one of \('float32', 'bfloat16'\)"),
]


@pytest.mark.parametrize("changes, error, message", BAD_CONFIGS, ids=[next(iter(case[0])) for case in BAD_CONFIGS])
def test_train_config_rejects_bad_values_naming_the_field(changes, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**changes)


def test_every_seed_the_digits_split_takes_is_accepted():
    assert TrainConfig(seed=0).seed == 0
    assert TrainConfig(seed=2**32 - 1).seed == 2**32 - 1


def test_train_config_round_trips_through_json_and_refuses_unknown_fields():
    config = TrainConfig(epochs=2, channels=[3, 5], data="mine.npz", out_dir="runs/mine")
    assert config.channels == (3, 5)
    assert TrainConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"epochs": 1, "momentum": 0.9})


def test_a_resumed_run_may_change_only_epochs_conv_and_dtype_of_its_config():
    check_resumable(TrainConfig(), TrainConfig(epochs=30, conv="lax", dtype="bfloat16", out_dir="elsewhere"))
    with pytest.raises(ValueError, match=r"cannot resume with a different batch_size \(32 -> 8\), seed \(0 -> 1\)"):
        check_resumable(TrainConfig(), TrainConfig(seed=1, batch_size=8))
    # The message lists what may change, devices (fit's argument) included, as the command's --help does.
    with pytest.raises(ValueError, match=r"\): only epochs, conv, dtype and devices may change; start a new run"):
        check_resumable(TrainConfig(), TrainConfig(layout="NHWC"))
