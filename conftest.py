"""Strict JAX for every test: silent dtype or rank promotion is an error. Doctests see jax, jnp, lax and np.

GEMMs and lax's convolutions run at HIGHEST precision unless a test asks for another: the suite's tight
tolerances mean full float32, which GPUs give only when asked (their default is TF32, for lax as for us).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace.update(jax=jax, jnp=jnp, lax=lax, np=np)
