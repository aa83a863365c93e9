"""Tests of jaxconv.compare.cases: the case mini-language, the shapes it implies, and the presets."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from jax import lax

from jaxconv import lax_conv
from jaxconv.compare import PRESETS, Case, as_cases, select_cases


@pytest.mark.parametrize(
    "spec",
    [
        "x=64,64,32,32 w=64,64,3,3 stride=1 padding=1",
        "name=dw x=8,6,12,12 w=6,1,3,3 groups=6 padding=SAME bias=1",
        "x=4,6,12,12 w=6,2,5,5 groups=3 dilation=2,1 padding=2:3,4:1 stride=1,2",
        "x=4,4,32 w=8,4,7 stride=3 padding=valid",
        "x=2,2,6,7,8 w=4,2,3,2,3 padding=1,0,1",
        "x=2,3,9,9 w=4,3,3,3 padding=1,-1:2",
    ],
)
def test_parse_round_trips(spec):
    case = Case.parse(spec)
    assert Case.parse(case.spec) == case
    assert hash(Case.parse(case.spec)) == hash(case)


def test_parse_reads_every_key():
    case = Case.parse("name=a x=4,6,12,12 w=6,2,5,5 stride=2,1 padding=2:3,4 dilation=2 groups=3 bias=true")
    assert case == Case(
        "a", (4, 6, 12, 12), (6, 2, 5, 5), stride=(2, 1), padding=((2, 3), 4), dilation=2, groups=3, with_bias=True
    )
    assert Case.parse("x=1,1,5,5 w=1,1,3,3 padding=same").padding == "SAME"
    assert Case.parse("x=1,1,5,5 w=1,1,3,3", name="given").name == "given"


def test_case_shapes_and_flops():
    case = Case.parse("x=2,3,8,8 w=4,3,3,3 stride=2 padding=1")
    assert case.out_shape == (2, 4, 4, 4)
    # 2 * N * FN * OH * OW * C * FH * FW
    assert case.flops == 2 * 2 * 4 * 4 * 4 * 3 * 3 * 3
    assert case.gemm_shape == (1, 2 * 4 * 4, 3 * 3 * 3, 4)
    grouped = Case.parse("x=1,6,5,5 w=9,2,3,3 groups=3")
    assert grouped.gemm_shape == (3, 9, 2 * 9, 3)
    assert grouped.flops == 2 * 1 * 9 * 3 * 3 * 2 * 3 * 3
    assert lax_conv(jnp.ones(case.x), jnp.ones(case.w), **case.options).shape == case.out_shape


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "lacks x and w"),
        ("x=1,1,5,5", "lacks w"),
        ("x=1,1,5,5 w=1,1,3,3 kernel=3", "unknown key 'kernel'"),
        ("x=1,1,5,5 w=1,1,3,3 stride", "expected key=value"),
        ("x=1,1,5,5 w=1,1,3,3 stride=", "expected key=value"),
        ("x=1,1,5,5 w=1,1,3,3 x=1,1,5,5", "given twice"),
        ("x=1,1,five,5 w=1,1,3,3", "x must be comma-separated ints"),
        ("x=1,1,5,5 w=1,1,3,3 padding=1:2:3", "padding must be comma-separated ints"),
        ("x=1,1,5,5 w=1,1,3,3 bias=maybe", "bias must be 0/1"),
        ("x=1,1,5,5 w=1,1,3,3 groups=1,2", "groups must be one int"),
        ("x=1,4,5,5 w=2,3,3,3", "x has C=4 channels"),
        ("x=1,1,5,5 w=1,1,3", "rank of x"),
        ("x=1,1,5,5 w=1,1,7,7", "larger than the padded input"),
        ("x=1,1,5,5 w=1,1,3,3 stride=0", "stride must be >= 1"),
        ("x=1,1,0,5 w=1,1,3,3", "positive ints"),
        ("x=1,1,5,5 w=1,1,3,3 name=a=b", "name"),
    ],
)
def test_parse_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        Case.parse(spec)


def test_a_bad_padding_lists_the_forms_padding_takes():
    with pytest.raises(ValueError) as error:
        Case.parse("x=2,3,7,7 w=4,3,3,3 padding=foo")
    assert str(error.value) == (
        "padding must be comma-separated ints in case spec 'x=2,3,7,7 w=4,3,3,3 padding=foo', got 'foo'; "
        "padding takes 1, 1,2 (one per spatial dim), lo:hi,lo:hi (such as 1:2,0:1) or VALID/SAME/SAME_LOWER"
    )


def test_case_checks_its_fields():
    # The shape rule is jaxconv._validate's: ints only, never truncated floats.
    with pytest.raises(TypeError, match="x must be an int, got float 5.5"):
        Case("c", (1, 1, 5.5, 5), (1, 1, 3, 3))
    with pytest.raises(TypeError, match="with_bias must be a bool"):
        Case("c", (1, 1, 5, 5), (1, 1, 3, 3), with_bias="yes")
    assert Case("c", [1, 1, 5, 5], [1, 1, 3, 3], stride=[1, 2]).stride == (1, 2)


def test_presets():
    assert {"cpu-small", "cnn"} <= set(PRESETS)
    cnn = {case.name: case for case in PRESETS["cnn"]}
    assert cnn["cifar2"] == Case("cifar2", (64, 64, 32, 32), (64, 64, 3, 3), padding=1)
    assert cnn["cifar_s2"] == Case("cifar_s2", (64, 64, 32, 32), (128, 64, 3, 3), stride=2, padding=1)
    assert {"lenet1", "lenet2", "cifar1", "cifar3", "conv1x1"} < set(cnn)
    assert any(c.groups == c.x[1] > 1 for c in cnn.values()), "a depthwise case"
    assert any(c.dilation != 1 for c in cnn.values()), "a dilated case"
    assert not any(c.with_bias for c in cnn.values())
    assert sum(c.flops for c in PRESETS["cpu-small"]) < 1e8


def test_gpu_preset_is_the_issue_list():
    gpu = {case.name: case for case in PRESETS["gpu"]}
    assert list(gpu) == ["cifar2", "cifar3", "r50_56", "r50_28", "r50_14", "r50_7", "stem", "r50_1x1"]
    assert gpu["stem"] == Case("stem", (128, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    assert gpu["r50_1x1"] == Case("r50_1x1", (128, 256, 56, 56), (64, 256, 1, 1))
    assert gpu["r50_7"].out_shape == (128, 512, 7, 7)
    assert all(c.padding == 1 for n, c in gpu.items() if n not in ("stem", "r50_1x1"))


def test_as_cases_and_select_cases():
    assert as_cases("cnn") == list(PRESETS["cnn"])
    assert as_cases(PRESETS["cnn"][0]) == [PRESETS["cnn"][0]]
    assert [c.name for c in as_cases(["name=a x=1,1,4,4 w=1,1,3,3"])] == ["a"]
    assert select_cases(None, None, None) == list(PRESETS["cpu-small"])
    with pytest.raises(ValueError, match="--only nope: no such case"):
        select_cases(["cnn"], None, ["nope"])


def test_lhs_dilation_is_a_key_and_a_transposed_conv():
    # ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1): lhs_dilation 2, padding (k-1-p, k-1-p+op).
    case = Case.parse("name=t x=2,4,5,5 w=3,4,3,3 lhs_dilation=2 padding=1:2,1:2 bias=1")
    assert case.lhs_dilated and case.lhs_dilation == 2 and Case.parse(case.spec) == case
    assert "lhs_dilation=2" in case.spec and "/l2" in Case.parse("x=2,4,5,5 w=3,4,3,3 lhs_dilation=2").name
    assert case.out_shape == (2, 3, 10, 10)
    assert case.options == dict(stride=1, padding=((1, 2), (1, 2)), dilation=1, groups=1)
    assert case.general_options == dict(
        window_strides=(1, 1), padding=((1, 2), (1, 2)), lhs_dilation=(2, 2), rhs_dilation=(1, 1), feature_group_count=1
    )
    x, w = jnp.ones(case.x), jnp.ones(case.w)
    out = lax.conv_general_dilated(x, w, **case.general_options)
    assert out.shape == case.out_shape
    # lax.conv_transpose with the same padding computes the same conv (its kernel is not flipped).
    transposed = lax.conv_transpose(x, w, (2, 2), ((1, 2), (1, 2)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    assert transposed.shape == case.out_shape
    # The GEMM runs over the dilated input's windows, holes included: prod(out) windows of C*prod(k).
    assert case.gemm_shape == (1, 2 * 10 * 10, 4 * 9, 3)
    assert not Case.parse("x=2,4,5,5 w=3,4,3,3 lhs_dilation=1,1").lhs_dilated


@pytest.mark.parametrize(
    "spec, message",
    [
        ("x=1,1,5,5 w=1,1,3,3 lhs_dilation=0", "lhs_dilation must be >= 1"),
        ("x=1,1,5,5 w=1,1,3,3 lhs_dilation=1,2,3", "lhs_dilation must have one entry per spatial dimension"),
        ("x=1,1,2,2 w=1,1,5,5 lhs_dilation=2", "larger than the padded input"),
    ],
)
def test_lhs_dilation_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        Case.parse(spec)


def test_slowpaths_presets():
    for name in ("slowpaths", "slowpaths-gpu"):
        cases = PRESETS[name]
        assert len({c.name for c in cases}) == len(cases)
        transposed = [c for c in cases if c.lhs_dilated]
        assert {len(c.x) - 2 for c in transposed} == {1, 2, 3}
        assert {s for c in transposed for s in c.general_options["lhs_dilation"]} >= {2, 4, 8}
        assert all(set(c.general_options["window_strides"]) == {1} for c in transposed)
        depthwise = [c for c in cases if c.groups == c.x[1] > 1]
        assert any(c.w[0] == 2 * c.x[1] for c in depthwise), "a channel multiplier"
        assert any(c.dilation != 1 for c in depthwise) and any(c.stride != 1 for c in depthwise)
        assert {8, 32} <= {c.groups for c in cases if c.w[1] > 1}
        wavenet = [c for c in cases if len(c.x) == 3 and c.dilation != 1]
        assert {c.w[2] for c in wavenet} == {2, 3} and max(c.dilation for c in wavenet) == 64
        assert all(c.x[1] >= 128 for c in wavenet)
        assert not any(c.with_bias for c in cases)
    # Sized for a 2-core CPU: a few GFLOP in all (the GPU set is far larger).
    assert sum(c.flops for c in PRESETS["slowpaths"]) < 5e9 < sum(c.flops for c in PRESETS["slowpaths-gpu"])
    assert [c.name for c in PRESETS["slowpaths"]] == [c.name for c in PRESETS["slowpaths-gpu"]]
