"""The PyTorch twins of `benchmarks/models.py`'s flax models (NCHW, autograd), timed beside them."""

from __future__ import annotations

import functools
from typing import Any


def torch_resnet18(torch: Any, *, classes: int) -> Any:
    """The same ResNet-18 in PyTorch."""
    tnn = torch.nn
    bn = functools.partial(tnn.BatchNorm2d, momentum=0.1, eps=1e-5)

    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = tnn.Sequential(
                tnn.Conv2d(cin, cout, 3, stride, 1, bias=False), bn(cout), tnn.ReLU(),
                tnn.Conv2d(cout, cout, 3, 1, 1, bias=False), bn(cout),
            )  # fmt: skip
            proj = [tnn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout)] if stride > 1 or cin != cout else []
            self.proj = tnn.Sequential(*proj)  # empty: the identity

        def forward(self, x):
            return torch.relu(self.proj(x) + self.body(x))

    layers, cin = [tnn.Conv2d(3, 64, 3, 1, 1, bias=False), bn(64), tnn.ReLU()], 64
    for i in range(4):
        for j in range(2):
            layers.append(Block(cin, 64 * 2**i, 2 if i > 0 and j == 0 else 1))
            cin = 64 * 2**i
    return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(cin, classes))


def torch_mobilenet_v2(torch: Any, *, classes: int, stages: Any) -> Any:
    """The same MobileNetV2 in PyTorch."""
    tnn = torch.nn
    cbr = lambda cin, cout, k, s=1, g=1, act=True: [
        tnn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False), tnn.BatchNorm2d(cout),
        *([tnn.ReLU6()] if act else []),
    ]  # fmt: skip

    class Inverted(tnn.Module):
        def __init__(self, cin, cout, t, s):
            super().__init__()
            hidden = cin * t
            expand = cbr(cin, hidden, 1) if t != 1 else []
            self.body = tnn.Sequential(*expand, *cbr(hidden, hidden, 3, s, hidden), *cbr(hidden, cout, 1, act=False))
            self.residual = s == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    layers, cin = cbr(3, 32, 3, 2), 32
    for t, c, n, s in stages:
        for j in range(n):
            layers.append(Inverted(cin, c, t, s if j == 0 else 1))
            cin = c
    head = [*cbr(cin, 1280, 1), tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(1280, classes)]
    return tnn.Sequential(*layers, *head)


def torch_decoder(torch: Any) -> Any:
    """The same decoder in PyTorch: ``ConvTranspose2d(3, stride=2, padding=1, output_padding=1)``."""
    tnn, layers, cin = torch.nn, [], 256
    for features in (128, 64, 32):
        layers += [tnn.ConvTranspose2d(cin, features, 3, 2, 1, output_padding=1), tnn.ReLU()]
        cin = features
    return tnn.Sequential(*layers, tnn.Conv2d(cin, 3, 3, 1, 1))
