"""Helpers the notebooks share: the check that prints and asserts a difference, and the figure style."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import ArrayLike

FIGURE_STYLE = {"figure.dpi": 90, "figure.facecolor": "white"}


def check(name: str, got: ArrayLike, want: ArrayLike, tol: float = 1e-12) -> None:
    """Prints max |got - want| and asserts it is at most ``tol``; the shapes must match exactly.

    Args:
      name: what is compared, printed left of the difference.
      got: the value computed.
      want: the reference value.
      tol: the largest absolute difference accepted (0 for an exact match).
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    print(f"{name:<62} max |diff| = {err:.1e}")
    assert err <= tol, (name, err)


def style_figures() -> None:
    """Sets the notebooks' figure style: a compact dpi and a white background (readable in dark themes)."""
    plt.rcParams.update(FIGURE_STYLE)
