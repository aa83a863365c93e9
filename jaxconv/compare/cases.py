"""The :class:`Case` type: one convolution's shapes and window options, and its ``key=value`` mini-language."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv._api import Padding, conv_spec
from jaxconv._geometry import PADDING_STRINGS, ConvGeometry, conv_geometry, dilate_dim
from jaxconv._validate import as_shape, freeze, ntuple

CASE_KEYS = ("name", "x", "w", "stride", "padding", "dilation", "lhs_dilation", "groups", "bias")
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


def _default_name(
    x: Sequence[int], w: Sequence[int], stride: Any, padding: Any, dilation: Any, groups: int, lhs_dilation: Any
) -> str:
    name = "x".join(map(str, x)) + "*" + "x".join(map(str, w))
    if lhs_dilation != 1:
        name += f"/l{_format_ints(lhs_dilation)}"
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
      lhs_dilation: input dilation, as ``lax.conv_general_dilated`` takes it: an int or
        one per spatial dim. Above 1 the case is a transposed convolution (see
        :attr:`lhs_dilated`), which ``jaxconv.conv`` does not take: it then runs
        through the drop-in ``jaxconv.conv_general_dilated``.

    A transposed conv of stride ``s``, padding ``p`` and output padding ``op``
    (PyTorch's ``conv_transpose``, ``lax.conv_transpose``) is the case with
    ``lhs_dilation=s``, ``stride=1`` and ``padding=(d*(K-1)-p):(d*(K-1)-p+op)``
    per spatial dim, and the filters flipped and in/out swapped
    (:func:`jaxconv.compare.torch_conv.transpose_arguments` maps back).

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
    lhs_dilation: int | tuple[int, ...] = 1

    def __post_init__(self) -> None:
        set_ = lambda field, value: object.__setattr__(self, field, value)
        set_("x", _positive_shape(self.x, "x"))
        set_("w", _positive_shape(self.w, "w"))
        for field in ("stride", "padding", "dilation", "lhs_dilation"):
            set_(field, freeze(getattr(self, field)))
        if isinstance(self.padding, str):
            set_("padding", self.padding.upper())
        if not isinstance(self.with_bias, (bool, np.bool_)):
            raise TypeError(f"with_bias must be a bool, got {self.with_bias!r}")
        set_("with_bias", bool(self.with_bias))
        if not self.name:
            options = (self.stride, self.padding, self.dilation, self.groups, self.lhs_dilation)
            set_("name", _default_name(self.x, self.w, *options))
        if not isinstance(self.name, str) or "=" in self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"case name must be a string without whitespace or '=', got {self.name!r}")
        try:
            self.conv_spec()
        except (ValueError, TypeError) as error:
            raise ValueError(f"case {self.name!r}: {error}") from None

    @classmethod
    def parse(cls, text: str, *, name: str = "") -> Case:
        """Reads a case from ``key=value`` tokens separated by whitespace.

        Keys: ``x`` and ``w`` (required; comma-separated ints), ``stride``,
        ``dilation`` and ``lhs_dilation`` (an int or one per spatial dim), ``padding`` (an int, one
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
        if self.lhs_dilation != 1:
            parts.append(f"lhs_dilation={_format_ints(self.lhs_dilation)}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.with_bias:
            parts.append("bias=1")
        return " ".join(parts)

    @property
    def lhs_dilated(self) -> bool:
        """Whether the input is dilated (a transposed conv): then only :attr:`general_options` apply."""
        return self.lhs_dilation != 1 and set(ntuple(self.lhs_dilation, len(self.x) - 2, "lhs_dilation")) != {1}

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`jaxconv.conv` for this case (which takes no ``lhs_dilation``)."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    @property
    def general_options(self) -> dict[str, Any]:
        """The arguments of ``lax.conv_general_dilated`` (and ``jaxconv.conv_general_dilated``) after ``lhs, rhs``.

        >>> options = Case.parse("x=1,2,5 w=3,2,4 lhs_dilation=2 padding=2:3").general_options
        >>> options["padding"], options["lhs_dilation"], options["window_strides"]
        (((2, 3),), (2,), (1,))
        """
        geometry = self.geometry
        return dict(
            window_strides=geometry.stride,
            padding=geometry.padding,
            lhs_dilation=geometry.lhs_dilation,
            rhs_dilation=geometry.dilation,
            feature_group_count=self.groups,
        )

    def conv_spec(self, dtype: Any = jnp.float32) -> Any:
        """The core's static :class:`jaxconv.ConvSpec`: the same argument checks as ``jaxconv.conv``.

        An input-dilated case is checked as the conv of its dilated input, which
        has the same windows, and gets the geometry with ``lhs_dilation``.
        """
        lhs_dilation = ntuple(self.lhs_dilation, len(self.x) - 2, "lhs_dilation")
        x = (*self.x[:2], *map(dilate_dim, self.x[2:], lhs_dilation))
        b = jax.ShapeDtypeStruct((self.w[0],), dtype) if self.with_bias else None
        spec = conv_spec(jax.ShapeDtypeStruct(x, dtype), jax.ShapeDtypeStruct(self.w, dtype), b, **self.options)
        if not self.lhs_dilated:
            return spec
        geometry = conv_geometry(
            self.x[2:],
            self.w[2:],
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            lhs_dilation=lhs_dilation,
        )
        return dataclasses.replace(spec, geometry=geometry)

    @property
    def geometry(self) -> ConvGeometry:
        """The core's :class:`jaxconv.ConvGeometry`: explicit padding, output and window sizes."""
        return self.conv_spec().geometry

    @property
    def out_shape(self) -> tuple[int, ...]:
        """``(N, FN, *out_spatial)``."""
        return (self.x[0], self.w[0], *self.geometry.out_spatial)

    @property
    def gemm_shape(self) -> tuple[int, int, int, int]:
        """``(groups, M, K, N)`` of the forward GEMM, per group: ``M = N_batch * prod(out)``, ``K = C/G * prod(k)``.

        For an input-dilated case the windows run over the dilated input, holes included, as lax's conv does.
        """
        geometry = self.geometry
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
