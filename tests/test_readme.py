"""Every python block of the README runs as written (the flax and equinox section is checked in test_ecosystem)."""

import pathlib
import re

import jax
import numpy as np
from jax import lax

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
ECOSYSTEM = "## In flax and equinox"


def _blocks():
    text = README.read_text()
    before, after = text.split(ECOSYSTEM, 1)
    outside = before + after.split("\n## ", 1)[1]
    return re.findall(r"```python\n(.*?)```", outside, flags=re.S)


def _run(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    namespace = {}
    exec(compile(block, str(README), "exec"), namespace)
    return namespace


def test_the_readme_has_the_blocks_this_file_checks():
    blocks = _blocks()
    assert len(blocks) == 3
    assert "jaxconv.conv2d(x, w, b, stride=1, padding=1)" in blocks[0] and "fit(TrainConfig(" in blocks[2]
    assert "jaxconv.conv_transpose(x, w, (2, 2), " in blocks[1]


def test_quickstart(tmp_path, monkeypatch):
    ns = _run(_blocks()[0], tmp_path, monkeypatch)
    x, w, b = ns["x"], ns["w"], ns["b"]
    reference = lambda x, w, b: lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)]) + b[None, :, None, None]
    ref_grads = jax.grad(lambda x, w, b: (reference(x, w, b) ** 2).sum(), argnums=(0, 1, 2))(x, w, b)
    for got, want in zip((ns["dx"], ns["dw"], ns["db"]), ref_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    nhwc = lax.conv_general_dilated(
        x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    assert ns["y"].shape == (8, 32, 32, 16)
    np.testing.assert_allclose(ns["y"], nhwc, rtol=1e-5, atol=1e-5)


def test_transposed_convolutions(tmp_path, monkeypatch):
    ns = _run(_blocks()[1], tmp_path, monkeypatch)
    x, w = ns["x"], ns["w"]
    np.testing.assert_allclose(ns["y"], lax.conv_transpose(x, w, (2, 2), "SAME"), rtol=1e-5, atol=1e-5)
    assert ns["y"].shape == ns["z"].shape == (8, 32, 32, 32)
    # PyTorch's conv_transpose2d(stride=2, padding=1) of ones: lax's input-dilated conv with pads k - 1 - 1
    ones_t = lax.conv_general_dilated(
        np.ones((8, 64, 16, 16), np.float32), np.ones((32, 64, 4, 4), np.float32), (1, 1), [(2, 2), (2, 2)],
        lhs_dilation=(2, 2),
    )  # fmt: skip
    np.testing.assert_allclose(ns["z"], ones_t, rtol=1e-5)


def test_training_from_python(tmp_path, monkeypatch):
    ns = _run(_blocks()[2], tmp_path, monkeypatch)
    result = ns["result"]
    assert result.config.epochs == 10 and len(result.history) == 10
    assert result.test_accuracy > 0.9
    assert list(tmp_path.iterdir()) == []  # no out_dir: nothing written
