"""Tests for bubblereduce.gpt: the GPT decoder's structure, seeding, causality and profiling."""

from __future__ import annotations

import math

import pytest
import torch

from bubblereduce.gpt import (
    GPT_PRESETS,
    GPTConfig,
    build_gpt,
    gpt_config,
    gpt_input,
    gpt_layer_kinds,
    gpt_loss,
    gpt_param_count,
)
from bubblereduce.profile import profile_sequential

SMALL = GPTConfig(vocab_size=97, hidden=32, heads=4, seq_len=12, layers=3, name="gpt-small")


def test_forward_backward_shapes_and_initial_loss() -> None:
    model = build_gpt(SMALL, seed=1)
    ids = gpt_input(SMALL, 5, seed=2)
    assert ids.shape == (5, SMALL.seq_len) and ids.dtype == torch.int64
    logits = model(ids)
    assert logits.shape == (5, SMALL.seq_len, SMALL.vocab_size)
    loss = gpt_loss(logits, ids)
    # small random weights: near-uniform predictions, loss close to ln(vocab)
    assert abs(loss.item() - math.log(SMALL.vocab_size)) < 0.1
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


def test_children_names_and_kinds() -> None:
    model = build_gpt(SMALL)
    names = [n for n, _ in model.named_children()]
    assert names == ["embed", "block0", "block1", "block2", "head"]
    assert gpt_layer_kinds(SMALL) == ["embed", "block", "block", "block", "head"]
    split = GPTConfig(**{**SMALL.__dict__, "split_sublayers": True})
    names = [n for n, _ in build_gpt(split).named_children()]
    assert names == ["embed", "attn0", "mlp0", "attn1", "mlp1", "attn2", "mlp2", "head"]
    assert gpt_layer_kinds(split) == ["embed"] + ["attn", "mlp"] * 3 + ["head"]
    assert split.num_profiled_layers == len(names)


def test_split_sublayers_computes_the_same_function() -> None:
    split = GPTConfig(**{**SMALL.__dict__, "split_sublayers": True})
    ids = gpt_input(SMALL, 3, seed=4)
    a = build_gpt(SMALL, seed=7)(ids)
    b = build_gpt(split, seed=7)(ids)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_param_count_closed_form_and_presets() -> None:
    for cfg in [SMALL, *GPT_PRESETS.values()]:
        meta = build_gpt(cfg, device="meta")
        assert sum(p.numel() for p in meta.parameters()) == gpt_param_count(cfg), cfg.name
    # the planning presets have the sizes their names claim (within 10 %)
    for key, n in (("gpt-125m", 125e6), ("7b", 6.7e9), ("70b", 70e9), ("175b", 175e9)):
        got = gpt_param_count(GPT_PRESETS[key])
        # gpt-125m's count includes the 2048 x 768 position table and an untied head (+38M)
        assert abs(got / n - 1) < (0.35 if key == "gpt-125m" else 0.1), (key, got)


def test_seeded_without_touching_global_rng() -> None:
    state = torch.random.get_rng_state()
    a = build_gpt(SMALL, seed=3)
    b = build_gpt(SMALL, seed=3)
    c = build_gpt(SMALL, seed=4)
    assert torch.equal(state, torch.random.get_rng_state())
    for (na, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(),
                                          c.named_parameters(), strict=True):
        assert torch.equal(pa, pb), na
        if pa.dim() == 2:
            assert not torch.equal(pa, pc), na


def test_meta_build_has_no_storage() -> None:
    model = build_gpt(GPT_PRESETS["70b"], device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert next(model.parameters()).dtype == torch.bfloat16


def test_causal_future_tokens_do_not_change_past_logits() -> None:
    model = build_gpt(SMALL, seed=0).eval()
    ids = gpt_input(SMALL, 2, seed=1)
    changed = ids.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % SMALL.vocab_size
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_meta_path_matches_real_attention_shapes() -> None:
    model = build_gpt(SMALL, device="meta")
    out = model(gpt_input(SMALL, 2, device="meta"))
    assert out.shape == (2, SMALL.seq_len, SMALL.vocab_size) and out.device.type == "meta"


def test_profiler_handles_token_ids() -> None:
    model = build_gpt(SMALL, seed=0)
    prof = profile_sequential(model, gpt_input(SMALL, 2), warmup=0, repeats=1, threads=1)
    assert prof.names == ("embed", "block0", "block1", "block2", "head")
    embed = prof.layers[0]
    assert embed.input_grad_s == 0.0 and embed.weight_grad_s == embed.backward_s
    assert prof.layers[-1].act_bytes == 2 * SMALL.seq_len * SMALL.vocab_size * 4
    assert all(x.forward_s > 0 and x.backward_s > 0 for x in prof.layers)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden": 30, "heads": 4}, "divisible by heads"),
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"layers": 0}, "layers must be an integer >= 1"),
        ({"mlp_ratio": 0.01}, "integer MLP width"),
        ({"split_sublayers": 1}, "True or False"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{**SMALL.__dict__, **kwargs})


def test_gpt_config_presets_and_overrides() -> None:
    cfg = gpt_config("tiny", layers=3, hidden=None)
    assert cfg.layers == 3 and cfg.hidden == GPT_PRESETS["tiny"].hidden
    with pytest.raises(ValueError, match="known presets"):
        gpt_config("13b")
    with pytest.raises(ValueError, match="unknown GPTConfig field"):
        gpt_config("tiny", width=3)
    with pytest.raises(ValueError, match="ids must have shape"):
        build_gpt(SMALL)(torch.zeros(1, SMALL.seq_len + 1, dtype=torch.int64))
