"""Tests of jaxconv.compare.errors: errors against a reference and the tolerance of the effective precision."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from jaxconv.compare import ARITHMETIC_TOLERANCES, TOLERANCES, Error, arithmetic, tolerance
from jaxconv.compare.errors import precision_level


def test_error_of():
    error = Error.of(jnp.array([1.0, -3.5]), jnp.array([1.5, -4.0]))
    assert error == Error(0.5, 0.125)
    assert Error.of(jnp.zeros(3), jnp.zeros(3)) == Error(0.0, 0.0)
    assert math.isnan(Error.of(jnp.array([jnp.nan]), jnp.array([1.0])).abs)
    assert Error.of(jnp.ones(2), jnp.zeros(2)).rel == math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        Error.of(jnp.ones(2), jnp.ones(3))


@pytest.mark.parametrize(
    "dtype, precision, platform, expected",
    [
        # CPUs compute float32 GEMMs in float32 whatever the precision.
        ("float32", None, "cpu", "float32"),
        ("float32", "default", "cpu", "float32"),
        # NVIDIA Ampere+: TF32 below HIGHEST, like cuDNN's conv for lax.
        ("float32", None, "gpu", "tensorfloat32"),
        ("float32", lax.Precision.HIGH, "cuda", "tensorfloat32"),
        ("float32", "highest", "gpu", "float32"),
        # TPU: one bfloat16 pass, three at HIGH, float32 at HIGHEST.
        ("float32", None, "tpu", "bfloat16"),
        ("float32", "high", "tpu", "bfloat16_3x"),
        ("float32", "highest", "tpu", "float32"),
        # Other dtypes compute in their own arithmetic (accumulating in float32).
        ("bfloat16", None, "gpu", "bfloat16"),
        ("bfloat16", None, "tpu", "bfloat16"),
        ("float16", None, "gpu", "float16"),
        ("float64", None, "gpu", "float64"),
    ],
)
def test_arithmetic_follows_backend_dtype_and_precision(dtype, precision, platform, expected):
    with jax.default_matmul_precision(None):  # precision=None: JAX's own default (the suite sets "highest")
        assert arithmetic(dtype, precision, platform) == expected
        assert tolerance(dtype, precision, platform) == ARITHMETIC_TOLERANCES[expected]


def test_tolerance_values():
    assert tolerance("float32", "default", "cpu") == TOLERANCES["float32"] == 1e-4
    assert tolerance("float32", "default", "gpu") == TOLERANCES["float16"] == 5e-3  # TF32 has float16's mantissa
    assert tolerance("float32", "default", "tpu") == TOLERANCES["bfloat16"]
    assert TOLERANCES["float32"] < tolerance("float32", "high", "tpu") < tolerance("float32", "default", "gpu")
    assert tolerance(jnp.float32) == tolerance("float32", None, jax.default_backend())


def test_default_precision_follows_jax_config():
    # precision=None means jax.default_matmul_precision: "float32" makes the GPU's GEMMs float32 again.
    with jax.default_matmul_precision(None):
        assert precision_level(None) == lax.Precision.DEFAULT
        assert tolerance("float32", None, "gpu") == 5e-3
    with jax.default_matmul_precision("bfloat16"):
        assert tolerance("float32", None, "tpu") == 4e-2
    with jax.default_matmul_precision("float32"):
        assert precision_level(None) == lax.Precision.HIGHEST
        assert tolerance("float32", None, "gpu") == 1e-4
        assert tolerance("float32", "default", "gpu") == 5e-3  # an explicit precision wins
    with jax.default_matmul_precision("tensorfloat32"):
        assert arithmetic("float32", None, "gpu") == "tensorfloat32"


def test_precision_and_dtype_errors():
    with pytest.raises(ValueError, match="precision must be None, a jax.lax.Precision or one of"):
        tolerance("float32", "fast", "cpu")
    with pytest.raises(ValueError, match="dtype must be one of"):
        tolerance("int32", None, "cpu")
    with pytest.raises(TypeError, match="dtype must be a dtype"):
        tolerance("float99", None, "cpu")
