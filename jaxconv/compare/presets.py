"""The named case sets (:data:`PRESETS`) and how a run picks its cases from them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from jaxconv.compare.cases import Case

_CNN = (
    ("lenet1", "x=128,1,28,28 w=32,1,5,5"),
    ("lenet2", "x=128,32,12,12 w=64,32,5,5"),
    ("cifar1", "x=64,3,32,32 w=64,3,3,3 padding=1"),
    ("cifar2", "x=64,64,32,32 w=64,64,3,3 padding=1"),
    ("cifar3", "x=64,128,16,16 w=128,128,3,3 padding=1"),
    ("cifar_s2", "x=64,64,32,32 w=128,64,3,3 stride=2 padding=1"),
    ("conv1x1", "x=64,256,16,16 w=256,256,1,1"),
    ("depthwise", "x=64,64,32,32 w=64,1,3,3 padding=1 groups=64"),
    ("dilated", "x=64,64,32,32 w=64,64,3,3 padding=2 dilation=2"),
)
_CPU_SMALL = (
    ("small", "x=8,3,16,16 w=8,3,3,3 padding=1 bias=1"),
    ("strided", "x=4,8,15,15 w=16,8,3,3 stride=2 padding=SAME"),
    ("grouped", "x=4,6,12,12 w=6,2,5,5 groups=3 dilation=2 padding=2:3,4:1 bias=1"),
    ("conv1d", "x=4,4,32 w=8,4,7 stride=3"),
    ("conv3d", "x=2,2,6,7,8 w=4,2,3,2,3 padding=1"),
)
_GPU = (
    ("cifar2", "x=64,64,32,32 w=64,64,3,3 padding=1"),
    ("cifar3", "x=64,128,16,16 w=128,128,3,3 padding=1"),
    ("r50_56", "x=128,64,56,56 w=64,64,3,3 padding=1"),
    ("r50_28", "x=128,128,28,28 w=128,128,3,3 padding=1"),
    ("r50_14", "x=128,256,14,14 w=256,256,3,3 padding=1"),
    ("r50_7", "x=128,512,7,7 w=512,512,3,3 padding=1"),
    ("stem", "x=128,3,224,224 w=64,3,7,7 stride=2 padding=3"),
    ("r50_1x1", "x=128,256,56,56 w=64,256,1,1"),
)
# The convolutions lax handles badly. A transposed conv of stride s, kernel K, padding p and output
# padding op is lhs_dilation=s with padding (K-1-p):(K-1-p+op) (see Case); out = (in-1)*s - 2p + K + op.
# CPU sizes: 0.001 to 0.54 GFLOP each (transposed: counting the dilated input's holes, as lax's conv does).
_SLOWPATHS = (
    ("tconv1d_s2", "x=8,128,256 w=64,128,4 lhs_dilation=2 padding=2"),  # K=4 p=1: 256 -> 512
    ("tconv1d_s4", "x=8,64,128 w=32,64,8 lhs_dilation=4 padding=5"),  # K=8 p=2: 128 -> 512
    ("tconv1d_s8", "x=8,64,64 w=32,64,16 lhs_dilation=8 padding=11"),  # K=16 p=4 (HiFi-GAN): 64 -> 512
    ("tconv2d_s2", "x=8,64,16,16 w=32,64,4,4 lhs_dilation=2 padding=2"),  # K=4 p=1 (DCGAN): 16 -> 32
    ("tconv2d_s2op", "x=8,64,16,16 w=32,64,3,3 lhs_dilation=2 padding=1:2,1:2"),  # K=3 p=1 op=1: 16 -> 32
    ("tconv2d_s4", "x=4,32,8,8 w=16,32,8,8 lhs_dilation=4 padding=5"),  # K=8 p=2: 8 -> 32
    ("tconv2d_s8", "x=2,16,8,8 w=8,16,16,16 lhs_dilation=8 padding=11"),  # K=16 p=4 (FCN): 8 -> 64
    ("tconv3d_s2", "x=2,32,8,8,8 w=16,32,4,4,4 lhs_dilation=2 padding=2"),  # K=4 p=1: 8 -> 16
    ("dw3x3", "x=16,128,32,32 w=128,1,3,3 groups=128 padding=1"),
    ("dw3x3_d2", "x=16,128,32,32 w=128,1,3,3 groups=128 padding=2 dilation=2"),
    ("dw3x3_s2", "x=16,128,32,32 w=128,1,3,3 groups=128 padding=1 stride=2"),
    # lax's value_and_grad of these three takes seconds a call on 2 cores (10 s for dw_mult2 at batch 16): small
    # batches keep the preset within minutes.
    ("dw_mult2", "x=2,64,16,16 w=128,1,3,3 groups=64 padding=1"),  # channel multiplier 2
    ("grouped8", "x=2,128,32,32 w=128,16,3,3 groups=8 padding=1"),
    ("grouped32", "x=2,256,16,16 w=256,8,3,3 groups=32 padding=1"),  # ResNeXt's 32 groups
    ("wavenet_d2", "x=4,128,1024 w=128,128,2 dilation=2 padding=2:0"),  # causal: d*(K-1) on the left
    ("wavenet_d64", "x=4,128,1024 w=128,128,2 dilation=64 padding=64:0"),
    ("tcn_k3_d16", "x=4,128,1024 w=128,128,3 dilation=16 padding=32:0"),
)
# The same kinds at GPU sizes (batch 8 to 64, the channels of the models they come from): minutes on a CPU.
_SLOWPATHS_GPU = (
    ("tconv1d_s2", "x=32,512,1024 w=256,512,4 lhs_dilation=2 padding=2"),
    ("tconv1d_s4", "x=32,256,1024 w=128,256,8 lhs_dilation=4 padding=5"),
    ("tconv1d_s8", "x=16,512,256 w=128,512,16 lhs_dilation=8 padding=11"),
    ("tconv2d_s2", "x=64,256,16,16 w=128,256,4,4 lhs_dilation=2 padding=2"),
    ("tconv2d_s2op", "x=64,128,32,32 w=64,128,3,3 lhs_dilation=2 padding=1:2,1:2"),
    ("tconv2d_s4", "x=16,64,32,32 w=32,64,8,8 lhs_dilation=4 padding=5"),
    ("tconv2d_s8", "x=8,64,16,16 w=21,64,16,16 lhs_dilation=8 padding=11"),
    ("tconv3d_s2", "x=8,64,16,16,16 w=32,64,4,4,4 lhs_dilation=2 padding=2"),
    ("dw3x3", "x=64,256,56,56 w=256,1,3,3 groups=256 padding=1"),
    ("dw3x3_d2", "x=64,256,56,56 w=256,1,3,3 groups=256 padding=2 dilation=2"),
    ("dw3x3_s2", "x=64,256,56,56 w=256,1,3,3 groups=256 padding=1 stride=2"),
    ("dw_mult2", "x=64,128,56,56 w=256,1,3,3 groups=128 padding=1"),
    ("grouped8", "x=64,256,28,28 w=256,32,3,3 groups=8 padding=1"),
    ("grouped32", "x=64,256,56,56 w=256,8,3,3 groups=32 padding=1"),
    ("wavenet_d2", "x=16,256,16384 w=256,256,2 dilation=2 padding=2:0"),
    ("wavenet_d64", "x=16,256,16384 w=256,256,2 dilation=64 padding=64:0"),
    ("tcn_k3_d16", "x=16,256,16384 w=256,256,3 dilation=16 padding=32:0"),
)


def _preset(specs: Sequence[tuple[str, str]]) -> tuple[Case, ...]:
    return tuple(Case.parse(spec, name=name) for name, spec in specs)


PRESETS: dict[str, tuple[Case, ...]] = {
    "cpu-small": _preset(_CPU_SMALL),
    "cnn": _preset(_CNN),
    "gpu": _preset(_GPU),
    "slowpaths": _preset(_SLOWPATHS),
    "slowpaths-gpu": _preset(_SLOWPATHS_GPU),
}
"""Named case sets. ``cpu-small``: tiny cases of every kind, seconds in all (tests, notebooks, ``jaxconv check``).
``cnn``: the CPU benchmark set of ``benchmarks/run.py`` (NCHW f32 CNN layers, one depthwise, one dilated).
``gpu``: the GPU benchmark set (CIFAR and ResNet-50 layers, batch 64 to 128), minutes on a CPU.
``slowpaths``: the convolutions XLA handles badly, sized for a CPU: transposed convs (1-3 spatial
dims, strides 2 to 8), depthwise (dilated, strided, channel multiplier 2), 8 and 32 groups, and
WaveNet-like dilated 1-d convs. ``slowpaths-gpu``: the same kinds at GPU sizes."""


def as_cases(cases: str | Case | Iterable[Case | str]) -> list[Case]:
    """A preset name, a case, a spec string, or a sequence of cases and spec strings, as a list of cases.

    >>> [c.name for c in as_cases(["name=a x=1,1,4,4 w=1,1,3,3", PRESETS["cnn"][0]])]
    ['a', 'lenet1']
    """
    if isinstance(cases, Case):
        return [cases]
    if isinstance(cases, str):
        return list(PRESETS[cases]) if cases in PRESETS else [Case.parse(cases)]
    return [case if isinstance(case, Case) else Case.parse(case) for case in cases]


def select_cases(presets: Sequence[str] | None, cases: Sequence[Case] | None, only: Sequence[str] | None) -> list[Case]:
    """The presets' cases then the given ones, filtered by name; ValueError for names that match nothing.

    >>> [c.name for c in select_cases(["cnn"], None, ["cifar2", "conv1x1"])]
    ['cifar2', 'conv1x1']
    """
    selected = [case for preset in presets or () for case in PRESETS[preset]] + list(cases or ())
    if not presets and not cases:
        selected = list(PRESETS["cpu-small"])
    if only:
        unknown = sorted(set(only) - {case.name for case in selected})
        if unknown:
            raise ValueError(f"--only {', '.join(unknown)}: no such case; cases are {[c.name for c in selected]}")
        selected = [case for case in selected if case.name in only]
    return selected
