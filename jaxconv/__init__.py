"""jaxconv: convolution as im2col + GEMM with a hand-derived backward pass.

The forward pass lowers the input with im2col, ``phi(I)``, and multiplies by
the flattened filters ``F_f = W.reshape(FN, -1).T``; the backward pass is a
transpose of JAX primitives applying ``dL/dF_f = phi(I)^T dL/dO_f`` and
``dL/dphi = dL/dO_f F_f^T``, then col2im. See ``jaxconv._conv`` (and the
README) for the map from the note's equations to the functions the conv calls.

The public names below load on first use, so that ``import jaxconv`` (and the
``jaxconv`` command, before it takes Ctrl-C in hand) does not import JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy __getattr__ below returns, for type checkers and IDEs
    from jaxconv import compare as compare
    from jaxconv import nn as nn
    from jaxconv import train as train
    from jaxconv._api import conv as conv
    from jaxconv._api import conv1d as conv1d
    from jaxconv._api import conv2d as conv2d
    from jaxconv._api import conv3d as conv3d
    from jaxconv._api import lax_conv as lax_conv
    from jaxconv._budget import default_max_cols_bytes as default_max_cols_bytes
    from jaxconv._conv import ConvSpec as ConvSpec
    from jaxconv._conv import bias_grad as bias_grad
    from jaxconv._conv import cols_grad as cols_grad
    from jaxconv._conv import filter_grad as filter_grad
    from jaxconv._conv import flatten_filters as flatten_filters
    from jaxconv._conv import forward_gemm as forward_gemm
    from jaxconv._geometry import ConvGeometry as ConvGeometry
    from jaxconv._geometry import conv_geometry as conv_geometry
    from jaxconv._im2col import col2im as col2im
    from jaxconv._im2col import col2im_t as col2im_t
    from jaxconv._im2col import im2col as im2col
    from jaxconv._im2col import im2col_t as im2col_t
    from jaxconv._im2col import window_indices as window_indices
    from jaxconv._lax_compat import conv_general_dilated as conv_general_dilated
    from jaxconv._lax_compat import conv_transpose as conv_transpose
    from jaxconv._transpose_api import conv_strategy as conv_strategy
    from jaxconv._transpose_api import conv_transpose1d as conv_transpose1d
    from jaxconv._transpose_api import conv_transpose2d as conv_transpose2d
    from jaxconv._transpose_api import conv_transpose3d as conv_transpose3d

#: Public name -> the module that defines it.
_EXPORTS = {
    "ConvGeometry": "jaxconv._geometry",
    "ConvSpec": "jaxconv._conv",
    "bias_grad": "jaxconv._conv",
    "col2im": "jaxconv._im2col",
    "col2im_t": "jaxconv._im2col",
    "cols_grad": "jaxconv._conv",
    "conv": "jaxconv._api",
    "conv1d": "jaxconv._api",
    "conv2d": "jaxconv._api",
    "conv3d": "jaxconv._api",
    "conv_general_dilated": "jaxconv._lax_compat",
    "conv_strategy": "jaxconv._transpose_api",
    "conv_transpose": "jaxconv._lax_compat",
    "conv_transpose1d": "jaxconv._transpose_api",
    "conv_transpose2d": "jaxconv._transpose_api",
    "conv_transpose3d": "jaxconv._transpose_api",
    "conv_geometry": "jaxconv._geometry",
    "default_max_cols_bytes": "jaxconv._budget",
    "filter_grad": "jaxconv._conv",
    "flatten_filters": "jaxconv._conv",
    "forward_gemm": "jaxconv._conv",
    "im2col": "jaxconv._im2col",
    "im2col_t": "jaxconv._im2col",
    "lax_conv": "jaxconv._api",
    "window_indices": "jaxconv._im2col",
}
_SUBPACKAGES = ("compare", "nn", "train")

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"jaxconv.{name}")
    else:
        raise AttributeError(f"module 'jaxconv' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBPACKAGES))
