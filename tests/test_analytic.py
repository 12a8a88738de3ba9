"""Tests for bubblereduce.analytic: FLOP/byte counts vs closed forms, timing model, presets."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bubblereduce.analytic import (
    DEVICE_PRESETS,
    LINK_PRESETS,
    DevicePreset,
    OpCount,
    PhaseCounts,
    analytic_profile,
    calibration_rows,
    count_layers,
    measure_cpu_device,
    phase_seconds,
    profile_from_counts,
)
from bubblereduce.gpt import GPTConfig, build_gpt, gpt_input, gpt_param_count
from bubblereduce.models import build_mlp
from bubblereduce.profile import LayerProfile, ModelProfile, ProfileMeta, profile_sequential

SMALL = GPTConfig(vocab_size=64, hidden=32, heads=4, seq_len=16, layers=2, name="gpt-small")


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 9), fan_in=st.integers(1, 40), fan_out=st.integers(1, 40),
       tokens=st.sampled_from([None, 3]))
def test_linear_flops_closed_form(batch: int, fan_in: int, fan_out: int, tokens: int | None) -> None:
    model = nn.Sequential(nn.Linear(fan_in, fan_out))
    shape = (batch, fan_in) if tokens is None else (batch, tokens, fan_in)
    rows = batch * (tokens or 1)
    (c,) = count_layers(model, batch, sample_input=torch.zeros(shape))
    assert c.forward.flops == 2 * rows * fan_in * fan_out
    assert c.backward.flops == 2 * c.forward.flops
    assert c.input_grad.flops == 2 * rows * fan_in * fan_out
    assert c.weight_grad.flops == 2 * rows * fan_in * fan_out
    assert c.param_count == fan_in * fan_out + fan_out
    assert c.param_bytes == 4 * c.param_count
    assert c.act_bytes == 4 * rows * fan_out
    # a Linear stores its input for the weight gradient, never its own weight
    assert c.saved_bytes == 4 * rows * fan_in


def test_mlp_totals_equal_flop_counter_mode() -> None:
    widths = (24, 40, 16, 8)
    model = build_mlp(widths, seed=0)
    x = torch.randn(6, widths[0], requires_grad=True)
    counts = count_layers(model, 6, sample_input=x)
    with FlopCounterMode(display=False) as fwd:
        y = model(x)
    with FlopCounterMode(display=False) as bwd:
        torch.autograd.grad(y, [x, *model.parameters()], torch.ones_like(y))
    assert sum(c.forward.flops for c in counts) == fwd.get_total_flops()
    assert sum(c.backward.flops for c in counts) == bwd.get_total_flops()


def test_mlp_saved_and_moved_bytes_hand_checked() -> None:
    # Sequential(Linear(24, 40), ReLU): Linear saves its input (6 x 24), ReLU its output (6 x 40)
    (c, _) = count_layers(build_mlp((24, 40, 16)), 6, sample_input=torch.zeros(6, 24))
    assert c.saved_bytes == 4 * 6 * (24 + 40)
    relu = nn.Sequential(nn.ReLU())
    (r,) = count_layers(relu, 5, sample_input=torch.zeros(5, 11))
    assert r.forward.flops == 0
    assert r.forward.bytes == 2 * 4 * 5 * 11  # read the input, write the output


def test_gpt_block_forward_flops_closed_form() -> None:
    cfg = SMALL
    counts = count_layers(cfg, 3)
    b, t, h, f = 3, cfg.seq_len, cfg.hidden, cfg.mlp_hidden
    linear = 2 * b * t * (3 * h * h + h * h + 2 * h * f)
    attention = 4 * b * t * t * h  # QK^T and PV: 2 * b * heads * t * t * head_dim each
    assert counts[1].forward.flops == linear + attention
    assert counts[0].forward.flops == 0  # embedding lookups are memory traffic
    assert counts[-1].forward.flops == 2 * b * t * h * cfg.vocab_size
    # every matmul's backward costs twice its forward; attention's backward at least that
    assert counts[1].backward.flops >= 2 * counts[1].forward.flops
    assert sum(c.param_count for c in counts) == gpt_param_count(cfg)


def test_identical_blocks_counted_once_but_named() -> None:
    counts = count_layers(SMALL, 2)
    assert [c.name for c in counts] == ["embed", "block0", "block1", "head"]
    assert counts[1].forward == counts[2].forward and counts[1].saved_bytes == counts[2].saved_bytes


def test_phase_seconds_is_a_summed_roofline() -> None:
    dev = DevicePreset("toy", {"float32": 1e9}, 2.0, 1.0, "made up", op_overhead_s=1e-3)
    phase = PhaseCounts((OpCount("mm", 4_000_000, 1_000_000), OpCount("add", 0, 6_000_000)))
    # mm: max(4e6 / 1e9, 1e6 / 2e9) = 4 ms; add: 6e6 / 2e9 = 3 ms; plus 1 ms per op
    assert phase_seconds(phase, dev, "float32", efficiency=1.0, memory_efficiency=1.0) \
        == pytest.approx(0.004 + 0.003 + 0.002, rel=1e-12)
    assert phase_seconds(phase, dev, "float32", efficiency=0.5, memory_efficiency=1.0) \
        == pytest.approx(0.008 + 0.003 + 0.002, rel=1e-12)
    with pytest.raises(ValueError, match="efficiency must be a number in"):
        phase_seconds(phase, dev, "float32", efficiency=1.5)
    with pytest.raises(ValueError, match="no peak for dtype 'bfloat16'"):
        phase_seconds(phase, dev, "bfloat16")


def test_analytic_profile_fields_are_sane() -> None:
    prof = analytic_profile(SMALL, 4, "h100-sxm", "bfloat16")
    assert prof.names == tuple(n for n, _ in build_gpt(SMALL, device="meta").named_children())
    assert prof.meta.device == "h100-sxm (analytic)" and prof.meta.dtype == "bfloat16"
    assert prof.meta.microbatch_size == 4
    assert (prof.forward_s > 0).all() and (prof.backward_s > 0).all()
    assert prof.input_grad_s[0] == 0.0  # token ids have no gradient
    assert (abs(prof.input_grad_s + prof.weight_grad_s - prof.backward_s) <= 1e-12).all()
    assert prof.act_bytes[1] == 2 * 4 * SMALL.seq_len * SMALL.hidden
    # twice the microbatch: matmul-bound blocks take (nearly) twice as long
    big = analytic_profile(SMALL, 8, "h100-sxm", "bfloat16")
    assert 1.5 < big.forward_s[1] / prof.forward_s[1] <= 2.0 + 1e-9
    faster = analytic_profile(SMALL, 4, "h100-sxm", "bfloat16", efficiency=1.0)
    assert (faster.forward_s <= prof.forward_s + 1e-15).all()


def test_analytic_bytes_match_a_measured_profile() -> None:
    model = build_gpt(SMALL, seed=0)
    measured = profile_sequential(model, gpt_input(SMALL, 2), warmup=0, repeats=1, threads=1)
    analytic = analytic_profile(SMALL, 2, "a100-80gb")
    assert list(measured.act_bytes) == list(analytic.act_bytes)
    assert list(measured.param_bytes) == list(analytic.param_bytes)


def test_large_configuration_counts_on_meta() -> None:
    cfg = GPTConfig(vocab_size=32000, hidden=8192, heads=64, seq_len=2048, layers=4,
                    dtype="bfloat16")
    counts = count_layers(cfg, 1)
    s, h = 2048, 8192
    # stored activations of a block without dropout: 32 * s * h bytes in 16-bit (Korthikanti
    # et al. 2022 count 34 s b h with two dropout masks; fused attention stores no s x s scores)
    assert abs(counts[1].saved_bytes / (s * h) - 32) < 0.1
    assert sum(c.param_count for c in counts) == gpt_param_count(cfg)


def test_presets_have_sources_and_sane_numbers() -> None:
    assert {"a100-80gb", "h100-sxm", "h200", "mi300x", "l4"} <= set(DEVICE_PRESETS)
    for name, dev in DEVICE_PRESETS.items():
        assert dev.name == name and len(dev.source) > 20 and any(ch.isdigit() for ch in dev.source)
        assert dev.peak("bfloat16") > dev.peak("float32") > 1e12
        assert 100 < dev.mem_bandwidth_GBps < 10_000 and dev.memory_GB >= 16
    for name, link in LINK_PRESETS.items():
        assert link.name == name and len(link.source) > 20
        assert 1 < link.bandwidth_GBps < 1000 and 0 < link.latency_s < 1e-3
    with pytest.raises(ValueError, match="known:"):
        analytic_profile(SMALL, 1, "tpu-v9")


def test_calibration_rows_and_cpu_device() -> None:
    meta = ProfileMeta("m", "cpu", "float32", 1, 1, "x", 0, 1)
    a = ModelProfile((LayerProfile("l0", 1.0, 2.0, 0, 0), LayerProfile("l1", 2.0, 2.0, 0, 0)), meta)
    b = ModelProfile((LayerProfile("l0", 1.5, 2.0, 0, 0), LayerProfile("l1", 1.0, 4.0, 0, 0)), meta)
    rows = calibration_rows(a, b)
    assert [r.name for r in rows] == ["l0", "l1", "total"]
    assert rows[0].error_f == pytest.approx(0.5) and rows[1].error_f == pytest.approx(-0.5)
    assert rows[2].error_fb == pytest.approx((8.5 - 7.0) / 7.0)
    dev = measure_cpu_device(1, matmul_size=64, copy_bytes=1 << 20, repeats=1)
    assert dev.peak("float32") > 1e6 and dev.mem_bandwidth_GBps > 0.01 and dev.op_overhead_s > 0
    prof = profile_from_counts(count_layers(SMALL, 1), dev, "float32", 1, model_name="s",
                               efficiency=1.0, memory_efficiency=1.0)
    assert all(math.isfinite(x) and x > 0 for x in prof.forward_s)
