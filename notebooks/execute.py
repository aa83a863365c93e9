"""Executes the notebooks' jupytext sources and stores each, with its outputs, as the paired ``.ipynb``.

Usage, from the repository root::

    python notebooks/execute.py          # every notebooks/NN_*.py
    python notebooks/execute.py 01 03    # those whose name starts with 01 or 03

The kernel is this interpreter, under the test suite's strict dtype and rank promotion, run in ``notebooks/``
(so that ``import nbhelpers`` works). Cell ids are numbered, so a rebuild changes only the outputs that changed.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

import jupytext
import nbformat
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parent
SOURCES = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))


def execute(source: pathlib.Path) -> float:
    """Runs ``source`` top to bottom and writes it, executed, beside it as ``.ipynb``; returns the seconds it ran."""
    nb = jupytext.read(source)
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number:02d}"
    start = time.perf_counter()
    resources = {"metadata": {"path": str(NOTEBOOKS_DIR)}}  # the kernel's working directory
    # One stdout output per cell, however the kernel happened to flush it; no timestamps.
    options = {"coalesce_streams": True, "record_timing": False}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources, **options).execute()
    seconds = time.perf_counter() - start
    nbformat.validate(nb)
    jupytext.write(nb, source.with_suffix(".ipynb"))
    return seconds


def main(prefixes: list[str]) -> None:
    sources = [source for source in SOURCES if not prefixes or source.name.startswith(tuple(prefixes))]
    if not sources:
        sys.exit(f"no notebook source matches {prefixes}; known: {', '.join(source.stem for source in SOURCES)}")
    with tempfile.TemporaryDirectory() as jupyter_path:
        write_kernel_spec(pathlib.Path(jupyter_path) / "kernels" / "python3")  # argv[0] is sys.executable
        os.environ.update(
            JUPYTER_PATH=jupyter_path, JAX_NUMPY_DTYPE_PROMOTION="strict", JAX_NUMPY_RANK_PROMOTION="raise"
        )
        for source in sources:
            seconds = execute(source)
            print(f"{source.with_suffix('.ipynb').name}: executed in {seconds:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
