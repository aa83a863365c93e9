"""Argument checks shared by the core, the lax drop-in and the command-line tools: one rule per kind of value.

Every check runs in Python on static values, before anything is traced, and
raises ``TypeError`` (wrong kind) or ``ValueError`` (right kind, wrong value)
with a message that names the argument and shows what it got.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    kind = type(value).__name__
    if shape is not None:
        return f"{kind} of dtype {getattr(value, 'dtype', '?')} and shape {tuple(shape)}"
    return f"{kind} {value!r}"


def as_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """A Python int from an int-like value: int, NumPy integer, or a 0-d integer array.

    bool, floats (even integral ones such as ``6.0``), strings and None are
    refused, never truncated.

    >>> as_int(np.int64(3), "stride")
    3
    >>> as_int(6.5, "input_shape")
    Traceback (most recent call last):
    TypeError: input_shape must be an int, got float 6.5
    >>> as_int(0, "groups", minimum=1)
    Traceback (most recent call last):
    ValueError: groups must be >= 1, got 0
    """
    if isinstance(value, (bool, np.bool_)) or getattr(value, "dtype", None) == np.bool_:
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    if isinstance(value, (np.ndarray, jax.Array)) and (value.ndim != 0 or not jnp.issubdtype(value.dtype, jnp.integer)):
        raise TypeError(f"{name} must be an int, got {_describe(value)}")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {_describe(value)}") from None
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {result}")
    if not -(2**63) <= result < 2**63:  # XLA's sizes and attributes are 64-bit
        raise ValueError(f"{name} must fit in 64 bits, got {result}")
    return result


def _entries(value: Any) -> tuple[Any, ...] | None:
    """The entries of a sequence or 1-d array, or None for a scalar."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"expected an int or a sequence of ints, got {value!r}")
    if isinstance(value, (np.ndarray, jax.Array)):
        return None if value.ndim == 0 else tuple(value) if value.ndim == 1 else (value,)
    if isinstance(value, Sequence):
        return tuple(value)
    return None


def ntuple(value: Any, n: int, name: str, *, minimum: int | None = 1) -> tuple[int, ...]:
    """An int (repeated) or ``n`` ints (a sequence or 1-d integer array) as a tuple of ``n`` Python ints.

    >>> ntuple(2, 3, "stride")
    (2, 2, 2)
    >>> ntuple(np.array([1, 2]), 2, "dilation")
    (1, 2)
    >>> ntuple((1, 2, 3), 2, "stride")
    Traceback (most recent call last):
    ValueError: stride must have one entry per spatial dimension (2), got 3: (1, 2, 3)
    """
    try:
        entries = _entries(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or {n} ints, got {value!r}") from None
    if entries is None:
        values = (as_int(value, name),) * n
    else:
        if len(entries) != n:
            raise ValueError(f"{name} must have one entry per spatial dimension ({n}), got {len(entries)}: {value!r}")
        values = tuple(as_int(v, name) for v in entries)
    if minimum is not None and any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum} in every dimension, got {values}")
    return values


def as_shape(value: Any, name: str) -> tuple[int, ...]:
    """A shape: a sequence (or 1-d integer array) of non-negative ints.

    >>> as_shape([2, np.int32(4), 6], "input_shape")
    (2, 4, 6)
    >>> as_shape((2, 4, 6.5, 6), "input_shape")
    Traceback (most recent call last):
    TypeError: input_shape must be an int, got float 6.5
    """
    try:
        entries = _entries(value)
    except TypeError:
        entries = None
    if entries is None:
        raise TypeError(f"{name} must be a sequence of ints, got {_describe(value)}")
    return tuple(as_int(v, name, minimum=0) for v in entries)


def check_batch_rank(shape: Sequence[int], name: str) -> None:
    """Raises ValueError unless ``shape`` is a batch ``(N, C, *spatial)`` with 1, 2 or 3 spatial dims.

    >>> check_batch_rank((2, 3, 8), "x")
    >>> check_batch_rank((8, 8), "x")
    Traceback (most recent call last):
    ValueError: x must have shape (N, C, *spatial) with 1, 2 or 3 spatial dims, got shape (8, 8)
    """
    if len(shape) not in (3, 4, 5):
        raise ValueError(f"{name} must have shape (N, C, *spatial) with 1, 2 or 3 spatial dims, got shape {shape}")


def as_array(value: Any, name: str) -> jax.Array:
    """``jnp.asarray(value)``, refusing what is not numeric data with an error that names the argument.

    None, strings, ragged nested lists and object arrays raise ``TypeError``.

    >>> as_array([[1.0, 2.0]], "x").shape
    (1, 2)
    >>> as_array(None, "w")
    Traceback (most recent call last):
    TypeError: w must be an array, got None
    """
    if isinstance(value, jax.Array):
        return value
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array, got {value!r}")
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested sequences
        raise TypeError(
            f"{name} must be a rectangular array of numbers, got a ragged {type(value).__name__}"
        ) from error
    if array.dtype.kind not in "biufc" and array.dtype.name != "bfloat16":
        raise TypeError(f"{name} must be an array of numbers, got dtype {array.dtype} from {type(value).__name__}")
    return jnp.asarray(value)


def as_dtype(value: Any, name: str) -> np.dtype | None:
    """None, or ``value`` as a NumPy dtype (``jnp.bfloat16``, ``"float32"``, ``np.int8`` ...).

    >>> as_dtype("float16", "preferred_element_type")
    dtype('float16')
    >>> as_dtype("float99", "dtype")
    Traceback (most recent call last):
    TypeError: dtype must be a dtype, got 'float99'
    """
    if value is None:
        return None
    try:
        return jnp.dtype(value)
    except TypeError:
        raise TypeError(f"{name} must be a dtype, got {value!r}") from None


def dtype_name(value: Any, name: str) -> str | None:
    """:func:`as_dtype`, as its name: the form a static (hashed, compared) argument must hold.

    NumPy compares a dtype equal to None (``np.dtype("float64") == None`` is
    True), so a dtype inside a jit static argument can make two different
    calls share one compiled function. A string cannot.

    >>> dtype_name(jnp.float64, "preferred_element_type")
    'float64'
    """
    dtype = as_dtype(value, name)
    return None if dtype is None else dtype.name


def check_preferred_element_type(input_dtype: Any, preferred: Any) -> None:
    """lax's rule: same kind (or int -> float), same signedness, never narrower.

    >>> check_preferred_element_type(np.float32, np.int32)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: preferred_element_type int32 is incompatible with input dtype float32: ...
    """
    if preferred is None:
        return
    input_dtype, preferred = np.dtype(input_dtype), np.dtype(preferred)
    int_to_float = jnp.issubdtype(input_dtype, jnp.integer) and jnp.issubdtype(preferred, jnp.floating)
    if not int_to_float:
        # bool is none of these kinds, so lax lets it accumulate in any wider type.
        for kind in (jnp.integer, jnp.floating, jnp.complexfloating):
            if jnp.issubdtype(input_dtype, kind) and not jnp.issubdtype(preferred, kind):
                raise TypeError(
                    f"preferred_element_type {preferred} is incompatible with input dtype {input_dtype}: "
                    "allowed are (integral, integral), (integral, floating), (floating, floating), "
                    "(complex, complex)"
                )
        if jnp.issubdtype(input_dtype, jnp.signedinteger) and not jnp.issubdtype(preferred, jnp.signedinteger):
            raise TypeError(f"preferred_element_type {preferred} must be signed like input dtype {input_dtype}")
    if preferred.itemsize < input_dtype.itemsize:
        raise TypeError(f"preferred_element_type {preferred} must not be narrower than input dtype {input_dtype}")


def as_precision(value: Any, name: str = "precision") -> Any:
    """None, a ``lax.Precision``, an ``(lhs, rhs)`` pair of them, or a ``lax.DotAlgorithm(Preset)``.

    Names are accepted (``"highest"``); the result is hashable (a list pair
    becomes a tuple), so it can sit in a static argument.

    >>> as_precision("highest")
    Precision.HIGHEST
    >>> as_precision(["default", "highest"])
    (Precision.DEFAULT, Precision.HIGHEST)
    >>> as_precision("F32_F32_F32")
    DotAlgorithmPreset.F32_F32_F32
    >>> as_precision("bogus")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: precision must be None, a lax.Precision or its name ('default', ...), a (lhs, rhs) pair ...
    """
    from jax import lax

    if value is None or isinstance(value, (lax.DotAlgorithm, lax.DotAlgorithmPreset)):
        return value
    try:
        if isinstance(value, (list, tuple)) and len(value) == 2 and None not in value:  # lax refuses None in a pair
            return tuple(lax.Precision(v) for v in value)
        if isinstance(value, lax.Precision):
            return value
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return lax.Precision(value)
            return lax.DotAlgorithmPreset[value]  # a preset's name, as lax takes it: "BF16_BF16_F32"
    except (ValueError, KeyError, TypeError):
        pass
    names = tuple(p.name.lower() for p in lax.Precision)
    raise ValueError(
        f"{name} must be None, a lax.Precision or its name {names}, a (lhs, rhs) pair of them, "
        f"or a lax.DotAlgorithm(Preset) or a preset's name; got {value!r}"
    )


def check_choice(value: Any, choices: Sequence[Any], name: str) -> None:
    """Raises ValueError unless ``value`` is one of ``choices``.

    >>> check_choice("max", ("max", "avg"), "pool")
    >>> check_choice("min", ("max", "avg"), "pool")
    Traceback (most recent call last):
    ValueError: pool must be one of ('max', 'avg'), got 'min'
    """
    if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def as_finite(value: Any, name: str, *, minimum: float | None = None, positive: bool = False) -> float:
    """A finite Python float (ints accepted), optionally ``>= minimum`` or ``> 0``.

    >>> as_finite("nan", "min_time")
    Traceback (most recent call last):
    TypeError: min_time must be a number, got str 'nan'
    >>> as_finite(float("nan"), "min_time")
    Traceback (most recent call last):
    ValueError: min_time must be finite, got nan
    """
    if isinstance(value, (bool, np.bool_, str, bytes)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {_describe(value)}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {result}")
    if positive and result <= 0:
        raise ValueError(f"{name} must be > 0, got {result}")
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {result}")
    return result


def freeze(value: Any) -> Any:
    """Lists (nested) as tuples, so that a layer's or a case's options can be hashed.

    >>> freeze([1, [2, 3]])
    (1, (2, 3))
    """
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value
