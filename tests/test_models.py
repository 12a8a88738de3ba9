"""Tests for bubblereduce.models: the default MLP's shape, names, seeding and input helper."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bubblereduce.models import DEFAULT_MLP_WIDTHS, build_mlp, mlp_input


def test_default_widths_give_16_varied_layers() -> None:
    assert len(DEFAULT_MLP_WIDTHS) == 17
    costs = [a * b for a, b in zip(DEFAULT_MLP_WIDTHS[:-1], DEFAULT_MLP_WIDTHS[1:], strict=True)]
    assert max(costs) / min(costs) >= 4, "layer costs must differ"
    assert len(set(DEFAULT_MLP_WIDTHS[1:])) >= 4, "activation sizes must differ"


def test_structure_and_names() -> None:
    widths = (8, 16, 4, 12)
    model = build_mlp(widths, seed=1)
    assert [name for name, _ in model.named_children()] == ["fc0", "fc1", "fc2"]
    for k, child in enumerate(model):
        assert isinstance(child, nn.Sequential) and len(child) == 2
        linear, act = child
        weight, bias = linear.weight.detach(), linear.bias.detach()
        assert isinstance(linear, nn.Linear) and isinstance(act, nn.ReLU)
        assert (linear.in_features, linear.out_features) == (widths[k], widths[k + 1])
        bound = 1 / math.sqrt(widths[k])
        assert float(weight.abs().max()) <= bound
        assert float(bias.abs().max()) <= bound
        assert float(weight.std()) > bound / 4, "weights must be initialised, not empty"
    y = model(mlp_input(5, 8, seed=0))
    assert y.shape == (5, 12) and bool((y >= 0).all())


def test_default_model_builds() -> None:
    model = build_mlp()
    assert len(model) == 16
    assert model[-1][0].out_features == DEFAULT_MLP_WIDTHS[-1]


def test_seeding_is_explicit_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = build_mlp((4, 6, 3), seed=7)
    b = build_mlp((4, 6, 3), seed=7)
    c = build_mlp((4, 6, 3), seed=8)
    x1 = mlp_input(3, 4, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a[0][0].weight, c[0][0].weight)
    assert torch.equal(x1, mlp_input(3, 4, seed=2))
    assert not torch.equal(x1, mlp_input(3, 4, seed=3))
    assert x1.dtype == torch.float32 and x1.shape == (3, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"widths": (8,)}, "at least 2"),
        ({"widths": (8, 0)}, r"widths\[1\] must be an integer >= 1, got 0"),
        ({"widths": (8, 2.5)}, r"widths\[1\]"),
        ({"widths": (8, True)}, r"widths\[1\]"),
        ({"widths": (8, 4), "seed": -1}, "seed"),
    ],
)
def test_build_mlp_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_mlp(**kwargs)


def test_mlp_input_errors() -> None:
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        mlp_input(0, 4)
    with pytest.raises(ValueError, match="width"):
        mlp_input(2, -1)
