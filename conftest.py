"""Strict JAX for every test: silent dtype or rank promotion is an error. Doctests see jax, jnp, lax and np.

GEMMs and lax's convolutions run at HIGHEST precision unless a test asks for another: the suite's tight
tolerances mean full float32, which GPUs give only when asked (their default is TF32, for lax as for us).
Hypothesis draws the same examples on every run, so a CI failure is one you can rerun here;
``python -m pytest --hypothesis-profile=explore`` draws fresh ones.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import settings
from jax import lax

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")

settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile("repeatable")


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace.update(jax=jax, jnp=jnp, lax=lax, np=np)
