"""jaxconv: convolution as im2col + GEMM with a hand-derived backward pass.

The forward pass lowers the input with im2col, ``phi(I)``, and multiplies by
the flattened filters ``F_f = W.reshape(FN, -1).T``; the backward pass is a
``jax.custom_vjp`` applying ``dL/dF_f = phi(I)^T dL/dO_f`` and
``dL/dphi = dL/dO_f F_f^T``, then col2im. See ``jaxconv._conv`` (and the
README) for the map from the note's equations to the functions the conv calls.
"""

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

__version__ = "0.1.0"

__all__ = [
    "ConvGeometry",
    "ConvSpec",
    "bias_grad",
    "col2im",
    "col2im_t",
    "cols_grad",
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_general_dilated",
    "conv_geometry",
    "default_max_cols_bytes",
    "filter_grad",
    "flatten_filters",
    "forward_gemm",
    "im2col",
    "im2col_t",
    "lax_conv",
    "window_indices",
]
