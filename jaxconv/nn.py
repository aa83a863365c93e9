"""Pure functional layers for CNNs built on :func:`jaxconv.conv`.

Every layer is a small frozen dataclass holding only static configuration
(channels, kernel size, stride, padding, backend); it never holds arrays, so
it is hashable and can be a static argument of ``jax.jit``. A layer has two
methods, in the spirit of optax's ``init``/``update`` pairs:

* ``init(key, in_shape) -> (params, out_shape)``: fresh parameters, a dict of
  arrays (empty for layers without parameters), and the per-example output
  shape. Shapes never include the batch dimension.
* ``apply(params, x) -> y`` on a batch ``x`` of shape ``(N, *in_shape)``.

:class:`Sequential` chains layers; its params are a tuple with one dict per
layer, a plain pytree that ``jax.tree``, ``jax.grad`` and optax use directly.
:func:`cnn` builds the small CNN that ``jaxconv train`` trains.

The convolution backend is a static field of :class:`Conv`: ``"im2col"``
calls :func:`jaxconv.conv` (im2col + GEMM with the hand-derived custom VJP),
``"lax"`` calls :func:`jaxconv.lax_conv` (``jax.lax.conv_general_dilated``);
the two have the same signature, so the backend is just which function the
layer calls. Pooling reuses :func:`jaxconv.im2col`, as in Deep Learning from
Scratch: the windows become rows, and each row is reduced per channel.

>>> model = cnn(num_classes=10)
>>> params, out_shape = model.init(jax.random.key(0), (1, 8, 8))
>>> out_shape
(10,)
>>> model.apply(params, jnp.zeros((5, 1, 8, 8))).shape
(5, 10)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal, Protocol

import jax
import jax.numpy as jnp
from jax import lax

from jaxconv._api import conv, lax_conv
from jaxconv._geometry import conv_geometry
from jaxconv._im2col import im2col
from jaxconv._validate import as_int, check_choice, freeze, ntuple

Params = Any  # a pytree of arrays: a dict for one layer, a tuple of dicts for Sequential
Shape = tuple[int, ...]
Backend = Literal["im2col", "lax"]
Init = Literal["he", "glorot"]

BACKENDS: tuple[str, ...] = ("im2col", "lax")
INITS: tuple[str, ...] = ("he", "glorot")

_CONV_FUNCTIONS: dict[str, Callable[..., jax.Array]] = {"im2col": conv, "lax": lax_conv}


class Layer(Protocol):
    """What :class:`Sequential` needs from a layer."""

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]: ...

    def apply(self, params: Params, x: jax.Array) -> jax.Array: ...


def _initializer(kind: str, *, in_axis: int, out_axis: int) -> jax.nn.initializers.Initializer:
    """He (normal, for layers followed by ReLU) or Glorot (uniform) initialisation."""
    if kind == "he":
        return jax.nn.initializers.he_normal(in_axis=in_axis, out_axis=out_axis)
    return jax.nn.initializers.glorot_uniform(in_axis=in_axis, out_axis=out_axis)


def _out_shape(layer: Layer, params: Params, in_shape: Shape) -> Shape:
    """The per-example output shape, by abstract evaluation of ``apply`` (no FLOPs)."""
    x = jax.ShapeDtypeStruct((1, *in_shape), jnp.float32)
    return tuple(jax.eval_shape(layer.apply, params, x).shape[1:])


def _spatial_rank(in_shape: Shape, layer: str) -> int:
    if len(in_shape) not in (2, 3, 4):
        raise ValueError(
            f"{layer} expects per-example inputs (C, *spatial) with 1, 2 or 3 spatial dims, got shape {in_shape}"
        )
    return len(in_shape) - 1


@dataclasses.dataclass(frozen=True)
class Conv:
    """Convolution layer: ``w`` of shape ``(out_channels, C / groups, *kernel)``, ``b`` of ``(out_channels,)``.

    Args:
      out_channels: number of filters, FN.
      kernel_size: int or one int per spatial dimension.
      stride, padding, dilation, groups: as in :func:`jaxconv.conv`.
      backend: ``"im2col"`` (:func:`jaxconv.conv`, the custom VJP) or ``"lax"``
        (:func:`jaxconv.lax_conv`).
      use_bias: whether to add a bias.
      init: ``"he"`` (default, for a conv followed by ReLU) or ``"glorot"``.

    >>> layer = Conv(4, 3, padding=1)
    >>> params, out_shape = layer.init(jax.random.key(0), (2, 8, 8))
    >>> params["w"].shape, out_shape
    ((4, 2, 3, 3), (4, 8, 8))
    >>> layer.apply(params, jnp.ones((3, 2, 8, 8))).shape
    (3, 4, 8, 8)
    """

    out_channels: int
    kernel_size: int | tuple[int, ...]
    stride: int | tuple[int, ...] = 1
    padding: Any = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    backend: Backend = "im2col"
    use_bias: bool = True
    init_scheme: Init = "he"

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_channels", as_int(self.out_channels, "out_channels", minimum=1))
        object.__setattr__(self, "groups", as_int(self.groups, "groups", minimum=1))
        check_choice(self.backend, BACKENDS, "backend")
        check_choice(self.init_scheme, INITS, "init_scheme")
        for name in ("kernel_size", "stride", "padding", "dilation"):
            object.__setattr__(self, name, freeze(getattr(self, name)))

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]:
        """Returns ``({"w", "b"}, out_shape)`` for per-example inputs of shape ``(C, *spatial)``."""
        spatial_dims = _spatial_rank(in_shape, "Conv")
        channels = in_shape[0]
        if channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"Conv with groups={self.groups} needs C={channels} and out_channels={self.out_channels} "
                f"divisible by groups (input shape {in_shape})"
            )
        kernel = ntuple(self.kernel_size, spatial_dims, "kernel_size")
        w_shape = (self.out_channels, channels // self.groups, *kernel)
        w = _initializer(self.init_scheme, in_axis=1, out_axis=0)(key, w_shape, jnp.float32)
        params = {"w": w, "b": jnp.zeros((self.out_channels,), jnp.float32)} if self.use_bias else {"w": w}
        return params, _out_shape(self, params, in_shape)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Convolves ``x`` of shape ``(N, C, *spatial)`` with the layer's filters."""
        return _CONV_FUNCTIONS[self.backend](
            x,
            params["w"],
            params.get("b"),
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )


@dataclasses.dataclass(frozen=True)
class Dense:
    """Fully connected layer ``y = x @ w + b``, ``w`` of shape ``(in_features, out_features)``.

    Args:
      out_features: output size.
      use_bias: whether to add a bias.
      init: ``"glorot"`` (default) or ``"he"`` (for a hidden layer followed by ReLU).

    >>> params, out_shape = Dense(3).init(jax.random.key(0), (5,))
    >>> params["w"].shape, out_shape
    ((5, 3), (3,))
    """

    out_features: int
    use_bias: bool = True
    init_scheme: Init = "glorot"

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_features", as_int(self.out_features, "out_features", minimum=1))
        check_choice(self.init_scheme, INITS, "init_scheme")

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]:
        """Returns ``({"w", "b"}, (out_features,))`` for inputs of shape ``(in_features,)``."""
        if len(in_shape) != 1:
            raise ValueError(
                f"Dense expects per-example inputs of shape (features,), got {in_shape}; put Flatten() before it"
            )
        w = _initializer(self.init_scheme, in_axis=0, out_axis=1)(key, (in_shape[0], self.out_features), jnp.float32)
        params = {"w": w, "b": jnp.zeros((self.out_features,), jnp.float32)} if self.use_bias else {"w": w}
        return params, (self.out_features,)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Maps ``(N, in_features)`` to ``(N, out_features)``."""
        y = x @ params["w"]
        return y + params["b"][None, :] if "b" in params else y


@dataclasses.dataclass(frozen=True)
class ReLU:
    """``max(x, 0)``, elementwise; no parameters.

    >>> ReLU().apply({}, jnp.array([-1.0, 2.0]))
    Array([0., 2.], dtype=float32)
    """

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]:
        """No parameters; the shape is unchanged."""
        return {}, tuple(in_shape)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Elementwise ``max(x, 0)``."""
        return jax.nn.relu(x)


@dataclasses.dataclass(frozen=True)
class Flatten:
    """``(N, *shape) -> (N, prod(shape))``; no parameters.

    >>> Flatten().init(jax.random.key(0), (4, 2, 2))[1]
    (16,)
    """

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]:
        """No parameters; the output has ``prod(in_shape)`` features."""
        return {}, (math.prod(in_shape),)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Flattens everything but the batch dimension."""
        return x.reshape(x.shape[0], -1)


def pool(
    x: jax.Array,
    kernel_size: int | tuple[int, ...],
    *,
    stride: int | tuple[int, ...] | None = None,
    padding: Any = 0,
    reduce: Literal["max", "mean"] = "max",
) -> jax.Array:
    """Max or average pooling through im2col: each window becomes a row of phi(x), reduced per channel.

    As in Deep Learning from Scratch's ``Pooling`` layer: ``im2col`` gives
    ``(N, P, C * K)`` with columns ordered ``(C, k)``, so reshaping to
    ``(N, P, C, K)`` puts each channel's window on the last axis. Padding is
    filled with ``-inf`` for max pooling and zeros for average pooling (the
    zeros count in the mean, as PyTorch's default ``count_include_pad``). The
    gradient is JAX's autodiff of the gather and the reduction.

    Args:
      x: ``(N, C, *spatial)``, 1 to 3 spatial dims.
      kernel_size: the window, int or one int per spatial dim.
      stride: defaults to ``kernel_size`` (non-overlapping windows).
      padding: as in :func:`jaxconv.conv`.
      reduce: ``"max"`` or ``"mean"``.

    Returns:
      ``(N, C, *out_spatial)``.

    >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
    >>> pool(x, 2)[0, 0]
    Array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    >>> pool(x, 2, reduce="mean")[0, 0]
    Array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    check_choice(reduce, ("max", "mean"), "reduce")
    x = jnp.asarray(x)
    if x.ndim not in (3, 4, 5):
        raise ValueError(f"x must have shape (N, C, *spatial) with 1, 2 or 3 spatial dims, got shape {x.shape}")
    spatial_dims = x.ndim - 2
    kernel = ntuple(kernel_size, spatial_dims, "kernel_size")
    stride = kernel if stride is None else ntuple(stride, spatial_dims, "stride")
    geometry = conv_geometry(x.shape[2:], kernel, stride=stride, padding=padding)
    fill = -jnp.inf if reduce == "max" else 0.0
    padded = lax.pad(x, jnp.asarray(fill, x.dtype), [(0, 0, 0)] * 2 + [(lo, hi, 0) for lo, hi in geometry.padding])
    cols = im2col(padded, kernel, stride=stride)
    n, num_windows, _ = cols.shape
    channels = x.shape[1]
    windows = cols.reshape(n, num_windows, channels, geometry.window_size)
    pooled = jnp.max(windows, axis=-1) if reduce == "max" else jnp.mean(windows, axis=-1)
    return pooled.transpose(0, 2, 1).reshape(n, channels, *geometry.out_spatial)


@dataclasses.dataclass(frozen=True)
class _Pool:
    """Pooling over windows of ``kernel_size`` (stride defaults to the window), reduced by ``reduce``."""

    reduce: ClassVar[Literal["max", "mean"]]

    kernel_size: int | tuple[int, ...] = 2
    stride: int | tuple[int, ...] | None = None
    padding: Any = 0

    def __post_init__(self) -> None:
        for name in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, name, freeze(getattr(self, name)))

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]:
        """No parameters; the spatial dims shrink by the stride."""
        _spatial_rank(in_shape, type(self).__name__)
        return {}, _out_shape(self, {}, in_shape)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Each channel's ``reduce`` over each window."""
        return pool(x, self.kernel_size, stride=self.stride, padding=self.padding, reduce=self.reduce)


class MaxPool(_Pool):
    """Max pooling over windows of ``kernel_size`` (stride defaults to the window); see :func:`pool`.

    >>> MaxPool(2).init(jax.random.key(0), (3, 8, 8))[1]
    (3, 4, 4)
    """

    reduce = "max"


class AvgPool(_Pool):
    """Average pooling over windows of ``kernel_size`` (stride defaults to the window); see :func:`pool`.

    >>> AvgPool(2).apply({}, jnp.ones((1, 1, 4, 4))).shape
    (1, 1, 2, 2)
    """

    reduce = "mean"


@dataclasses.dataclass(frozen=True)
class Sequential:
    """Layers applied in order; params are a tuple with one entry per layer.

    >>> model = Sequential((Flatten(), Dense(4, init_scheme="he"), ReLU(), Dense(2)))
    >>> params, out_shape = model.init(jax.random.key(0), (1, 3, 3))
    >>> [sorted(p) for p in params], out_shape
    ([[], ['b', 'w'], [], ['b', 'w']], (2,))
    >>> model.apply(params, jnp.ones((7, 1, 3, 3))).shape
    (7, 2)
    """

    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        for i, layer in enumerate(self.layers):
            if not (hasattr(layer, "init") and hasattr(layer, "apply")):
                raise TypeError(f"layers[{i}] must have init and apply methods, got {type(layer).__name__}")

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]:
        """Initialises each layer with its own key, threading the shapes through."""
        shape = tuple(in_shape)
        params = []
        for layer, layer_key in zip(self.layers, jax.random.split(key, max(len(self.layers), 1))):
            layer_params, shape = layer.init(layer_key, shape)
            params.append(layer_params)
        return tuple(params), shape

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Applies the layers in order."""
        if len(params) != len(self.layers):
            raise ValueError(f"params has {len(params)} entries for {len(self.layers)} layers")
        for layer, layer_params in zip(self.layers, params):
            x = layer.apply(layer_params, x)
        return x


def cnn(
    num_classes: int = 10,
    *,
    channels: Sequence[int] = (16, 32),
    kernel_size: int = 3,
    backend: Backend = "im2col",
) -> Sequential:
    """The small CNN of ``jaxconv train``: per stage conv (SAME) -> ReLU -> 2x2 max pool, then a Dense classifier.

    With the defaults on 8x8 digits: ``conv 3x3 16 -> pool -> conv 3x3 32 ->
    pool -> flatten (32 * 2 * 2) -> dense 10``. Convs use He init, the
    classifier Glorot.

    Args:
      num_classes: size of the output (logits).
      channels: output channels of each conv stage; each stage halves H and W.
      kernel_size: conv kernel size.
      backend: ``"im2col"`` (custom VJP) or ``"lax"``, for every conv.

    Returns:
      A :class:`Sequential`.

    >>> [type(layer).__name__ for layer in cnn(channels=(8,)).layers]
    ['Conv', 'ReLU', 'MaxPool', 'Flatten', 'Dense']
    """
    num_classes = as_int(num_classes, "num_classes", minimum=1)
    if not channels:
        raise ValueError("channels must name at least one conv stage")
    layers: list[Layer] = []
    for out_channels in channels:
        layers += [Conv(out_channels, kernel_size, padding="SAME", backend=backend), ReLU(), MaxPool(2)]
    layers += [Flatten(), Dense(num_classes)]
    return Sequential(tuple(layers))
