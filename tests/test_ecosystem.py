"""docs/drop-in.md's flax.linen, flax.nnx and equinox snippets, run, and checked against the same models on lax."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _references import primitive_names
from jax import lax

pytest.importorskip("flax")
pytest.importorskip("equinox")

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "drop-in.md"


@pytest.fixture(scope="module")
def snippets():
    """Executes the section's python blocks in order, in one fresh namespace, as a reader would paste them."""
    text = PAGE.read_text()
    section = text.split("## In flax and equinox", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 3
    namespace = {}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)
    return namespace


def _close(a, b, tol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert np.max(np.abs(x - y)) <= tol * max(1.0, np.max(np.abs(y)))


def test_flax_linen(snippets):
    Net, params, x = snippets["Net"], snippets["params"], snippets["x"]
    reference = Net(conv_general_dilated=lax.conv_general_dilated)
    _close(Net().apply(params, x), reference.apply(params, x))
    _close(snippets["grads"], jax.grad(lambda p: reference.apply(p, x).sum())(params))
    jaxpr = jax.make_jaxpr(jax.grad(lambda p: Net().apply(p, x).sum()))(params)
    assert "conv_general_dilated" not in primitive_names(jaxpr)


def test_flax_nnx(snippets):
    from flax import nnx

    NnxNet, x = snippets["NnxNet"], snippets["x"]
    model, reference = NnxNet(nnx.Rngs(0)), NnxNet(nnx.Rngs(0), conv_general_dilated=lax.conv_general_dilated)
    _close(model(x), reference(x))
    ours = nnx.state(snippets["model_grads"], nnx.Param)
    theirs = nnx.state(nnx.grad(lambda m: m(x).sum())(reference), nnx.Param)
    _close(ours, theirs)


def test_equinox(snippets):
    import equinox as eqx

    conv, images = snippets["conv"], snippets["images"]
    reference = eqx.nn.Conv2d(1, 16, 3, padding=1, key=jax.random.key(0))
    _close(jax.vmap(conv)(images), jax.vmap(reference)(images))
    theirs = eqx.filter_grad(lambda m: jax.vmap(m)(images).sum())(reference)
    _close(snippets["conv_grads"].weight, theirs.weight)
    _close(snippets["conv_grads"].bias, theirs.bias)
    jaxpr = jax.make_jaxpr(lambda w: jax.vmap(eqx.tree_at(lambda m: m.weight, conv, w))(images).sum())(conv.weight)
    assert "conv_general_dilated" not in primitive_names(jaxpr)
    assert jnp.shape(snippets["conv_grads"].weight) == (16, 1, 3, 3)
