"""PyTorch's conv with autograd, on the same inputs and padding as a :class:`Case`: the third, independent check."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import numpy as np

from jaxconv.compare.cases import Case
from jaxconv.compare.errors import GPU_PLATFORMS


def import_torch(torch: bool | Literal["auto"]) -> tuple[Any, str | None]:
    """The torch module (or None) and a note saying why it does not run; ValueError when ``torch=True`` cannot be."""
    if torch is False:
        return None, None
    if torch not in (True, "auto"):
        raise ValueError(f"torch must be True, False or 'auto', got {torch!r}")
    try:
        import torch as torch_module
    except ImportError as error:
        if torch is True:
            raise ValueError(f"torch=True but PyTorch cannot be imported: {error}") from None
        return None, "torch not installed"
    return torch_module, None


def torch_device(torch: Any) -> str:
    """``cuda`` when JAX runs on a GPU and torch has CUDA, else ``cpu``: the same device as JAX's."""
    on_gpu = jax.default_backend() in GPU_PLATFORMS
    return "cuda" if on_gpu and torch.cuda.is_available() else "cpu"


def torch_functions(
    torch: Any,
    case: Case,
    inputs: Sequence[np.ndarray | None],
    dtype: np.dtype,
    device: str,
    *,
    channels_last: bool = False,
) -> tuple[Callable[[], Any], Callable[[], Any], Callable[[], tuple[np.ndarray, ...]]]:
    """Forward, forward + autograd backward, and the (out, *grads) of PyTorch's conv, for the errors.

    Args:
      torch: the torch module.
      case: the convolution.
      inputs: host arrays x, w, b (or None) and the cotangent g, in the NC* / OI* layout.
      dtype: the dtype to run in.
      device: ``cpu`` or ``cuda``.
      channels_last: hold x, w and g in PyTorch's NHWC memory format (2-d convs); shapes and
        results stay NCHW.
    """
    import torch.nn.functional as F

    torch_dtype = getattr(torch, dtype.name)
    x, w, b, g = (None if a is None else torch.tensor(a, device=device, dtype=torch_dtype) for a in inputs)
    if channels_last:
        x, w, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, w, g))
    params = (x, w) + ((b,) if b is not None else ())
    conv_nd = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(case.x) - 2]
    geometry = case.conv_spec().geometry
    pads = geometry.padding
    symmetric = all(lo == hi >= 0 for lo, hi in pads)
    # F.pad wants (last_lo, last_hi, ..., first_lo, first_hi); negative pads crop.
    pad_arg = tuple(p for lo_hi in reversed(pads) for p in lo_hi)

    def torch_conv(x, w, b):
        if not symmetric:
            x = F.pad(x, pad_arg)
        padding = tuple(lo for lo, _ in pads) if symmetric else 0
        return conv_nd(x, w, b, stride=geometry.stride, padding=padding, dilation=geometry.dilation, groups=case.groups)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward():
        with torch.no_grad():
            out = torch_conv(x, w, b)
        sync()
        return out

    leaves = tuple(p.detach().requires_grad_(True) for p in params)

    def value_and_grad():
        out = torch_conv(*leaves, *(() if b is not None else (None,)))
        loss = torch.sum(out * g)
        grads = torch.autograd.grad(loss, leaves)
        sync()
        return loss, grads

    def outputs():
        out = torch_conv(*leaves, *(() if b is not None else (None,)))
        grads = torch.autograd.grad(out, leaves, grad_outputs=g)
        return tuple(t.detach().to("cpu", torch.float64).numpy() for t in (out, *grads))

    return forward, value_and_grad, outputs
