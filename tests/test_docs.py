"""The documentation site: every public name has an API entry, every python block on its pages runs somewhere,
its pages are all in the nav, its assets are in the repository, and (where MkDocs is installed) it builds strictly."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import yaml
from jax import lax

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _module(name):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


coverage = _module("check_api_coverage")


def _blocks(page, language="python"):
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)


def _config():
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def _nav_pages(nav):
    for entry in nav:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            yield from _nav_pages(value) if isinstance(value, list) else [value]


def test_every_public_name_has_an_api_entry():
    assert coverage.missing() == [], coverage.message(coverage.missing())
    assert coverage.main() == 0


def test_the_coverage_check_names_a_missing_entry(tmp_path):
    for page in (DOCS / "api").glob("*.md"):
        text = page.read_text().replace("::: jaxconv.filter_grad\n", "").replace("::: jaxconv.nn.MaxPool\n", "")
        (tmp_path / page.name).write_text(text)
    assert coverage.missing(tmp_path) == ["jaxconv.filter_grad", "jaxconv.nn.MaxPool"]
    assert "jaxconv.filter_grad, jaxconv.nn.MaxPool" in coverage.message(coverage.missing(tmp_path))


def test_the_coverage_check_covers_the_four_modules():
    names = coverage.public_names()
    for public in ("jaxconv.conv", "jaxconv.nn.Conv", "jaxconv.train.fit", "jaxconv.train.TrainConfig"):
        assert public in names
    assert "jaxconv.compare.compare" in names and len(names) == len(set(names))


def test_every_python_block_of_the_docs_is_run_by_a_test():
    """A new block fails here until a test runs it (test_readme, test_ecosystem, or this file)."""
    counts = {page.relative_to(DOCS).as_posix(): len(_blocks(page)) for page in sorted(DOCS.rglob("*.md"))}
    checked = {"index.md": 1, "drop-in.md": 4, "transposed.md": 1, "training.md": 1}
    assert {page: n for page, n in counts.items() if n} == checked


def test_the_landing_pages_quickstart_is_the_readmes():
    (landing,) = _blocks(DOCS / "index.md")
    assert landing == _blocks(README)[0]  # run by test_readme.test_quickstart


def test_the_drop_in_block(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = _blocks(DOCS / "drop-in.md")[0]
    namespace = {}
    exec(compile(block, str(DOCS / "drop-in.md"), "exec"), namespace)
    x, w = namespace["x"], namespace["w"]
    want = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert namespace["y"].shape == (8, 32, 32, 16)
    np.testing.assert_allclose(namespace["y"], want, rtol=1e-5)
    assert isinstance(namespace["y"], jax.Array)


def test_every_page_is_in_the_nav():
    nav = set(_nav_pages(_config()["nav"]))
    pages = {page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md")}
    assert pages <= nav
    notebooks = {f"notebooks/{path.name}" for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert nav - pages == notebooks  # the executed notebooks, added to the site by docs/hooks.py


def test_the_assets_the_site_loads_are_in_the_repository():
    config = _config()
    for asset in config["extra_javascript"] + config["extra_css"]:
        assert (DOCS / asset).is_file(), asset
    fonts = re.findall(r"url\((fonts/[^)]+\.woff2)\)", (DOCS / "javascripts/katex/katex.min.css").read_text())
    assert fonts and all((DOCS / "javascripts/katex" / font).is_file() for font in fonts)


def test_the_included_files_lose_only_their_title():
    """The benchmark pages include these files from their second line on (pymdownx.snippets ``FILE:2:``)."""
    for page, included in (("benchmarks.md", "benchmarks/README.md"), ("results.md", "benchmarks/RESULTS.md")):
        assert f'--8<-- "{included}:2:"' in (DOCS / page).read_text()
        assert (ROOT / included).read_text().splitlines()[0].startswith("# ")


def test_the_note_is_cited_not_linked():
    for page in [README, *DOCS.rglob("*.md")]:
        assert "shared/" not in page.read_text(), page
    for page in (README, DOCS / "derivation.md", DOCS / "index.md"):
        assert "*BP for convolutional layer* by Jiashu Xu" in page.read_text(), page


@pytest.mark.parametrize(
    ("docstring", "markdown"),
    [
        (":func:`jaxconv.im2col_t` and :mod:`~jaxconv.train.loop`", "`jaxconv.im2col_t` and `loop`"),
        ("Shapes::\n\n    a = 1\n\nAfter.", "Shapes:\n\n```\na = 1\n```\n\nAfter."),
        ("Text.\n\n>>> 1 + 1\n2\n\nMore.", "Text.\n\n\n```pycon\n>>> 1 + 1\n2\n```\n\n\nMore."),
        ("shape (N*OH*OW, C*K), not ``N*P``", r"shape (N\*OH\*OW, C\*K), not ``N*P``"),
        (
            "==  ====\na   b\n==  ====\n1   x y\n==  ====",
            "| a | b |\n|---|---|\n| 1 | x y |",
        ),
    ],
)
def test_docstrings_read_as_markdown(docstring, markdown):
    pytest.importorskip("griffe")
    assert _module("griffe_jaxconv").markdown(docstring) == markdown


def test_the_site_builds_strictly(tmp_path):
    for package in ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_jupyter"):
        pytest.importorskip(package)
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    build = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    problems = [line for line in build.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert build.returncode == 0, "\n".join(problems) or build.stderr[-4000:]
    for page in ("index.html", "derivation/index.html", "api/jaxconv/index.html", "notebooks/01_derivation/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
