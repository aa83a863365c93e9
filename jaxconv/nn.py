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
calls :func:`jaxconv.conv` (im2col + GEMM with the hand-derived backward pass),
``"lax"`` calls :func:`jaxconv.lax_conv` (``jax.lax.conv_general_dilated``);
the two have the same signature, so the backend is just which function the
layer calls. Pooling (:func:`pool`, :class:`MaxPool`, :class:`AvgPool`) reuses
:func:`jaxconv.im2col`, as in Deep Learning from Scratch.

Layers check their options when built, ``in_shape`` in ``init`` and ``params``
and ``x`` in ``apply``, raising ``TypeError``/``ValueError`` before anything is traced.

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

import jax
import jax.numpy as jnp

from jaxconv._api import conv, lax_conv
from jaxconv._geometry import Padding, check_windows_fit, conv_geometry
from jaxconv._pool import AvgPool, MaxPool, Params, Shape, check_in_shape, pool, window_options
from jaxconv._validate import as_array, as_int, check_choice, ntuple

__all__ = [
    "BACKENDS", "INITS", "AvgPool", "Backend", "Conv", "Dense", "Flatten", "Init", "Layer", "MaxPool", "Params",
    "ReLU", "Sequential", "Shape", "cnn", "pool",
]  # fmt: skip

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


def _weights(params: Params, layer: str) -> jax.Array:
    """``params["w"]``, refusing params that are not the dict ``init`` returns."""
    if not isinstance(params, Mapping):
        raise TypeError(f"{layer} params must be the dict its init returns, got {type(params).__name__}")
    if "w" not in params:
        raise ValueError(f"{layer} params must hold its weights 'w', got keys {sorted(params)}")
    return as_array(params["w"], f"{layer} params['w']")


@dataclasses.dataclass(frozen=True)
class Conv:
    """Convolution layer: ``w`` of shape ``(out_channels, C / groups, *kernel)``, ``b`` of ``(out_channels,)``.

    Args:
      out_channels: number of filters, FN.
      kernel_size: int or one int per spatial dimension.
      stride, padding, dilation, groups: as in :func:`jaxconv.conv`.
      backend: ``"im2col"`` (:func:`jaxconv.conv`, the note's backward) or ``"lax"``
        (:func:`jaxconv.lax_conv`).
      use_bias: whether to add a bias.
      init_scheme: ``"he"`` (default, for a conv followed by ReLU) or ``"glorot"``.

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
    padding: Padding = 0
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
        options = {name: getattr(self, name) for name in ("kernel_size", "stride", "padding", "dilation")}
        for name, value in window_options("Conv", **options).items():
            object.__setattr__(self, name, value)

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]:
        """Returns ``({"w", "b"}, out_shape)`` for per-example inputs of shape ``(C, *spatial)``."""
        in_shape = check_in_shape(in_shape, "Conv", spatial=True)
        channels, spatial = in_shape[0], in_shape[1:]
        if channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"Conv with groups={self.groups} needs C={channels} and out_channels={self.out_channels} "
                f"divisible by groups (input shape {in_shape})"
            )
        kernel = ntuple(self.kernel_size, len(spatial), "kernel_size")
        options: dict[str, Any] = {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}
        check_windows_fit(conv_geometry(spatial, kernel, **options), what="Conv kernel")
        w_shape = (self.out_channels, channels // self.groups, *kernel)
        w = _initializer(self.init_scheme, in_axis=1, out_axis=0)(key, w_shape, jnp.float32)
        params = {"w": w, "b": jnp.zeros((self.out_channels,), jnp.float32)} if self.use_bias else {"w": w}
        return params, _out_shape(self, params, in_shape)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Convolves ``x`` of shape ``(N, C, *spatial)`` with the layer's filters."""
        return _CONV_FUNCTIONS[self.backend](
            x,
            _weights(params, "Conv"),
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
      init_scheme: ``"glorot"`` (default) or ``"he"`` (for a hidden layer followed by ReLU).

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
        in_shape = check_in_shape(in_shape, "Dense")
        if len(in_shape) != 1:
            raise ValueError(
                f"Dense expects per-example inputs of shape (features,), got {in_shape}; put Flatten() before it"
            )
        w = _initializer(self.init_scheme, in_axis=0, out_axis=1)(key, (in_shape[0], self.out_features), jnp.float32)
        params = {"w": w, "b": jnp.zeros((self.out_features,), jnp.float32)} if self.use_bias else {"w": w}
        return params, (self.out_features,)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Maps ``(N, in_features)`` to ``(N, out_features)``."""
        w, x = _weights(params, "Dense"), as_array(x, "x")
        if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
            raise ValueError(
                f"Dense expects x of shape (N, in_features) and w of shape (in_features, out_features), "
                f"got x of shape {x.shape} and w of shape {w.shape}"
            )
        y = x @ w
        return y + params["b"][None, :] if "b" in params else y


@dataclasses.dataclass(frozen=True)
class ReLU:
    """``max(x, 0)``, elementwise; no parameters.

    >>> ReLU().apply({}, jnp.array([-1.0, 2.0]))
    Array([0., 2.], dtype=float32)
    """

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]:
        """No parameters; the shape is unchanged."""
        return {}, check_in_shape(in_shape, "ReLU")

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Elementwise ``max(x, 0)``."""
        return jax.nn.relu(as_array(x, "x"))


@dataclasses.dataclass(frozen=True)
class Flatten:
    """``(N, *shape) -> (N, prod(shape))``; no parameters.

    >>> Flatten().init(jax.random.key(0), (4, 2, 2))[1]
    (16,)
    """

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]:
        """No parameters; the output has ``prod(in_shape)`` features."""
        return {}, (math.prod(check_in_shape(in_shape, "Flatten")),)

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Flattens everything but the batch dimension."""
        x = as_array(x, "x")
        if x.ndim < 1:
            raise ValueError(f"Flatten expects x of shape (N, ...) with a batch dim, got shape {x.shape}")
        return x.reshape(x.shape[0], -1)


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
        try:
            object.__setattr__(self, "layers", tuple(self.layers))
        except TypeError:
            raise TypeError(
                f"Sequential layers must be a sequence of layers, got {type(self.layers).__name__}"
            ) from None
        for i, layer in enumerate(self.layers):
            if not (hasattr(layer, "init") and hasattr(layer, "apply")):
                raise TypeError(f"layers[{i}] must have init and apply methods, got {type(layer).__name__}")

    def init(self, key: jax.Array, in_shape: Shape) -> tuple[Params, Shape]:
        """Initialises each layer with its own key, threading the shapes through."""
        shape = check_in_shape(in_shape, "Sequential")
        params = []
        for layer, layer_key in zip(self.layers, jax.random.split(key, max(len(self.layers), 1))):
            layer_params, shape = layer.init(layer_key, shape)
            params.append(layer_params)
        return tuple(params), shape

    def apply(self, params: Params, x: jax.Array) -> jax.Array:
        """Applies the layers in order."""
        if not isinstance(params, Sequence):
            raise TypeError(f"Sequential params must be a tuple with one entry per layer, got {type(params).__name__}")
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
      backend: ``"im2col"`` (the note's backward) or ``"lax"``, for every conv.

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
