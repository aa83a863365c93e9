"""Whole-model memory: a stack of convs must not keep every layer's phi alive from the forward to the backward.

XLA's CSE would share Eq. 1's rebuild of phi(x) with the forward's phi (``jaxconv._conv._after`` prevents it);
the compiled temp bytes are the compiler's own figure, the same on every run.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxconv


def _stack_train_temp_mib(conv, layers=6):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 16, 32, 32)), jnp.float32)
    ws = [jnp.asarray(rng.normal(size=(16, 16, 3, 3)) * 0.1, jnp.float32) for _ in range(layers)]

    def loss(ws, x):
        for w in ws:
            x = jax.nn.relu(conv(x, w))
        return jnp.sum(x**2)

    compiled = jax.jit(jax.value_and_grad(loss)).lower(ws, x).compile()
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


def test_a_stack_of_convs_does_not_keep_every_layers_phi():
    """Six 3x3x16x16 layers on 4 images: 2.2x lax's temp, where sharing each layer's phi held 4.0x."""
    ours = _stack_train_temp_mib(lambda x, w: jaxconv.conv2d(x, w, padding=1))
    theirs = _stack_train_temp_mib(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1))))
    assert ours <= 2.5 * theirs, (ours, theirs)
