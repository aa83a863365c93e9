"""PyTorch's conv with autograd, on the same inputs and padding as a :class:`Case`: the third, independent check.

An input-dilated case runs PyTorch's ``conv_transpose1d/2d/3d``: lax's conv of
the input dilated by ``s`` with padding ``(lo, hi)`` and filters ``w`` is the
transposed conv of stride ``s``, padding ``p = d*(K-1) - lo`` and output padding
``op = hi - lo``, with the filters flipped in space and their in/out axes
swapped per group (:func:`transpose_arguments`, :func:`to_transpose_weight`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

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


def transpose_arguments(case: Case) -> dict[str, tuple[int, ...]]:
    """``conv_transposeNd``'s stride, padding, output_padding and dilation for an input-dilated case.

    Raises:
      NotImplementedError: where no transposed conv computes the case (window strides above 1,
        more padding than ``d*(K-1)``, or an output padding PyTorch refuses).

    >>> transpose_arguments(Case.parse("x=1,2,8,8 w=3,2,3,3 lhs_dilation=2 padding=1:2,1:2"))
    {'stride': (2, 2), 'padding': (1, 1), 'output_padding': (1, 1), 'dilation': (1, 1)}
    """
    geometry = case.geometry
    if set(geometry.stride) != {1}:
        raise NotImplementedError(
            f"case {case.name!r}: lhs_dilation with stride {geometry.stride} has no conv_transpose"
        )
    padding, output_padding = [], []
    for (lo, hi), k, d, s in zip(geometry.padding, geometry.kernel_size, geometry.dilation, geometry.lhs_dilation):
        p, op = d * (k - 1) - lo, hi - lo
        if p < 0 or not 0 <= op < max(s, d):
            raise NotImplementedError(
                f"case {case.name!r}: padding ({lo}, {hi}) is conv_transpose padding {p}, output_padding {op}, "
                f"which PyTorch does not take (padding >= 0, 0 <= output_padding < max(stride={s}, dilation={d}))"
            )
        padding.append(p)
        output_padding.append(op)
    return dict(
        stride=geometry.lhs_dilation,
        padding=tuple(padding),
        output_padding=tuple(output_padding),
        dilation=geometry.dilation,
    )


def to_transpose_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """lax's ``(FN, C/G, *k)`` filters as ``conv_transpose``'s ``(C, FN/G, *k)``, flipped in space.

    >>> to_transpose_weight(np.arange(12.0).reshape(4, 1, 3), groups=2)[:, :, 0]
    array([[ 2.,  5.],
           [ 8., 11.]])
    """
    fn, per_group, *kernel = w.shape
    w = w.reshape(groups, fn // groups, per_group, *kernel).swapaxes(1, 2).reshape(groups * per_group, -1, *kernel)
    return np.ascontiguousarray(np.flip(w, axis=tuple(range(2, w.ndim))))


def from_transpose_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """The inverse of :func:`to_transpose_weight`: ``(C, FN/G, *k)`` back to ``(FN, C/G, *k)``."""
    channels, per_group, *kernel = w.shape
    w = np.flip(w, axis=tuple(range(2, w.ndim)))
    return (
        w.reshape(groups, channels // groups, per_group, *kernel)
        .swapaxes(1, 2)
        .reshape(groups * per_group, -1, *kernel)
    )


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

    Raises:
      NotImplementedError: an input-dilated case that no ``conv_transpose`` computes.
    """
    import torch.nn.functional as F

    torch_dtype = getattr(torch, dtype.name)
    transposed = case.lhs_dilated
    if transposed:  # PyTorch holds the filters of a transposed conv flipped and in/out swapped
        transpose = transpose_arguments(case)
        inputs = [inputs[0], to_transpose_weight(cast(np.ndarray, inputs[1]), case.groups), *inputs[2:]]
    tensors: list[Any] = [None if a is None else torch.tensor(a, device=device, dtype=torch_dtype) for a in inputs]
    x, w, b, g = tensors
    if channels_last:
        x, w, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, w, g))
    params = (x, w) + ((b,) if b is not None else ())
    conv_nd = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(case.x) - 2]
    geometry = case.geometry
    pads = geometry.padding
    symmetric = all(lo == hi >= 0 for lo, hi in pads)
    # F.pad wants (last_lo, last_hi, ..., first_lo, first_hi); negative pads crop.
    pad_arg = tuple(p for lo_hi in reversed(pads) for p in lo_hi)

    def torch_conv(x: Any, w: Any, b: Any) -> Any:
        if transposed:
            conv_transpose_nd = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(case.x) - 2]
            return conv_transpose_nd(x, w, b, groups=case.groups, **transpose)
        if not symmetric:
            x = F.pad(x, pad_arg)
        padding = tuple(lo for lo, _ in pads) if symmetric else 0
        return conv_nd(x, w, b, stride=geometry.stride, padding=padding, dilation=geometry.dilation, groups=case.groups)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward() -> Any:
        with torch.no_grad():
            out = torch_conv(x, w, b)
        sync()
        return out

    leaves = tuple(p.detach().requires_grad_(True) for p in params)

    def value_and_grad() -> tuple[Any, Any]:
        out = torch_conv(*leaves, *(() if b is not None else (None,)))
        loss = torch.sum(out * g)
        grads = torch.autograd.grad(loss, leaves)
        sync()
        return loss, grads

    def outputs() -> tuple[np.ndarray, ...]:
        out = torch_conv(*leaves, *(() if b is not None else (None,)))
        grads = torch.autograd.grad(out, leaves, grad_outputs=g)
        out, dx, dw, *db = (t.detach().to("cpu", torch.float64).numpy() for t in (out, *grads))
        return (out, dx, from_transpose_weight(dw, case.groups) if transposed else dw, *db)

    return forward, value_and_grad, outputs
