"""Tests for jaxconv._batching: the conv under vmap (its phi budget), shard_map and sharded jit.

Multi-device behaviour runs in a subprocess on 4 CPU devices (``XLA_FLAGS`` must
be set before jax is imported), which prints JSON that the tests read.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _references import assert_close, random_array

import jaxconv

# --- vmap: the budget counts every vmapped call's phi --------------------------------------------


def _temp_mib(fn, *args):
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes / 2**20


def _vag(conv):
    return jax.value_and_grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1))


def test_vmap_over_images_keeps_the_budget():
    """Equinox-style: each call sees one image. Before the rule: 432 MiB of XLA temp against 32 on the batch."""
    rng = np.random.default_rng(0)
    x, w = random_array(rng, (64, 64, 32, 32)), random_array(rng, (64, 64, 3, 3))
    per_image = lambda x, w: jaxconv.conv2d(x[None], w, padding=1)[0]
    vmapped = lambda x, w: jax.vmap(per_image, (0, None))(x, w)
    batched = lambda x, w: jaxconv.conv2d(x, w, padding=1)
    for transform in (lambda f: f, _vag):
        vmapped_mib, batched_mib = _temp_mib(transform(vmapped), x, w), _temp_mib(transform(batched), x, w)
        assert vmapped_mib <= 2 * batched_mib, (vmapped_mib, batched_mib)


def test_vmap_chunks_match_and_compose_with_grad():
    rng = np.random.default_rng(1)
    x, w = random_array(rng, (6, 1, 3, 7, 7)), random_array(rng, (4, 3, 3, 3))
    one_chunk = lambda x, w: jaxconv.conv2d(x, w, padding=1, max_cols_bytes=None)
    two_images = lambda x, w: jaxconv.conv2d(x, w, padding=1, max_cols_bytes=2 * 49 * 27 * 4)
    loss = lambda conv: lambda w: jnp.sum(jax.vmap(conv, (0, None))(x, w) ** 2)
    for conv in (one_chunk, two_images):
        assert_close(jax.vmap(conv, (0, None))(x, w), jax.vmap(one_chunk, (0, None))(x, w))
        assert_close(jax.grad(loss(conv))(w), jax.grad(loss(one_chunk))(w))
    # The vmapped axis joins the batch, which the budget splits into chunks: one loop in the compiled program.
    vmapped = jax.jit(lambda x, w: jax.vmap(two_images, (0, None))(x, w)).lower(x, w).compile().as_text()
    assert " while(" in vmapped
    # Per-example weights are batched too: each call keeps its own filters.
    ws = random_array(rng, (6, 4, 3, 3, 3))
    expected = jnp.stack([one_chunk(xi, wi) for xi, wi in zip(x, ws)])
    assert_close(jax.vmap(two_images)(x, ws), expected)


def test_budget_rule_keeps_higher_derivatives():
    """The rule is a custom_vmap inside a custom_jvp: grad of grad and jax.hessian still work."""
    rng = np.random.default_rng(2)
    x, w = random_array(rng, (3, 2, 6, 6)), random_array(rng, (2, 2, 3, 3))
    f = lambda conv: lambda w: jnp.sum(jnp.tanh(conv(x, w, padding=1)))
    ours = f(lambda *a, **k: jaxconv.conv2d(*a, **k, max_cols_bytes=1))
    ref = f(lambda *a, **k: jaxconv.lax_conv(*a, **k, precision="highest"))
    assert_close(jax.hessian(ours)(w), jax.hessian(ref)(w))
    grad_of_grad = lambda g: jax.grad(lambda w: jnp.sum(jax.grad(g)(w) ** 2))(w)
    assert_close(grad_of_grad(ours), grad_of_grad(ref))


# --- 4 CPU devices: sharded jit and shard_map --------------------------------------------------

MULTI_DEVICE = textwrap.dedent(
    """
    import json, os, re, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from jax import lax
    from jax.sharding import NamedSharding, PartitionSpec as P
    sys.path.insert(0, os.getcwd())
    import jaxconv

    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    results = {}

    def rel(a, b):
        return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))

    def collectives(hlo):
        ops = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
        return {op: len(re.findall(rf"\\b{op}(-start)?\\(", hlo)) for op in ops}

    # Sharded jit: x split over 'data', w replicated, the batch chunked (2.25 MiB of phi per image).
    x = jax.random.normal(jax.random.key(0), (64, 64, 16, 16))
    w = jax.random.normal(jax.random.key(1), (64, 64, 3, 3)) * 0.05
    xs, ws = jax.device_put(x, NamedSharding(mesh, P("data"))), jax.device_put(w, NamedSharding(mesh, P()))
    convs = {
        "chunked": lambda x, w: jaxconv.conv2d(x, w, padding=1, max_cols_bytes=4 * 2**20),
        "whole": lambda x, w: jaxconv.conv2d(x, w, padding=1, max_cols_bytes=None),
        "lax": lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1))),
    }
    for name, conv in convs.items():
        f = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))
        hlo = f.lower(xs, ws).compile().as_text()
        (v, (dx, dw)), (v1, (dx1, dw1)) = f(xs, ws), f(x, w)
        results[name] = dict(
            collectives=collectives(hlo), while_loops=len(re.findall(r"\\bwhile\\(", hlo)),
            dx_spec=list(dx.sharding.spec), loss=rel(v, v1), dx=rel(dx, dx1), dw=rel(dw, dw1),
            out=rel(jax.jit(conv)(xs, ws), conv(x, w)),
        )

    # jax.make_mesh's default axes are Explicit: the sharding is part of the types.
    emesh = jax.make_mesh((4,), ("data",))
    xe, we = jax.device_put(x, NamedSharding(emesh, P("data"))), jax.device_put(w, NamedSharding(emesh, P()))
    nhwc = ("NHWC", "HWIO", "NHWC")
    explicit = {
        "explicit-chunked": (convs["chunked"], xe, we),
        "explicit-general-nhwc": (
            lambda x, w: jaxconv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=nhwc),
            jax.device_put(x.transpose(0, 2, 3, 1), NamedSharding(emesh, P("data"))),
            jax.device_put(w.transpose(2, 3, 1, 0), NamedSharding(emesh, P())),
        ),
    }
    for name, (conv, xa, wa) in explicit.items():
        f = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))
        hlo = f.lower(xa, wa).compile().as_text()
        (v, (dx, dw)) = f(xa, wa)
        plain = [jnp.asarray(np.asarray(a)) for a in (xa, wa)]  # unsharded copies, on one device
        (v1, (dx1, dw1)) = jax.value_and_grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1))(*plain)
        out = jax.jit(conv)(xa, wa)
        results[name] = dict(
            collectives=collectives(hlo), out_spec=list(out.sharding.spec), dx_spec=list(dx.sharding.spec),
            dw_spec=list(dw.sharding.spec), dx=rel(dx, dx1), dw=rel(dw, dw1), out=rel(out, conv(*plain)),
        )
    from jaxconv._budget import batch_devices
    results["batch_devices"] = [batch_devices(xe), batch_devices(xs), batch_devices(x)]

    # shard_map with its default check_vma=True: w replicated, x sharded, forward and grad.
    xm = jax.random.normal(jax.random.key(2), (16, 4, 8, 8))
    wm = jax.random.normal(jax.random.key(3), (6, 4, 3, 3))
    ref = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), precision="highest")
    for budget in (None, 1):
        conv = lambda x, w: jaxconv.conv2d(x, w, padding=1, max_cols_bytes=budget)
        outs = []
        for c in (conv, ref):
            loss = lambda x, w: lax.psum(jnp.sum(jnp.sin(c(x, w))), "data")
            fwd = jax.shard_map(c, mesh=mesh, in_specs=(P("data"), P()), out_specs=P("data"))
            grad = jax.shard_map(
                jax.grad(loss, argnums=(0, 1)), mesh=mesh, in_specs=(P("data"), P()), out_specs=(P("data"), P())
            )
            outs.append((jax.jit(fwd)(xm, wm), *jax.jit(grad)(xm, wm)))
            if c is conv:  # the chunks are a loop in what the primitives lower to
                lowered = jax.jit(grad).lower(xm, wm).as_text()
        results[f"shard_map-{budget}"] = dict(
            errors=[rel(a, b) for a, b in zip(*outs)], scan="stablehlo.while" in lowered
        )
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def multi_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run(
        [sys.executable, "-c", MULTI_DEVICE], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["chunked", "whole", "lax"])
def test_sharded_batch_stays_sharded(multi_device, name):
    """No all-gather of x or dL/dout; dx keeps x's sharding; the values are the unsharded run's."""
    result = multi_device[name]
    assert result["collectives"]["all-gather"] == 0, result
    assert result["collectives"]["all-to-all"] == 0, result
    assert result["collectives"]["all-reduce"] >= 1, result  # the loss and dL/dW, summed over devices
    assert result["dx_spec"] == ["data"], result
    for what in ("out", "dx", "dw"):
        assert result[what] < 1e-5, (what, result)
    assert result["loss"] < 1e-3, result  # one sum of 2**20 squares, reduced in another order
    if name == "chunked":
        assert result["while_loops"] >= 1, result  # it did chunk


@pytest.mark.parametrize("budget", ["None", "1"])
def test_shard_map_with_replicated_w(multi_device, budget):
    result = multi_device[f"shard_map-{budget}"]
    assert max(result["errors"]) < 1e-5, result
    assert result["scan"] == (budget == "1"), result


@pytest.mark.parametrize("name", ["explicit-chunked", "explicit-general-nhwc"])
def test_explicit_mesh_axes(multi_device, name):
    """jax.make_mesh's default (Explicit) axes: the conv runs, shards like lax's and moves no image."""
    result = multi_device[name]
    assert result["out_spec"][0] == "data" and result["dx_spec"][0] == "data", result
    assert all(entry is None for entry in result["dw_spec"]), result
    assert result["collectives"]["all-gather"] == 0 and result["collectives"]["all-to-all"] == 0, result
    for what in ("out", "dx", "dw"):
        assert result[what] < 1e-5, (what, result)


def test_batch_devices_reads_the_sharding(multi_device):
    # an Explicit-typed batch split 4 ways, a concrete NamedSharding split 4 ways, a single-device array
    assert multi_device["batch_devices"] == [4, 4, 1]
