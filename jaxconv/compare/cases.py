"""The :class:`Case` type, its ``key=value`` mini-language and the named case sets (:data:`PRESETS`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv._api import Padding, conv_spec
from jaxconv._geometry import PADDING_STRINGS
from jaxconv._validate import as_shape, freeze

CASE_KEYS = ("name", "x", "w", "stride", "padding", "dilation", "groups", "bias")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _positive_shape(value: Any, name: str) -> tuple[int, ...]:
    shape = as_shape(value, name)
    if not shape or min(shape) < 1:
        raise ValueError(f"{name} must be a shape of positive ints, got {value!r}")
    return shape


def _format_ints(value: int | Sequence[int]) -> str:
    return str(value) if isinstance(value, int) else ",".join(map(str, value))


def _format_padding(padding: Padding) -> str:
    if isinstance(padding, (int, str)):
        return str(padding)
    return ",".join(f"{e[0]}:{e[1]}" if isinstance(e, tuple) else str(e) for e in padding)


def _default_name(x: Sequence[int], w: Sequence[int], stride: Any, padding: Any, dilation: Any, groups: int) -> str:
    name = "x".join(map(str, x)) + "*" + "x".join(map(str, w))
    if stride != 1:
        name += f"/s{_format_ints(stride)}"
    if padding != 0:
        name += f"/p{_format_padding(padding)}"
    if dilation != 1:
        name += f"/d{_format_ints(dilation)}"
    if groups != 1:
        name += f"/g{groups}"
    return name


@dataclasses.dataclass(frozen=True)
class Case:
    """One convolution to compare: shapes and window options, checked like :func:`jaxconv.conv` checks them.

    Attributes:
      name: a label without whitespace or ``=``; empty gives one made from the shapes.
      x: input shape ``(N, C, *spatial)``, 1 to 3 spatial dims.
      w: filter shape ``(FN, C / groups, *kernel)``.
      stride, padding, dilation, groups: as in :func:`jaxconv.conv`.
      with_bias: whether the conv has a bias (then dL/db is compared too).

    >>> Case("c", (2, 3, 8, 8), (4, 3, 3, 3), padding=1).spec
    'name=c x=2,3,8,8 w=4,3,3,3 padding=1'
    >>> Case("bad", (2, 3, 8, 8), (4, 2, 3, 3))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: case 'bad': x has C=3 channels (x.shape=(2, 3, 8, 8)) but w expects groups * w.shape[1] = 1 * 2 ...
    """

    name: str
    x: tuple[int, ...]
    w: tuple[int, ...]
    stride: int | tuple[int, ...] = 1
    padding: Padding = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    with_bias: bool = False

    def __post_init__(self) -> None:
        set_ = lambda field, value: object.__setattr__(self, field, value)
        set_("x", _positive_shape(self.x, "x"))
        set_("w", _positive_shape(self.w, "w"))
        for field in ("stride", "padding", "dilation"):
            set_(field, freeze(getattr(self, field)))
        if isinstance(self.padding, str):
            set_("padding", self.padding.upper())
        if not isinstance(self.with_bias, (bool, np.bool_)):
            raise TypeError(f"with_bias must be a bool, got {self.with_bias!r}")
        set_("with_bias", bool(self.with_bias))
        if not self.name:
            set_("name", _default_name(self.x, self.w, self.stride, self.padding, self.dilation, self.groups))
        if not isinstance(self.name, str) or "=" in self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"case name must be a string without whitespace or '=', got {self.name!r}")
        try:
            self.conv_spec()
        except (ValueError, TypeError) as error:
            raise ValueError(f"case {self.name!r}: {error}") from None

    @classmethod
    def parse(cls, text: str, *, name: str = "") -> Case:
        """Reads a case from ``key=value`` tokens separated by whitespace.

        Keys: ``x`` and ``w`` (required; comma-separated ints), ``stride`` and
        ``dilation`` (an int or one per spatial dim), ``padding`` (an int, one
        per spatial dim, ``lo:hi`` pairs such as ``1:2,0:1``, or ``VALID``,
        ``SAME``, ``SAME_LOWER``), ``groups``, ``bias`` (0/1, true/false),
        ``name``. ``Case.parse(case.spec) == case``.

        Args:
          text: the specification.
          name: the name when ``text`` has no ``name=``; empty gives one made from the shapes.

        Returns:
          The case.

        Raises:
          ValueError: naming the token at fault, for malformed or inconsistent specs.

        >>> Case.parse("x=64,64,32,32 w=64,64,3,3 stride=1 padding=1").name
        '64x64x32x32*64x64x3x3/p1'
        >>> Case.parse("x=4,6,12,12 w=6,2,5,5 groups=3 padding=2:3,4:1 bias=1").padding
        ((2, 3), (4, 1))
        >>> Case.parse("x=1,1,5,5 kernel=3")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: unknown key 'kernel' in case spec 'x=1,1,5,5 kernel=3'; keys are name, x, w, stride, ...
        """
        if not isinstance(text, str):
            raise TypeError(f"a case spec must be a string, got {type(text).__name__}")
        fields: dict[str, Any] = {}
        for token in text.split():
            key, sep, value = token.partition("=")
            key = key.lower()
            if not sep or not value:
                raise ValueError(f"expected key=value in case spec {text!r}, got {token!r}")
            if key not in CASE_KEYS:
                raise ValueError(f"unknown key {key!r} in case spec {text!r}; keys are {', '.join(CASE_KEYS)}")
            if key in fields:
                raise ValueError(f"key {key!r} given twice in case spec {text!r}")
            fields[key] = _parse_value(key, value, text)
        missing = [key for key in ("x", "w") if key not in fields]
        if missing:
            raise ValueError(f"case spec {text!r} lacks {' and '.join(missing)} (e.g. 'x=8,3,32,32 w=16,3,3,3')")
        fields.setdefault("name", name)
        fields["with_bias"] = fields.pop("bias", False)
        return cls(**fields)

    @property
    def spec(self) -> str:
        """The case as a string that :meth:`parse` reads back; default options are left out."""
        parts = [f"name={self.name}", f"x={_format_ints(self.x)}", f"w={_format_ints(self.w)}"]
        if self.stride != 1:
            parts.append(f"stride={_format_ints(self.stride)}")
        if self.padding != 0:
            parts.append(f"padding={_format_padding(self.padding)}")
        if self.dilation != 1:
            parts.append(f"dilation={_format_ints(self.dilation)}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.with_bias:
            parts.append("bias=1")
        return " ".join(parts)

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`jaxconv.conv` for this case."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def conv_spec(self, dtype: Any = jnp.float32) -> Any:
        """The core's static :class:`jaxconv.ConvSpec`: the same argument checks as ``jaxconv.conv``."""
        b = jax.ShapeDtypeStruct((self.w[0],), dtype) if self.with_bias else None
        return conv_spec(jax.ShapeDtypeStruct(self.x, dtype), jax.ShapeDtypeStruct(self.w, dtype), b, **self.options)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """``(N, FN, *out_spatial)``."""
        return (self.x[0], self.w[0], *self.conv_spec().geometry.out_spatial)

    @property
    def gemm_shape(self) -> tuple[int, int, int, int]:
        """``(groups, M, K, N)`` of the forward GEMM, per group: ``M = N_batch * prod(out)``, ``K = C/G * prod(k)``."""
        geometry = self.conv_spec().geometry
        return (
            self.groups,
            self.x[0] * geometry.num_windows,
            self.w[1] * geometry.window_size,
            self.w[0] // self.groups,
        )

    @property
    def flops(self) -> int:
        """Forward FLOPs, ``2 * N * FN * prod(out) * C/groups * prod(kernel)`` (multiply and add)."""
        groups, m, k, n = self.gemm_shape
        return 2 * groups * m * k * n


def _parse_ints(value: str, key: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise ValueError(f"{key} must be comma-separated ints in case spec {text!r}, got {value!r}") from None


def _parse_value(key: str, value: str, text: str) -> Any:
    if key == "name":
        return value
    if key == "bias":
        if value.lower() not in _TRUE + _FALSE:
            raise ValueError(f"bias must be 0/1 or true/false in case spec {text!r}, got {value!r}")
        return value.lower() in _TRUE
    if key == "padding":
        if value.upper() in PADDING_STRINGS:
            return value.upper()
        entries: list[Any] = []
        try:
            for entry in value.split(","):
                lo, sep, hi = entry.partition(":")
                ints = _parse_ints(f"{lo},{hi}" if sep else lo, key, text)
                entries.append(ints if sep else ints[0])
        except ValueError as error:
            forms = f"1, 1,2 (one per spatial dim), lo:hi,lo:hi (such as 1:2,0:1) or {'/'.join(PADDING_STRINGS)}"
            raise ValueError(f"{error}; padding takes {forms}") from None
        return entries[0] if len(entries) == 1 and isinstance(entries[0], int) else tuple(entries)
    ints = _parse_ints(value, key, text)
    if key in ("x", "w"):
        return ints
    if key == "groups":
        if len(ints) != 1:
            raise ValueError(f"groups must be one int in case spec {text!r}, got {value!r}")
        return ints[0]
    return ints[0] if len(ints) == 1 else ints


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
PRESETS: dict[str, tuple[Case, ...]] = {
    "cpu-small": tuple(Case.parse(spec, name=name) for name, spec in _CPU_SMALL),
    "cnn": tuple(Case.parse(spec, name=name) for name, spec in _CNN),
    "gpu": tuple(Case.parse(spec, name=name) for name, spec in _GPU),
}
"""Named case sets. ``cpu-small``: tiny cases of every kind, seconds in all (tests, notebooks, ``jaxconv check``).
``cnn``: the CPU benchmark set of ``benchmarks/run.py`` (NCHW f32 CNN layers, one depthwise, one dilated).
``gpu``: the GPU benchmark set (CIFAR and ResNet-50 layers, batch 64 to 128), minutes on a CPU."""


def as_cases(cases: str | Case | Sequence[Case | str]) -> list[Case]:
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
