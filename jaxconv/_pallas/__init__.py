"""Fused Pallas kernels for the note's three GEMMs (im2col and col2im inside the GEMM); see ``fused``."""

from jaxconv._pallas.fused import SUPPORTED_DTYPES as SUPPORTED_DTYPES
from jaxconv._pallas.fused import fused_filter_grad as fused_filter_grad
from jaxconv._pallas.fused import fused_forward as fused_forward
from jaxconv._pallas.fused import fused_input_grad as fused_input_grad
from jaxconv._pallas.fused import unsupported_reason as unsupported_reason
from jaxconv._pallas.indices import phi_offsets as phi_offsets
from jaxconv._pallas.indices import tap_offsets as tap_offsets
from jaxconv._pallas.indices import window_taps as window_taps
from jaxconv._pallas.kernels import Blocks as Blocks
from jaxconv._pallas.kernels import choose_blocks as choose_blocks
