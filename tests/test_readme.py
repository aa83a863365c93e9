"""The README stays a short landing page whose links stay in the repository, and every python block it (and the
docs pages it moved to) shows runs as written (the flax and equinox snippets are checked in test_ecosystem)."""

import pathlib
import re

import jax
import numpy as np
from jax import lax

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TRANSPOSED = ROOT / "docs" / "transposed.md"
TRAINING = ROOT / "docs" / "training.md"
MAX_LINES = 200


def _blocks(page=README):
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def _run(block, page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    namespace = {}
    exec(compile(block, str(page), "exec"), namespace)
    return namespace


def _links(text):
    """The targets of the Markdown links and images of ``text``, code blocks and spans left out."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_readme_and_pages_have_the_blocks_this_file_checks():
    (quickstart,) = _blocks()
    assert "jaxconv.conv2d(x, w, b, stride=1, padding=1)" in quickstart
    (transposed,) = _blocks(TRANSPOSED)
    assert "jaxconv.conv_transpose(x, w, (2, 2), " in transposed
    (training,) = _blocks(TRAINING)
    assert "fit(TrainConfig(" in training


def test_the_readme_is_a_short_landing_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/ (at most {MAX_LINES})"


def test_the_readme_links_only_inside_the_repository():
    links = _links(README.read_text())
    assert links, "the README links into the docs"
    for link in links:
        assert not re.match(r"[a-z][a-z0-9+.-]*:|//", link, flags=re.I), f"{link}: a link outside the repository"
        path = (ROOT / link.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), f"{link}: a path outside the repository"
        assert path.exists(), f"{link}: no such file in the repository"


def test_the_set_up_commands_are_unchanged():
    text = README.read_text()
    main_job = (
        'python3 -m venv /tmp/jaxconv-venv && /tmp/jaxconv-venv/bin/pip install ".[train]" '
        "&& /tmp/jaxconv-venv/bin/jaxconv train"
    )
    tests = (
        'python3 -m venv /tmp/jaxconv-test-venv && /tmp/jaxconv-test-venv/bin/pip install ".[test]" '
        "&& /tmp/jaxconv-test-venv/bin/python -m pytest"
    )
    section = text.split("## Set-up: the two commands", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"```bash\n(.*?)\n```", section, flags=re.S) == [main_job, tests]


def test_quickstart(tmp_path, monkeypatch):
    ns = _run(_blocks()[0], README, tmp_path, monkeypatch)
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
    ns = _run(_blocks(TRANSPOSED)[0], TRANSPOSED, tmp_path, monkeypatch)
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
    ns = _run(_blocks(TRAINING)[0], TRAINING, tmp_path, monkeypatch)
    result = ns["result"]
    assert result.config.epochs == 10 and len(result.history) == 10
    assert result.test_accuracy > 0.9
    assert list(tmp_path.iterdir()) == []  # no out_dir: nothing written
