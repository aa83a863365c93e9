"""Tests for jaxconv._budget: phi's default budget per platform and the batch chunks that honour it."""

import math

import jax
import pytest

from jaxconv._budget import (
    CPU_MAX_COLS_BYTES,
    batch_chunk,
    cols_bytes_per_image,
    default_max_cols_bytes,
    mesh_size,
    resolve_max_cols_bytes,
)
from jaxconv._geometry import conv_geometry


def batch_chunk_of(geometry, batch, channels, itemsize, max_cols_bytes, **kwargs):
    return batch_chunk(batch, cols_bytes_per_image(geometry, channels, itemsize), max_cols_bytes, **kwargs)


def test_batch_chunk():
    g = conv_geometry((8, 8), (3, 3), padding=1)  # 64 windows of 9 pixels per channel
    per_image = 64 * 2 * 9 * 4
    assert batch_chunk_of(g, 10, 2, 4, None) is None
    assert batch_chunk_of(g, 10, 2, 4, 10 * per_image) is None
    assert batch_chunk_of(g, 10, 2, 4, 3 * per_image + 1) == 2  # 3 fit; 2 divides 10: 5 chunks, no remainder
    assert batch_chunk_of(g, 12, 2, 4, 5 * per_image) == 4  # 5 fit; 4 divides 12
    assert batch_chunk_of(g, 7, 2, 4, 3 * per_image) == 3  # 7 is prime: chunks of 3, 3 and 1 (padded to 3)
    assert batch_chunk_of(g, 13, 2, 4, 6 * per_image) == 5  # 13 is prime: 3 chunks as even as they fit (5, 5, 3)
    for batch in range(2, 40):
        for fit in range(1, batch):
            chunk = batch_chunk_of(g, batch, 2, 4, fit * per_image)
            assert chunk <= fit <= 2 * chunk, (batch, fit, chunk)  # fits, and at least half full
    assert batch_chunk_of(g, 10, 2, 4, 1) == 1  # at least one image per chunk
    with pytest.raises(ValueError, match="max_cols_bytes must be >= 1, got 0"):
        resolve_max_cols_bytes(0)
    with pytest.raises(ValueError, match="max_cols_bytes must be a positive int, None or 'auto'"):
        resolve_max_cols_bytes("big")
    with pytest.raises(TypeError, match="max_cols_bytes must be an int, got float"):
        resolve_max_cols_bytes(1e6)


def test_batch_chunk_multiple_of_the_devices():
    """Chunks a multiple of the device count: each holds the same share of every device's block."""
    for batch in (8, 16, 24, 64):
        for devices in (2, 4, 8):
            if batch % devices:
                continue
            for fit in range(1, batch):
                chunk = batch_chunk(batch, 1, fit, multiple=devices)
                assert chunk is None or (chunk % devices == 0 and batch % chunk == 0), (batch, devices, fit, chunk)
                assert chunk is None or chunk <= max(fit, devices)
    with pytest.raises(ValueError, match="multiple=3 must divide batch=8"):
        batch_chunk(8, 1, 2, multiple=3)


def test_default_max_cols_bytes_per_platform():
    assert default_max_cols_bytes("cpu") == CPU_MAX_COLS_BYTES == 8 * 2**20
    for platform in ("gpu", "cuda", "rocm", "tpu"):  # no such device here: the cap
        assert 256 * 2**20 <= default_max_cols_bytes(platform) <= 2**30
    assert default_max_cols_bytes() == default_max_cols_bytes(jax.default_backend())
    assert resolve_max_cols_bytes("auto") == default_max_cols_bytes()
    assert resolve_max_cols_bytes(None) is None
    with pytest.raises(ValueError, match="platform must be one of"):
        default_max_cols_bytes("metal")
    for platform in (["cpu"], 5):
        with pytest.raises(TypeError, match="platform must be a str"):
            default_max_cols_bytes(platform)


def test_mesh_size():
    assert mesh_size() == jax.device_count()
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    with jax.set_mesh(mesh):
        assert mesh_size() == math.prod(mesh.shape.values()) == 1


def test_default_budget_holds_a_large_layers_gradient_near_lax():
    """Issue 12.9: x (256, 64, 64, 64), w (64, 64, 3, 3): 1,024 MiB of XLA temp against lax's 768 while each
    chunk's output was stacked by the scan and then copied; the README promises at most 1.17x lax. Compiled
    only, never run."""
    import jax.numpy as jnp
    from jax import lax

    import jaxconv

    x = jax.ShapeDtypeStruct((256, 64, 64, 64), jnp.float32)
    w = jax.ShapeDtypeStruct((64, 64, 3, 3), jnp.float32)

    def temp_bytes(conv, loss):
        grad = jax.jit(jax.grad(lambda x, w: loss(conv(x, w)), argnums=(0, 1)))
        return grad.lower(x, w).compile().memory_analysis().temp_size_in_bytes

    for loss in (jnp.sum, lambda out: jnp.sum(out**2)):
        ours = temp_bytes(lambda x, w: jaxconv.conv2d(x, w, padding=1, max_cols_bytes=CPU_MAX_COLS_BYTES), loss)
        theirs = temp_bytes(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1))), loss)
        assert ours <= 1.17 * theirs, (ours / 2**20, theirs / 2**20)
