"""Image classification data for ``jaxconv train``: sklearn's digits, or the user's ``.npz``.

Both loaders return a :class:`Dataset` of float32 NCHW images, normalised per
channel with the mean and standard deviation of the training images, and
int32 labels in ``[0, num_classes)``.

* :func:`load_digits`: scikit-learn's bundled 8x8 handwritten digits (1797
  real images shipped inside the package, no download), split into train and
  test by a seed, stratified by class.
* :func:`load_npz`: an ``.npz`` with keys ``x_train, y_train, x_test, y_test``
  (the layout of the common ``mnist.npz``), loaded with ``allow_pickle=False``
  and checked by :func:`from_arrays`: images ``(N, H, W)``, ``(N, C, H, W)`` or
  ``(N, H, W, C)`` (:func:`image_layout`), uint8 (scaled by 1/255) or float;
  labels ``0 .. K-1`` for at most :data:`MAX_CLASSES` classes. Every malformed
  input raises ``ValueError`` naming the key; a class with no training image
  is a :class:`DataWarning` (:func:`warn_empty_classes`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
import zipfile

import numpy as np

from jaxconv._validate import as_int, check_choice
from jaxconv.train.config import LAYOUTS, TrainConfig

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Labels are class indices 0..K-1 and the classifier has K outputs: a stray huge label must not size the model.
MAX_CLASSES = 2**16
_NPY_MAGIC = b"\x93NUMPY"  # how a single array's .npy file starts
IMAGE_CHANNELS = (1, 3, 4)  # grayscale, RGB, RGBA: the axes layout="auto" takes for channels
LAYOUT_NAMES = {"NHW": "(N, H, W)", "NCHW": "channels-first (N, C, H, W)", "NHWC": "channels-last (N, H, W, C)"}


class DataWarning(UserWarning):
    """The data loads, but is probably not what was meant: a class with no training image."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Normalised train and test images ``(N, C, H, W)`` float32, labels ``(N,)`` int32."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str
    layout: str | None = None  # how a file's images were read (a key of LAYOUT_NAMES); None: not from a file

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The per-example shape ``(C, H, W)``."""
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        """One line: how many images, their size and channels, how they were read, how many classes.

        >>> synthetic(num_train=4, num_test=2, image_shape=(3, 5, 6)).describe()
        '4 train / 2 test images of 5x6, 3 channels; 10 classes'
        """
        channels, height, width = self.image_shape
        read_as = f", read as {LAYOUT_NAMES[self.layout]}" if self.layout else ""
        return (
            f"{len(self.x_train)} train / {len(self.x_test)} test images of {height}x{width}, "
            f"{channels} channel{'s' if channels > 1 else ''}{read_as}; {self.num_classes} classes"
        )

    def limit(self, max_train: int | None = None, max_test: int | None = None) -> Dataset:
        """The first ``max_train`` training and ``max_test`` test examples (None keeps all), for quick runs.

        The normalisation is the full data set's; only the number of examples changes.

        >>> data = synthetic(num_train=50, num_test=20)
        >>> small = data.limit(10, 5)
        >>> small.x_train.shape, small.y_test.shape
        ((10, 1, 8, 8), (5,))
        """
        return dataclasses.replace(
            self,
            x_train=self.x_train[:max_train],
            y_train=self.y_train[:max_train],
            x_test=self.x_test[:max_test],
            y_test=self.y_test[:max_test],
        )


def normalize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardises both splits per channel with the training images' mean and std (float32).

    >>> x = np.array([[[[0.0, 2.0]]], [[[4.0, 6.0]]]])  # (N=2, C=1, H=1, W=2)
    >>> train, test = normalize(x, x[:1])
    >>> float(train.mean()), float(train.std())
    (0.0, 1.0)
    """
    axes = (0, *range(2, x_train.ndim))
    mean = x_train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x_train.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), split by ``seed``.

    Args:
      test_fraction: fraction of the images held out for testing, stratified by class.
      seed: the split's random state; the same seed gives the same split.

    Returns:
      A :class:`Dataset` of ``(N, 1, 8, 8)`` images.

    >>> data = load_digits()
    >>> data.x_train.shape, data.x_test.shape, data.num_classes
    ((1437, 1, 8, 8), (360, 1, 8, 8), 10)
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        raise ImportError("the default data set (digits) needs scikit-learn: pip install 'jaxconv[train]'") from error
    digits = sklearn_load_digits()
    images = digits.images[:, None, :, :]  # (1797, 1, 8, 8), values 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    x_train, x_test = normalize(x_train, x_test)
    return Dataset(x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32), 10, "digits")


def image_layout(shape: tuple[int, ...], layout: str = "auto", *, name: str = "x_train") -> str:
    """How images of ``shape`` are read: ``"NHW"`` (one channel), ``"NCHW"`` or ``"NHWC"``.

    ``"auto"`` takes an axis of 1, 3 or 4 (grayscale, RGB, RGBA) for the channels: 4-D images are channels-last
    if only their last axis is one, channels-first otherwise, and refused (``ValueError``) when both axis 1 and
    the last axis are, since they read two ways. ``"NCHW"`` and ``"NHWC"`` read 4-D images so, whatever the shape.

    >>> image_layout((600, 16, 16, 3)), image_layout((64, 3, 32, 32)), image_layout((64, 28, 28))
    ('NHWC', 'NCHW', 'NHW')
    >>> image_layout((10, 3, 8, 3))
    Traceback (most recent call last):
    ValueError: x_train has shape (10, 3, 8, 3), which reads two ways: channels-first (N, C, H, W), 3 channels \
of 8x3, or channels-last (N, H, W, C), 3 channels of 3x8; pass --layout NCHW or --layout NHWC (layout= in Python)
    """
    check_choice(layout, LAYOUTS, "layout")
    if len(shape) == 3:
        return "NHW"
    if layout != "auto":
        return layout
    first, last = shape[1] in IMAGE_CHANNELS, shape[-1] in IMAGE_CHANNELS
    if first and last:
        raise ValueError(
            f"{name} has shape {tuple(shape)}, which reads two ways: {LAYOUT_NAMES['NCHW']}, {shape[1]} channels of "
            f"{shape[2]}x{shape[3]}, or {LAYOUT_NAMES['NHWC']}, {shape[3]} channels of {shape[1]}x{shape[2]}; "
            "pass --layout NCHW or --layout NHWC (layout= in Python)"
        )
    return "NHWC" if last else "NCHW"


def _check_images(name: str, x: np.ndarray) -> np.ndarray:
    """Images as float, as stored (``(N, H, W)`` or 4-D): uint8 scaled to [0, 1], other integers and floats as given."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (N, H, W), (N, C, H, W) or (N, H, W, C), got {x.shape}")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{name} must hold numbers (uint8 or float images), got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no images (shape {x.shape})")
    if 0 in x.shape[1:]:
        raise ValueError(f"{name} images have an empty dimension (shape {x.shape}): channels, height and width >= 1")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    x = x.astype(np.float64 if x.dtype == np.float64 else np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _to_nchw(x: np.ndarray, layout: str) -> np.ndarray:
    """Images of ``layout`` as ``(N, C, H, W)``, the model's layout: transposed once, here."""
    if layout == "NHWC":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x[:, None] if layout == "NHW" else x


def _check_labels(name: str, y: np.ndarray, num_images: int, images_name: str) -> np.ndarray:
    if y.ndim != 1:
        raise ValueError(f"{name} must have shape (N,) (one integer label per image), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.shape[0] != num_images:
        raise ValueError(f"{name} has {y.shape[0]} labels but {images_name} has {num_images} images")
    if int(y.min()) < 0:
        raise ValueError(f"{name} has labels outside [0, num_classes): found min {y.min()}, max {y.max()}")
    if int(y.max()) >= MAX_CLASSES:
        raise ValueError(
            f"{name} has a label of {y.max()}: labels are class indices 0..K-1, and a model of {int(y.max()) + 1} "
            f"classes is refused (at most {MAX_CLASSES})"
        )
    return y


def from_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    layout: str = "auto",
    num_classes: int | None = None,
    name: str = "arrays",
) -> Dataset:
    """Checks a user's images and labels and normalises them: :func:`load_npz` without the file.

    Args:
      x_train, x_test: images ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)``, uint8 (scaled by 1/255) or
        float, both splits uint8 or neither.
      y_train, y_test: integer labels ``(N,)`` in ``[0, num_classes)``.
      layout: ``"auto"``, ``"NCHW"`` or ``"NHWC"``: how 4-D images are read (see :func:`image_layout`);
        ``x_train`` decides, and both splits are read alike.
      num_classes: the number of classes; by default ``max(y_train) + 1``.
      name: what the run calls the data set.

    Returns:
      A :class:`Dataset` of ``(N, C, H, W)`` images, normalised per channel with the training mean and std.

    >>> rng = np.random.default_rng(0)
    >>> rgb = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)  # channels-last
    >>> data = from_arrays(rgb, np.arange(6) % 3, rgb[:2], np.array([0, 2]))
    >>> data.x_train.shape, data.layout
    ((6, 3, 8, 8), 'NHWC')
    """
    x_train, y_train, x_test, y_test = (np.asarray(array) for array in (x_train, y_train, x_test, y_test))
    images = {"x_train": _check_images("x_train", x_train), "x_test": _check_images("x_test", x_test)}
    if (x_train.dtype == np.uint8) != (x_test.dtype == np.uint8):
        raise ValueError(
            f"x_train has dtype {x_train.dtype} but x_test {x_test.dtype}: uint8 images are scaled by 1/255 and "
            "others are not, so both splits must be uint8 or neither"
        )
    read_as = image_layout(x_train.shape, layout)
    if read_as != "NHW":  # x_train decides how 4-D images read, so both splits read alike
        layout = read_as
    nchw = {key: _to_nchw(x, image_layout(x.shape, layout, name=key)) for key, x in images.items()}
    if nchw["x_train"].shape[1:] != nchw["x_test"].shape[1:]:
        raise ValueError(
            f"x_test images have shape {x_test.shape[1:]} but x_train images have shape {x_train.shape[1:]}: "
            "both splits must have the same image shape"
        )
    y_train = _check_labels("y_train", y_train, len(x_train), "x_train")
    y_test = _check_labels("y_test", y_test, len(x_test), "x_test")
    if num_classes is None:
        num_classes = int(y_train.max()) + 1
    else:
        num_classes = as_int(num_classes, "num_classes", minimum=1)
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if int(y.max()) >= num_classes:
            raise ValueError(
                f"{key} has labels outside [0, num_classes) = [0, {num_classes}): found min {y.min()}, max {y.max()}"
            )
    x_train, x_test = normalize(nchw["x_train"], nchw["x_test"])
    return Dataset(x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32), num_classes, name, read_as)


def load_npz(path: str | os.PathLike, *, layout: str = "auto", num_classes: int | None = None) -> Dataset:
    """Loads and checks a user's ``.npz`` with keys ``x_train, y_train, x_test, y_test``.

    Args:
      path: the file, as written by ``np.savez`` (e.g. ``mnist.npz``).
      layout: how 4-D images are read: ``"auto"``, ``"NCHW"`` or ``"NHWC"`` (see :func:`image_layout`).
      num_classes: the number of classes; by default ``max(y_train) + 1``.

    Returns:
      A :class:`Dataset` named after the file.

    Raises:
      ValueError: naming the key: a missing key, an object array, arrays that :func:`from_arrays` refuses.

    >>> import tempfile
    >>> rng = np.random.default_rng(0)
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.npz")
    >>> np.savez(path, x_train=rng.integers(0, 256, (6, 5, 5), dtype=np.uint8), y_train=np.arange(6) % 3,
    ...          x_test=rng.integers(0, 256, (2, 5, 5), dtype=np.uint8), y_test=np.array([0, 2]))
    >>> data = load_npz(path)
    >>> data.x_train.shape, data.num_classes
    ((6, 1, 5, 5), 3)
    >>> np.savez(path, x_train=np.zeros(10), y_train=np.arange(6) % 3, x_test=np.zeros((2, 5, 5)), y_test=[0, 2])
    >>> load_npz(path)
    Traceback (most recent call last):
    ValueError: x_train must have shape (N, H, W), (N, C, H, W) or (N, H, W, C), got (10,)
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such data file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not an .npz archive")
    try:
        with open(path, "rb") as file:
            single_array = file.read(len(_NPY_MAGIC)) == _NPY_MAGIC
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    if single_array:
        raise ValueError(f"{path} holds a single array, not an .npz with keys {', '.join(NPZ_KEYS)}")
    if not zipfile.is_zipfile(path):  # numpy would read other bytes as a pickle, and blame pickling
        raise ValueError(f"{path} is not an .npz archive: not a zip file, the format np.savez writes")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not an .npz archive of arrays (numpy: {error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not an .npz with keys {', '.join(NPZ_KEYS)}")
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise ValueError(
                f"{path} is missing key(s) {', '.join(missing)}: expected {', '.join(NPZ_KEYS)}, "
                f"found {', '.join(archive.files) or 'no arrays'}"
            )
        arrays = {}
        for key in NPZ_KEYS:
            try:
                arrays[key] = archive[key]
            except ValueError as error:  # an object array: it would need pickle
                raise ValueError(f"{key} in {path} cannot be loaded without pickle: {error}") from None

    name = os.path.splitext(os.path.basename(path))[0]
    return from_arrays(*(arrays[key] for key in NPZ_KEYS), layout=layout, num_classes=num_classes, name=name)


def synthetic(
    *,
    num_train: int = 64,
    num_test: int = 32,
    image_shape: tuple[int, ...] = (1, 8, 8),
    num_classes: int = 10,
    seed: int = 0,
) -> Dataset:
    """Random normalised images with random labels: for tests and examples (nothing to learn).

    >>> synthetic(num_train=4, num_test=2, image_shape=(3, 5, 5)).image_shape
    (3, 5, 5)
    """
    rng = np.random.default_rng(seed)
    x_train = rng.standard_normal((num_train, *image_shape))
    x_test = rng.standard_normal((num_test, *image_shape))
    x_train, x_test = normalize(x_train, x_test)
    y_train = rng.integers(0, num_classes, num_train, dtype=np.int32)
    y_test = rng.integers(0, num_classes, num_test, dtype=np.int32)
    return Dataset(x_train, y_train, x_test, y_test, num_classes, "synthetic")


def load_data(config: TrainConfig) -> Dataset:
    """The data set of ``config``: its ``.npz`` or the digits, limited to ``max_train``/``max_test``.

    >>> load_data(TrainConfig(max_train=100, max_test=10)).x_train.shape
    (100, 1, 8, 8)
    """
    data = (
        load_npz(config.data, layout=config.layout)
        if config.data is not None
        else load_digits(test_fraction=config.test_fraction, seed=config.seed)
    )
    return data.limit(config.max_train, config.max_test)


def warn_empty_classes(data: Dataset) -> None:
    """Warns (:class:`DataWarning`) naming the classes with no training image, and labels starting at 1.

    A warning, not an error: a subset of a data set may lack a class (``--max-train`` of a sorted set), and the
    model trains; but it never sees that class, so it learns never to predict it.

    >>> data = dataclasses.replace(synthetic(num_train=4, num_classes=4), y_train=np.array([1, 2, 3, 3]))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_empty_classes(data)
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    y_train has no image of class 0 (of 4 classes, 0..3): ... the labels start at 1: ... subtract 1 ...
    """
    empty = np.flatnonzero(np.bincount(data.y_train, minlength=data.num_classes) == 0)
    if not empty.size:
        return
    them = "them" if empty.size > 1 else "it"
    listed = ", ".join(map(str, empty[:10])) + (f", ... ({empty.size} classes)" if empty.size > 10 else "")
    message = (
        f"y_train has no image of class{'es' if empty.size > 1 else ''} {listed} (of {data.num_classes} classes, "
        f"0..{data.num_classes - 1}): the model never sees {them}, so it learns never to predict {them}"
    )
    if empty[0] == 0 and int(data.y_train.min()) == 1:
        message += (
            "; the labels start at 1: labels are class indices 0..K-1, so if yours number the classes from 1, "
            "subtract 1 from y_train and y_test"
        )
    warnings.warn(message, DataWarning, stacklevel=2)
