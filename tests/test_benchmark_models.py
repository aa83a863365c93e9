"""benchmarks/models.py: each model, at a tiny size, has the same loss and gradients on jaxconv's conv as on lax's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("flax")

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "models.py"
spec = importlib.util.spec_from_file_location("jaxconv_benchmark_models", PATH)
models = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = models  # dataclasses look their module up
spec.loader.exec_module(models)

TINY = {
    "resnet18": (lambda conv: models.ResNet(conv, stage_sizes=(1, 1), num_filters=4), (8, 8, 3), None),
    "mobilenet_v2": (
        lambda conv: models.MobileNetV2(conv, stages=((2, 8, 2, 2),), stem=4, head=8),
        (8, 8, 3),
        None,
    ),
    "decoder": (lambda conv: models.Decoder(conv, features=(8, 4)), (4, 4, 8), (16, 16, 3)),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_jaxconv_matches_lax(name):
    build, image, target = TINY[name]
    bench = models.Benchmark(name, build, image, target, torch_build=None)
    x, target = models.inputs(bench, 2)
    params, batch_stats, _ = models.init_state(build(models.CONVS["lax"]), x, models.optax.sgd(0.1))
    results = []
    for conv in (models.CONVS["lax"], models.CONVS["jaxconv"]):
        loss_of = jax.value_and_grad(models.make_loss(build(conv)), has_aux=True)
        results.append(jax.jit(loss_of)(params, batch_stats, x, target))
    (lax_loss, lax_stats), lax_grads = results[0]
    (ours_loss, ours_stats), ours_grads = results[1]
    np.testing.assert_allclose(ours_loss, lax_loss, rtol=1e-5)
    theirs_all, ours_all = jax.tree.leaves((lax_grads, lax_stats)), jax.tree.leaves((ours_grads, ours_stats))
    scale = max(float(np.max(np.abs(leaf))) for leaf in theirs_all)  # some gradients are zero up to rounding
    for ours, theirs in zip(ours_all, theirs_all, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale)
    assert jax.tree.structure(ours_grads) == jax.tree.structure(lax_grads)
