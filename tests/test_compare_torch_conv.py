"""Tests of jaxconv.compare.torch_conv: PyTorch's conv and conv_transpose agree with lax at HIGHEST."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxconv.compare import Case, Error
from jaxconv.compare.torch_conv import (
    from_transpose_weight,
    to_transpose_weight,
    torch_functions,
    transpose_arguments,
)

TRANSPOSED = [
    "x=2,4,9 w=3,4,4 lhs_dilation=2 padding=2",  # k=4 s=2 p=1
    "x=2,3,6 w=5,3,8 lhs_dilation=4 padding=5:6",  # k=8 s=4 p=2 op=1
    "x=1,2,3 w=2,2,16 lhs_dilation=8 padding=11",  # k=16 s=8 p=4
    "x=2,4,5,5 w=3,4,3,3 lhs_dilation=2 padding=1:2,1:2 bias=1",  # k=3 s=2 p=1 op=1
    "x=2,4,5,6 w=6,2,3,3 lhs_dilation=3,2 padding=1:2,2:3 dilation=1,2 groups=2",  # grouped, dilated
    "x=1,4,3,4,3 w=2,4,4,4,4 lhs_dilation=2 padding=2",  # 3-d
    "x=2,4,5,5 w=8,1,3,3 lhs_dilation=2 padding=2 groups=4",  # depthwise, channel multiplier 2
]


def test_transpose_weight_round_trips():
    w = np.random.default_rng(0).standard_normal((6, 2, 3, 4))
    assert to_transpose_weight(w, 3).shape == (6, 2, 3, 4)
    assert to_transpose_weight(w, 1).shape == (2, 6, 3, 4)
    for groups in (1, 2, 3, 6):
        np.testing.assert_array_equal(from_transpose_weight(to_transpose_weight(w, groups), groups), w)


def test_transpose_arguments_are_pytorchs():
    case = Case.parse("x=2,4,5,6 w=6,2,3,3 lhs_dilation=3,2 padding=1:2,2:3 dilation=1,2 groups=2")
    assert transpose_arguments(case) == dict(stride=(3, 2), padding=(1, 2), output_padding=(1, 1), dilation=(1, 2))
    with pytest.raises(NotImplementedError, match="stride"):
        transpose_arguments(Case.parse("x=1,1,5 w=1,1,3 lhs_dilation=2 stride=2 padding=2"))
    with pytest.raises(NotImplementedError, match="output_padding 2"):
        transpose_arguments(Case.parse("x=1,1,5 w=1,1,3 lhs_dilation=2 padding=0:2"))
    with pytest.raises(NotImplementedError, match="padding -1"):
        transpose_arguments(Case.parse("x=1,1,5 w=1,1,3 lhs_dilation=2 padding=3"))


def _lax_highest(case, x, w, b, g):
    def conv(x, w, *b):
        out = lax.conv_general_dilated(x, w, **case.general_options, precision=lax.Precision.HIGHEST)
        return out + b[0].reshape((1, -1) + (1,) * (out.ndim - 2)) if b else out

    params = (x, w) + ((b,) if b is not None else ())
    out, vjp = jax.vjp(conv, *map(jnp.asarray, params))
    return [np.asarray(a) for a in (out, *vjp(jnp.asarray(g)))]


@pytest.mark.parametrize("spec", TRANSPOSED)
def test_conv_transpose_values_agree_with_lax_at_highest(spec):
    torch = pytest.importorskip("torch")
    case = Case.parse(spec)
    rng = np.random.default_rng(0)
    x, w, g = (rng.standard_normal(s).astype(np.float32) for s in (case.x, case.w, case.out_shape))
    b = rng.standard_normal(case.w[0]).astype(np.float32) if case.with_bias else None
    *_, outputs = torch_functions(torch, case, [x, w, b, g], np.dtype(np.float32), "cpu")
    ours, reference = outputs(), _lax_highest(case, x, w, b, g)
    assert [a.shape for a in ours] == [r.shape for r in reference]  # dL/dw back in lax's (FN, C/G, *k)
    for name, a, r in zip(("out", "dx", "dw", "db"), ours, reference):
        assert Error.of(a, r).rel <= 1e-5, name


def test_conv_transpose_timed_functions_run():
    torch = pytest.importorskip("torch")
    case = Case.parse(TRANSPOSED[3])
    rng = np.random.default_rng(1)
    x, w, g = (rng.standard_normal(s).astype(np.float32) for s in (case.x, case.w, case.out_shape))
    b = np.zeros(case.w[0], np.float32)
    forward, value_and_grad, _ = torch_functions(torch, case, [x, w, b, g], np.dtype(np.float32), "cpu")
    assert tuple(forward().shape) == case.out_shape
    loss, grads = value_and_grad()
    assert [tuple(t.shape) for t in grads] == [case.x, to_transpose_weight(w, 1).shape, (case.w[0],)]
