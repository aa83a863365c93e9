"""Errors against a reference, and the tolerance that follows the arithmetic a GEMM really uses.

A float32 GEMM at lax's default precision is not float32 arithmetic
everywhere: on NVIDIA GPUs from Ampere on, XLA (and cuDNN, for lax's own conv)
rounds the operands to TensorFloat-32 (10 mantissa bits, like float16); on TPUs
it multiplies in one bfloat16 pass (``HIGH``: three passes, about 16 bits).
Only ``precision=HIGHEST`` (or ``jax.default_matmul_precision("float32")``)
is float32 there. :func:`arithmetic` names what is used and :func:`tolerance`
gives the largest relative error that still passes, so that a correct conv
passes on any backend while a wrong one (a flipped kernel, a missing window,
a 1% scale) still fails.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, cast, overload

import jax
import numpy as np
from jax import lax

from jaxconv._validate import as_dtype

TOLERANCES: dict[str, float] = {
    "float64": 1e-10,
    "float32": 1e-4,
    "float16": 5e-3,
    "bfloat16": 4e-2,
}
"""Largest allowed relative error (max abs error / max abs reference) per dtype, in its own arithmetic."""

ARITHMETIC_TOLERANCES: dict[str, float] = {**TOLERANCES, "tensorfloat32": 5e-3, "bfloat16_3x": 1e-3}
""":data:`TOLERANCES` and the reduced-precision arithmetics of float32 GEMMs: TF32 (the mantissa of
float16, so float16's tolerance) and TPU's three bfloat16 passes."""

GPU_PLATFORMS = ("gpu", "cuda", "rocm")


def precision_level(precision: Any = None) -> lax.Precision:
    """The :class:`jax.lax.Precision` a GEMM runs at: ``precision``, or JAX's default when it is None.

    None means ``jax.config.jax_default_matmul_precision`` (set by
    ``jax.default_matmul_precision``), itself DEFAULT when unset.

    >>> precision_level("highest")
    Precision.HIGHEST
    >>> with jax.default_matmul_precision(None):  # unset: DEFAULT
    ...     precision_level(None)
    Precision.DEFAULT
    >>> with jax.default_matmul_precision("float32"):
    ...     precision_level(None)
    Precision.HIGHEST
    """
    if precision is None:
        precision = jax.config.jax_default_matmul_precision  # type: ignore[attr-defined]  # a dynamic attribute
        if precision is None:
            return lax.Precision.DEFAULT
        try:
            return lax.Precision(precision)
        except ValueError:  # an algorithm name such as "ANY_F8_ANY_F8_F32": no better than DEFAULT
            return lax.Precision.DEFAULT
    if isinstance(precision, lax.Precision):
        return precision
    try:
        return lax.Precision(precision)
    except ValueError:
        raise ValueError(
            f"precision must be None, a jax.lax.Precision or one of 'default', 'high', 'highest', got {precision!r}"
        ) from None


def arithmetic(dtype: Any, precision: Any = None, platform: str = "cpu") -> str:
    """The arithmetic a GEMM on ``dtype`` operands really uses, as a key of :data:`ARITHMETIC_TOLERANCES`.

    >>> arithmetic("float32", "default", "cpu"), arithmetic("float32", "default", "gpu")
    ('float32', 'tensorfloat32')
    >>> arithmetic("float32", "high", "tpu"), arithmetic("float32", "highest", "gpu")
    ('bfloat16_3x', 'float32')
    >>> arithmetic("bfloat16", "default", "gpu")
    'bfloat16'
    """
    name = cast(np.dtype, as_dtype(dtype, "dtype")).name
    if name not in TOLERANCES:
        raise ValueError(f"dtype must be one of {sorted(TOLERANCES)}, got {name}")
    level = precision_level(precision)
    if name != "float32" or level == lax.Precision.HIGHEST:
        return name
    if platform in GPU_PLATFORMS:
        return "tensorfloat32"
    if platform == "tpu":
        return "bfloat16" if level == lax.Precision.DEFAULT else "bfloat16_3x"
    return name


def tolerance(dtype: Any, precision: Any = None, platform: str | None = None) -> float:
    """The largest relative error a correct conv may have on ``platform`` (default: JAX's default backend).

    The relative error is against lax at ``precision=HIGHEST``; see :func:`arithmetic`.

    >>> [tolerance("float32", "default", platform) for platform in ("cpu", "gpu", "tpu")]
    [0.0001, 0.005, 0.04]
    """
    platform = jax.default_backend() if platform is None else platform
    return ARITHMETIC_TOLERANCES[arithmetic(dtype, precision, platform)]


@dataclasses.dataclass(frozen=True)
class Error:
    """Max abs error, and the same divided by the max abs value of the reference."""

    abs: float
    rel: float

    @classmethod
    def of(cls, value: Any, reference: Any) -> Error:
        """Computed in float64.

        >>> Error.of(np.array([1.0, 2.1]), np.array([1.0, 2.0]))
        Error(abs=0.1, rel=0.05)
        """
        value = np.asarray(value, dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        if value.shape != reference.shape:
            raise ValueError(f"shapes differ: {value.shape} vs reference {reference.shape}")
        if value.size == 0:
            return cls(0.0, 0.0)
        error = float(np.max(np.abs(value - reference)))
        scale = float(np.max(np.abs(reference)))
        return cls(error, error / scale if scale > 0 else (0.0 if error == 0 else math.inf))


@overload
def max_rel(errors: dict[str, Error]) -> float: ...
@overload
def max_rel(errors: None) -> None: ...
@overload
def max_rel(errors: dict[str, Error] | None) -> float | None: ...
def max_rel(errors: dict[str, Error] | None) -> float | None:
    """The largest relative error of a set, None for no set."""
    return None if errors is None else max(e.rel for e in errors.values())
