"""The notebooks in notebooks/ run top to bottom, as a reader would run them, and are stored executed.

Each notebook is a jupytext percent-format source ``notebooks/NN_name.py``
paired with its executed ``notebooks/NN_name.ipynb`` (rebuilt by
``python notebooks/execute.py``); the two must hold the same cells. Every
``notebooks/*.ipynb`` is picked up, so a new notebook is tested by being
added. The kernel is this test process's interpreter (a ``python3``
kernelspec written for ``sys.executable`` and put first on ``JUPYTER_PATH``),
with the same strict JAX promotion rules as ``conftest.py``; a failing cell
(including a failing ``assert`` in it) fails the test with the cell's traceback.
"""

from __future__ import annotations

import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")
jupytext = pytest.importorskip("jupytext")

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
SOURCES = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
PAIRING = "ipynb,py:percent"
CELL_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def this_python_kernel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A data dir holding a ``python3`` kernelspec whose argv[0] is ``sys.executable``."""
    root = tmp_path_factory.mktemp("jupyter")
    kernelspec.write_kernel_spec(root / "kernels" / "python3")
    return root


@pytest.fixture
def kernel_env(this_python_kernel: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits the environment: our kernelspec first, JAX as strict as conftest.py makes it.
    monkeypatch.setenv("JUPYTER_PATH", str(this_python_kernel))
    monkeypatch.setenv("JAX_NUMPY_DTYPE_PROMOTION", "strict")
    monkeypatch.setenv("JAX_NUMPY_RANK_PROMOTION", "raise")


def _execute(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    return client.execute()


def _stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )


def test_kernel_is_this_interpreter(kernel_env: None) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    executed = _execute(nb)
    assert pathlib.Path(_stdout(executed).strip()).resolve() == pathlib.Path(sys.executable).resolve()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_top_to_bottom(path: pathlib.Path, kernel_env: None) -> None:
    nb = nbformat.read(path, as_version=4)
    executed = _execute(nb)
    errors = [
        output
        for cell in executed.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors, errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_stored_executed(path: pathlib.Path) -> None:
    """Committed with its outputs, so it reads on GitHub: every code cell ran, in order, without error."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code_cells]
    assert counts == list(range(1, len(code_cells) + 1)), f"{path.name} is not stored executed top to bottom: {counts}"
    assert not any(output.output_type == "error" for cell in code_cells for output in cell.outputs)


def test_every_notebook_has_a_source() -> None:
    assert NOTEBOOKS, "no notebook found"
    assert [path.stem for path in NOTEBOOKS] == [path.stem for path in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_notebook_holds_its_source(source: pathlib.Path) -> None:
    """The stored .ipynb is paired with its .py source and holds the same cells, in order: types and sources."""
    text = jupytext.read(source)
    stored = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    assert text.metadata.get("jupytext", {}).get("formats") == PAIRING, source.name
    assert stored.metadata.get("jupytext", {}).get("formats") == PAIRING, stored.metadata
    rebuild = f"rebuild it with `python notebooks/execute.py {source.stem[:2]}`"
    want = [(cell.cell_type, cell.source) for cell in text.cells]
    got = [(cell.cell_type, cell.source) for cell in stored.cells]
    for number, (got_cell, want_cell) in enumerate(zip(got, want)):
        assert got_cell == want_cell, f"{source.stem}.ipynb differs from {source.name} at cell {number}; {rebuild}"
    assert len(got) == len(want), f"{source.stem}.ipynb has {len(got)} cells, {source.name} {len(want)}; {rebuild}"
