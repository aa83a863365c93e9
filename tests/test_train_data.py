"""Tests for jaxconv.train.data: the digits split and the checks of a user's .npz."""

import dataclasses
import warnings

import numpy as np
import pytest

from jaxconv.train import data
from jaxconv.train.config import TrainConfig


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def _valid_arrays(rng, image_shape=(5, 5), dtype=np.uint8):
    def images(n):
        if dtype == np.uint8:
            return rng.integers(0, 256, (n, *image_shape), dtype=np.uint8)
        return rng.standard_normal((n, *image_shape)).astype(dtype)

    return dict(x_train=images(12), y_train=np.arange(12) % 4, x_test=images(6), y_test=np.arange(6) % 4)


def test_digits_split_is_fixed_by_seed_stratified_and_normalised():
    digits = data.load_digits(seed=0)
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int32
    assert digits.num_classes == 10 and digits.name == "digits"
    np.testing.assert_allclose(digits.x_train.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(digits.x_train.std(), 1.0, atol=1e-4)
    # Stratified: each class has the same share of both splits, up to rounding.
    train_fractions = np.bincount(digits.y_train, minlength=10) / len(digits.y_train)
    test_fractions = np.bincount(digits.y_test, minlength=10) / len(digits.y_test)
    np.testing.assert_allclose(train_fractions, test_fractions, atol=1 / 36)
    again = data.load_digits(seed=0)
    np.testing.assert_array_equal(digits.x_test, again.x_test)
    other = data.load_digits(seed=1)
    assert not np.array_equal(digits.y_test, other.y_test)


def test_digits_are_the_sklearn_images_up_to_normalisation():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    raw = sklearn_datasets.load_digits()
    digits = data.load_digits(test_fraction=0.5, seed=3)
    assert len(digits.x_train) + len(digits.x_test) == len(raw.images)
    raw_flat = raw.images.reshape(len(raw.images), -1)
    for image, label in zip(digits.x_test[:20], digits.y_test[:20]):
        # Normalising is affine, so each test image correlates perfectly with a raw image of its label.
        candidates = raw_flat[raw.target == label]
        correlations = [np.corrcoef(image.ravel(), candidate)[0, 1] for candidate in candidates]
        assert max(correlations) > 0.9999


def test_npz_uint8_images_are_scaled_and_normalised_with_train_statistics(tmp_path):
    rng = np.random.default_rng(0)
    arrays = _valid_arrays(rng)
    loaded = data.load_npz(_write(tmp_path / "mine.npz", **arrays))
    assert loaded.x_train.shape == (12, 1, 5, 5) and loaded.x_test.shape == (6, 1, 5, 5)
    assert loaded.num_classes == 4 and loaded.name == "mine"
    scaled_train = arrays["x_train"] / 255.0
    mean, std = scaled_train.mean(), scaled_train.std()
    np.testing.assert_allclose(loaded.x_train[:, 0], (scaled_train - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.x_test[:, 0], (arrays["x_test"] / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(loaded.y_test, arrays["y_test"])
    assert loaded.y_train.dtype == np.int32


def test_npz_float_nchw_images_are_normalised_per_channel(tmp_path):
    rng = np.random.default_rng(1)
    arrays = _valid_arrays(rng, image_shape=(3, 4, 4), dtype=np.float64)
    arrays["x_train"][:, 1] = arrays["x_train"][:, 1] * 10 + 5
    # (12, 3, 4, 4) also reads as channels-last 3x4 RGBA images: the layout is given.
    loaded = data.load_npz(_write(tmp_path / "rgb.npz", **arrays), layout="NCHW", num_classes=6)
    assert loaded.x_train.shape == (12, 3, 4, 4) and loaded.x_train.dtype == np.float32
    assert loaded.num_classes == 6
    np.testing.assert_allclose(loaded.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(loaded.x_train.std(axis=(0, 2, 3)), 1.0, atol=1e-4)


def test_dataset_limit_keeps_the_first_examples():
    full = data.synthetic(num_train=20, num_test=10)
    small = full.limit(5, None)
    np.testing.assert_array_equal(small.x_train, full.x_train[:5])
    np.testing.assert_array_equal(small.y_test, full.y_test)


def _replace(**changes):
    return changes


MALFORMED = [
    ("missing", dict(drop="y_test"), r"missing key\(s\) y_test"),
    (
        "rank",
        _replace(x_train=np.zeros(10)),
        r"x_train must have shape \(N, H, W\), \(N, C, H, W\) or \(N, H, W, C\), got",
    ),
    ("rank5", _replace(x_test=np.zeros((6, 1, 1, 5, 5))), r"x_test must have shape \(N, H, W\), \(N, C, H, W\) or"),
    ("strings", _replace(x_train=np.full((12, 5, 5), "a")), r"x_train must hold numbers .* got dtype <U1"),
    ("complex", _replace(x_test=np.zeros((6, 5, 5), complex)), r"x_test must hold numbers .* complex128"),
    ("nan", _replace(x_train=np.full((12, 5, 5), np.nan)), r"x_train contains NaN"),
    ("empty", _replace(x_train=np.zeros((0, 5, 5)), y_train=np.zeros(0, int)), r"x_train has no images"),
    ("shape", _replace(x_test=np.zeros((6, 5, 4), np.uint8)), r"x_test images have shape \(5, 4\) but x_train"),
    (
        "ambiguous",
        _replace(x_train=np.zeros((12, 3, 5, 4), np.uint8), x_test=np.zeros((6, 3, 5, 4), np.uint8)),
        r"x_train has shape \(12, 3, 5, 4\), which reads two ways: .* pass --layout NCHW or --layout NHWC",
    ),
    ("count", _replace(y_train=np.arange(11) % 4), r"y_train has 11 labels but x_train has 12 images"),
    ("float_labels", _replace(y_test=np.zeros(6)), r"y_test must hold integer class labels, got dtype float64"),
    ("label_rank", _replace(y_train=np.zeros((12, 1), int)), r"y_train must have shape \(N,\)"),
    ("negative", _replace(y_train=np.arange(12) % 4 - 1), r"y_train has labels outside \[0, num_classes\)"),
    (
        "unseen",
        _replace(y_test=np.array([0, 1, 2, 3, 4, 0])),
        r"y_test has labels outside \[0, num_classes\) = \[0, 4\)",
    ),
    ("object", _replace(y_test=np.array([0, 1, 2, 3, "x", None], dtype=object)), r"y_test .* without pickle"),
    ("no_channels", _replace(x_test=np.zeros((6, 0, 5, 5), np.uint8)), r"x_test images have an empty dimension"),
    ("no_width", _replace(x_train=np.zeros((12, 5, 0), np.uint8)), r"x_train images have an empty dimension"),
    (
        "uint8_and_float",
        _replace(x_test=np.zeros((6, 5, 5), np.float32)),
        r"x_train has dtype uint8 but x_test float32: .* both splits must be uint8 or neither",
    ),
    (
        "huge_label",
        _replace(y_train=np.array([0, 1, 2, 3] * 2 + [2**32 + 1, 0, 1, 2])),
        r"y_train has a label of 4294967297: labels are class indices 0..K-1, and a model of 4294967298 classes",
    ),
    (
        "uint64_label",
        _replace(y_test=np.array([0, 1, 2, 3, 2**63 + 5, 0], np.uint64)),
        r"y_test has a label of 9223372036854775813",
    ),
]


@pytest.mark.parametrize("name, changes, message", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_npz_is_rejected_naming_the_key(tmp_path, name, changes, message):
    arrays = _valid_arrays(np.random.default_rng(2))
    changes = dict(changes)
    if "drop" in changes:
        del arrays[changes.pop("drop")]
    arrays.update(changes)
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        data.load_npz(path)


def test_float_images_of_two_float_dtypes_are_used_as_given(tmp_path):
    arrays = _valid_arrays(np.random.default_rng(4), dtype=np.float64)
    arrays["x_test"] = arrays["x_test"].astype(np.float32)
    loaded = data.load_npz(_write(tmp_path / "floats.npz", **arrays))
    assert loaded.x_train.dtype == loaded.x_test.dtype == np.float32


def test_labels_at_or_above_a_given_num_classes_are_rejected(tmp_path):
    path = _write(tmp_path / "ok.npz", **_valid_arrays(np.random.default_rng(3)))
    with pytest.raises(ValueError, match=r"y_train has labels outside \[0, num_classes\) = \[0, 3\)"):
        data.load_npz(path, num_classes=3)


def test_files_that_are_not_npz_archives_are_rejected(tmp_path):
    text = tmp_path / "text.npz"
    text.write_text("not numpy")
    with pytest.raises(ValueError, match="is not an .npz archive"):
        data.load_npz(text)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="holds a single array"):
        data.load_npz(single)
    with pytest.raises(FileNotFoundError):
        data.load_npz(tmp_path / "absent.npz")


def test_a_file_that_is_not_a_zip_is_named_as_such_not_as_pickled_data(tmp_path):
    text = tmp_path / "d.npz"
    text.write_text("not a zip\n")
    with pytest.raises(ValueError) as error:
        data.load_npz(text)
    assert str(error.value) == f"{text} is not an .npz archive: not a zip file, the format np.savez writes"
    with pytest.raises(FileNotFoundError, match=f"^no such data file: {tmp_path / 'absent.npz'}$"):
        data.load_npz(tmp_path / "absent.npz")
    with pytest.raises(ValueError, match=f"^{tmp_path} is a folder, not an .npz archive$"):
        data.load_npz(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Channels-last images, and --layout.


@pytest.mark.parametrize(
    "shape, layout",
    [
        ((64, 32, 32, 3), "NHWC"),  # RGB, channels-last: once read as 32 channels of 32x3
        ((600, 16, 16, 3), "NHWC"),  # once trained, silently, as 16 channels of 16x3
        ((5, 28, 28, 1), "NHWC"),
        ((5, 9, 9, 4), "NHWC"),
        ((5, 3, 32, 32), "NCHW"),
        ((5, 1, 28, 28), "NCHW"),
        ((5, 8, 6, 6), "NCHW"),  # neither axis a channel count: channels-first, as (N, C, H, W) always was
        ((5, 28, 28), "NHW"),
    ],
)
def test_auto_reads_the_axis_of_1_3_or_4_as_channels(shape, layout):
    assert data.image_layout(shape) == layout


@pytest.mark.parametrize("shape", [(10, 3, 8, 3), (10, 1, 28, 1), (10, 4, 4, 4), (10, 3, 8, 4)])
def test_auto_refuses_a_shape_that_reads_both_ways_naming_both_readings(shape):
    _, a, b, c = shape
    expected = (
        f"x_train has shape {shape}, which reads two ways: channels-first (N, C, H, W), {a} channels of {b}x{c}, "
        f"or channels-last (N, H, W, C), {c} channels of {a}x{b}; pass --layout NCHW or --layout NHWC "
        "(layout= in Python)"
    )
    with pytest.raises(ValueError) as error:
        data.image_layout(shape)
    assert str(error.value) == expected
    assert data.image_layout(shape, "NCHW") == "NCHW" and data.image_layout(shape, "NHWC") == "NHWC"


def test_channels_last_images_are_transposed_once_on_load(tmp_path):
    rng = np.random.default_rng(5)
    nhwc = dict(
        x_train=rng.integers(0, 256, (12, 6, 5, 3), dtype=np.uint8),
        y_train=np.arange(12) % 4,
        x_test=rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8),
        y_test=np.arange(4),
    )
    nchw = {**nhwc, "x_train": nhwc["x_train"].transpose(0, 3, 1, 2), "x_test": nhwc["x_test"].transpose(0, 3, 1, 2)}
    read = data.load_npz(_write(tmp_path / "nhwc.npz", **nhwc))
    reference = data.load_npz(_write(tmp_path / "nchw.npz", **nchw))
    assert read.layout == "NHWC" and reference.layout == "NCHW"
    assert read.x_train.shape == (12, 3, 6, 5) and read.x_train.flags.c_contiguous
    np.testing.assert_array_equal(read.x_train, reference.x_train)
    np.testing.assert_array_equal(read.x_test, reference.x_test)
    assert (
        read.describe() == "12 train / 4 test images of 6x5, 3 channels, read as channels-last (N, H, W, C); 4 classes"
    )
    # Told the layout, the same file reads the other way, as given.
    as_nchw = data.load_npz(tmp_path / "nhwc.npz", layout="NCHW")
    assert as_nchw.layout == "NCHW" and as_nchw.x_train.shape == (12, 6, 5, 3)


def test_an_ambiguous_file_reads_as_the_layout_given_for_both_splits(tmp_path):
    rng = np.random.default_rng(6)
    arrays = dict(
        x_train=rng.standard_normal((12, 3, 8, 3)), y_train=np.arange(12) % 4,
        x_test=rng.standard_normal((6, 3, 8, 3)), y_test=np.arange(6) % 4,
    )  # fmt: skip
    path = _write(tmp_path / "ambiguous.npz", **arrays)
    with pytest.raises(ValueError, match=r"reads two ways: .* pass --layout NCHW or --layout NHWC"):
        data.load_npz(path)
    assert data.load_npz(path, layout="NCHW").image_shape == (3, 8, 3)
    assert data.load_npz(path, layout="NHWC").image_shape == (3, 3, 8)
    with pytest.raises(ValueError, match="layout must be one of"):
        data.load_npz(path, layout="CHW")


def test_a_config_and_from_arrays_read_as_the_command_does(tmp_path):
    rng = np.random.default_rng(7)
    arrays = dict(
        x_train=rng.integers(0, 256, (12, 3, 8, 3), dtype=np.uint8), y_train=np.arange(12) % 4,
        x_test=rng.integers(0, 256, (6, 3, 8, 3), dtype=np.uint8), y_test=np.arange(6) % 4,
    )  # fmt: skip
    path = str(_write(tmp_path / "mine.npz", **arrays))
    from_config = data.load_data(TrainConfig(data=path, layout="NHWC"))
    in_memory = data.from_arrays(*(arrays[key] for key in data.NPZ_KEYS), layout="NHWC", name="mine")
    assert from_config.image_shape == in_memory.image_shape == (3, 3, 8)
    np.testing.assert_array_equal(from_config.x_train, in_memory.x_train)
    with pytest.raises(ValueError, match="reads two ways"):
        data.from_arrays(*(arrays[key] for key in data.NPZ_KEYS))
    with pytest.raises(ValueError, match="layout must be one of"):
        TrainConfig(data=path, layout="nhwc")


# ---------------------------------------------------------------------------------------------------------------
# Classes with no training image.


def _with_labels(y_train, num_classes):
    base = data.synthetic(num_train=len(y_train), num_test=2, num_classes=num_classes)
    return dataclasses.replace(base, y_train=np.asarray(y_train, np.int32))


def _warnings_of(dataset):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data.warn_empty_classes(dataset)
    assert all(issubclass(warning.category, data.DataWarning) for warning in caught)
    return [str(warning.message) for warning in caught]


def test_classes_with_no_training_image_are_warned_by_name():
    assert _warnings_of(_with_labels([0, 1, 2, 3, 2], 4)) == []
    (message,) = _warnings_of(_with_labels([0, 1, 1, 3, 4], 6))
    assert message.startswith("y_train has no image of classes 2, 5 (of 6 classes, 0..5): the model never sees")
    assert "start at 1" not in message
    (message,) = _warnings_of(_with_labels([0, 100], 101))
    assert message.startswith("y_train has no image of classes 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... (99 classes)")


def test_labels_that_start_at_1_are_named_as_the_likely_cause(tmp_path):
    rng = np.random.default_rng(8)
    arrays = _valid_arrays(rng)
    arrays["y_train"], arrays["y_test"] = arrays["y_train"] + 1, arrays["y_test"] + 1  # 1..4
    loaded = data.load_npz(_write(tmp_path / "one_based.npz", **arrays))
    assert loaded.num_classes == 5
    (message,) = _warnings_of(loaded)
    assert message.startswith("y_train has no image of class 0 (of 5 classes, 0..4): the model never sees it")
    assert "the labels start at 1: labels are class indices 0..K-1" in message
    assert "subtract 1 from y_train and y_test" in message
