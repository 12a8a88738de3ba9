"""Models the demos profile: an MLP whose layer widths vary, so layer costs differ.

Each child of the returned ``nn.Sequential`` is one profiled "layer"
(``nn.Sequential(Linear, ReLU)``, named ``fc0``, ``fc1``, ...). Weights are drawn
from an explicit ``torch.Generator``, so building a model never touches torch's
global random state.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["DEFAULT_MLP_WIDTHS", "build_mlp", "mlp_input"]

# 17 widths -> 16 Linear+ReLU layers; costs (a*b) and activations (b) vary by ~8x,
# so a 4-stage split of 2-layer blocks has a real best answer.
DEFAULT_MLP_WIDTHS: tuple[int, ...] = (
    1024, 2048, 1536, 4096, 1024, 3072, 512, 2048, 1024,
    4096, 2048, 1024, 3072, 1536, 512, 2048, 1024,
)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def build_mlp(widths: Sequence[int] = DEFAULT_MLP_WIDTHS, seed: int = 0) -> nn.Sequential:
    """Build an MLP of ``len(widths) - 1`` layers ``fc{k} = Sequential(Linear(w[k], w[k+1]), ReLU)``.

    ``widths`` are feature counts (at least two positive integers). Weights and
    biases follow PyTorch's default ``nn.Linear`` distribution
    (uniform in ``±1/sqrt(fan_in)``) drawn from a generator seeded with ``seed``,
    so the same ``(widths, seed)`` gives identical float32 weights on CPU.
    """
    widths = list(widths)
    if len(widths) < 2:
        raise ValueError(f"widths needs at least 2 entries (input and one output), got {widths!r}")
    for k, w in enumerate(widths):
        _check_int(f"widths[{k}]", w, 1)
    _check_int("seed", seed, 0)
    gen = torch.Generator().manual_seed(seed)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for k, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        # skip_init: no draw from the global RNG; we initialise from `gen` below
        linear = nn.utils.skip_init(nn.Linear, fan_in, fan_out)
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=gen)
            linear.bias.uniform_(-bound, bound, generator=gen)
        layers[f"fc{k}"] = nn.Sequential(linear, nn.ReLU())
    return nn.Sequential(layers)


def mlp_input(batch_size: int, width: int = DEFAULT_MLP_WIDTHS[0], seed: int = 0) -> torch.Tensor:
    """A standard-normal float32 input of shape ``(batch_size, width)`` drawn with ``seed``."""
    _check_int("batch_size", batch_size, 1)
    _check_int("width", width, 1)
    _check_int("seed", seed, 0)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, width, generator=gen)


def __getattr__(name: str) -> object:
    # issue 9: the GPT model lives in bubblereduce.gpt; re-exported here lazily (docs/architecture.md)
    if name in ("GPTConfig", "build_gpt"):
        from bubblereduce import gpt

        return getattr(gpt, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
