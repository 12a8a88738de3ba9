"""Tests for bubblereduce.memory: stage memory, in-flight counts, baselines, memory-capped partitions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubblereduce import partition as part_mod
from bubblereduce.memory import (
    OPTIMIZER_BYTES_PER_PARAM,
    build_stage_memory,
    compare_partitions,
    even_split,
    inflight_per_stage,
    layer_memory,
    megatron_split,
    stage_memory_bytes,
    torchtitan_split,
)
from bubblereduce.profile import LayerProfile, ModelProfile, ProfileMeta

KINDS5 = ["embed", "block", "block", "block", "head"]


def test_inflight_matches_semantics() -> None:
    for p, m in [(1, 1), (4, 8), (4, 2), (6, 3)]:
        got = inflight_per_stage("1f1b", p, m)
        assert list(got) == [min(p - s, m) for s in range(p)]
        assert list(inflight_per_stage("gpipe", p, m)) == [m] * p
    assert inflight_per_stage("zb-h1", 4, 8)[0] == 4
    with pytest.raises(ValueError, match="one stage per device"):
        inflight_per_stage("zbv", 4, 8)


def test_stage_memory_hand_checked() -> None:
    # embed 100 params, three blocks of 10 params each, head 50 params; adam-mixed 16 B/param
    pers, act = layer_memory([100, 10, 10, 10, 50], [0, 7, 7, 7, 3], "adam-mixed")
    assert list(pers) == [1600, 160, 160, 160, 800] and list(act) == [0, 7, 7, 7, 3]
    parts = [(0, 3), (3, 5)]
    inflight = inflight_per_stage("1f1b", 2, 4)  # [2, 1]
    p_s, a_s = stage_memory_bytes(parts, pers, act, inflight)
    assert list(p_s) == [1600 + 160 + 160, 160 + 800]
    assert list(a_s) == [2 * (0 + 7 + 7), 1 * (7 + 3)]
    # partition.StageMemory checks the same formula: the unique best split fits at 1948 bytes
    # (stage 0's 1920 + 28), not at 1947, where the next best one wins
    costs = [1, 1, 1, 1.5, 1.5]
    mem = build_stage_memory(pers, act, inflight, capacity_bytes=1948.0)
    assert part_mod.dp_min_max(costs, [0] * 5, 2, memory=mem) == parts
    mem = build_stage_memory(pers, act, inflight, capacity_bytes=1947.0)
    assert part_mod.dp_min_max(costs, [0] * 5, 2, memory=mem) == [(0, 2), (2, 5)]
    assert OPTIMIZER_BYTES_PER_PARAM["adam-fp32"] == 16 and OPTIMIZER_BYTES_PER_PARAM["sgd-fp32"] == 8
    with pytest.raises(ValueError, match="unknown optimizer"):
        layer_memory([1], [1], "lion")


def test_baselines() -> None:
    kinds = ["embed"] + ["block"] * 8 + ["head"]
    assert even_split(kinds, 4) == [(0, 3), (3, 5), (5, 7), (7, 10)]
    # first and last stages one block lighter, the middle two share the rest
    assert megatron_split(kinds, 4) == [(0, 2), (2, 5), (5, 8), (8, 10)]
    # torchtitan's documented example: 27 layers, 4 stages -> 7, 7, 7, 6 blocks (+ embed, + head)
    kinds27 = ["embed"] + ["block"] * 27 + ["head"]
    parts = torchtitan_split(kinds27, 4)
    assert [b - a for a, b in parts] == [8, 7, 7, 7]
    split_kinds = ["embed"] + ["attn", "mlp"] * 4 + ["head"]
    parts = even_split(split_kinds, 2)
    assert parts == [(0, 5), (5, 10)]  # never cuts between an attention and its MLP
    for fn in (even_split, megatron_split, torchtitan_split):
        p = fn(kinds, 1)
        assert p == [(0, 10)]
        part_mod.validate_partition(fn(kinds, 3), len(kinds), 3)
    with pytest.raises(ValueError, match="leave a stage empty"):
        even_split(KINDS5, 5)
    with pytest.raises(ValueError, match="kinds must be"):
        even_split(["block", "head"], 1)


def _brute(costs: np.ndarray, pers: np.ndarray, act: np.ndarray, inflight: np.ndarray,
           p: int, cap: float) -> tuple[float, float]:
    """(min bottleneck over partitions that fit, min over all partitions of the peak stage memory)."""
    n = costs.size
    best, min_cap = np.inf, np.inf
    for cuts in itertools.combinations(range(1, n), p - 1):
        edges = [0, *cuts, n]
        mems = [pers[a:b].sum() + inflight[k] * act[a:b].sum()
                for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))]
        bott = max(costs[a:b].sum() for a, b in zip(edges[:-1], edges[1:], strict=True))
        min_cap = min(min_cap, max(mems))
        if max(mems) <= cap * (1 + 1e-9):
            best = min(best, bott)
    return best, min_cap


@settings(max_examples=80, deadline=None)
@given(data=st.data(), n=st.integers(2, 8), p=st.integers(1, 4), m=st.integers(1, 6),
       frac=st.floats(0.0, 1.2))
def test_memory_cap_honoured_vs_brute_force(data: st.DataObject, n: int, p: int, m: int,
                                            frac: float) -> None:
    p = min(p, n)
    ints = st.lists(st.integers(0, 20), min_size=n, max_size=n)
    costs = np.array(data.draw(ints), dtype=float) + 1.0
    pers = np.array(data.draw(ints), dtype=float)
    act = np.array(data.draw(ints), dtype=float)
    inflight = inflight_per_stage("1f1b", p, m)
    _, min_cap = _brute(costs, pers, act, inflight, p, np.inf)
    cap = min_cap * frac
    best, _ = _brute(costs, pers, act, inflight, p, cap)
    mem = build_stage_memory(pers, act, inflight, cap)
    if np.isinf(best):
        with pytest.raises(part_mod.MemoryCapacityError) as info:
            part_mod.dp_min_max(costs, np.zeros(n), p, memory=mem)
        assert info.value.min_capacity_bytes == pytest.approx(min_cap, rel=1e-9)
        return
    parts = part_mod.dp_min_max(costs, np.zeros(n), p, memory=mem)
    p_s, a_s = stage_memory_bytes(parts, pers, act, inflight)
    assert (p_s + a_s).max() <= cap * (1 + 1e-9)
    assert part_mod.bottleneck(costs, parts) == pytest.approx(best, rel=1e-9)


def _toy_profile(f: list[float], params: list[int]) -> ModelProfile:
    meta = ProfileMeta("toy", "cpu", "float32", 1, 1, "x", 0, 1)
    layers = tuple(LayerProfile(f"l{k}", x, 2 * x, 1000, 4 * q, x, x)
                   for k, (x, q) in enumerate(zip(f, params, strict=True)))
    return ModelProfile(layers, meta)


def test_compare_partitions_exact_beats_baselines_and_fits() -> None:
    kinds = ["embed"] + ["block"] * 8 + ["head"]
    f = [0.5] + [1.0] * 8 + [3.0]  # a heavy head: the even split's last stage is the bottleneck
    params = [50] + [10] * 8 + [60]
    saved = [0] + [100] * 8 + [20]
    prof = _toy_profile(f, params)
    free = compare_partitions(prof, kinds, saved, params, 4, 8, bandwidth_GBps=None)
    names = [r.strategy for r in free.reports]
    assert names == ["even", "megatron", "torchtitan", "dp_min_max"]
    exact = free.report("dp_min_max")
    assert all(exact.bottleneck_s <= r.bottleneck_s * (1 + 1e-9) for r in free.reports)
    assert exact.bottleneck_s < free.report("even").bottleneck_s
    for r in free.reports:
        p_s, a_s = stage_memory_bytes(list(r.partition), *layer_memory(params, saved),
                                      inflight_per_stage("1f1b", 4, 8))
        assert r.peak_memory_bytes == pytest.approx(float((p_s + a_s).max()))
        assert r.fits is None and r.makespan_s >= 8 * r.bottleneck_s - 1e-9
    # a cap between the smallest feasible capacity and the unconstrained optimum's peak
    cap = 0.5 * (free.min_capacity_bytes + exact.peak_memory_bytes)
    capped = compare_partitions(prof, kinds, saved, params, 4, 8, capacity_bytes=cap)
    mem = capped.report("dp_min_max+memory")
    assert mem is not None and mem.fits and mem.peak_memory_bytes <= cap * (1 + 1e-9)
    tight = compare_partitions(prof, kinds, saved, params, 4, 8,
                               capacity_bytes=0.9 * free.min_capacity_bytes)
    assert tight.report("dp_min_max+memory") is None
    assert tight.min_capacity_bytes == pytest.approx(free.min_capacity_bytes)
    with pytest.raises(ValueError, match="one per layer"):
        compare_partitions(prof, kinds[:-1], saved, params, 4, 8)


@pytest.mark.slow
def test_demo_with_gpt_writes_memory_outputs(tmp_path) -> None:
    import pipeline_partition_demo as demo_script

    out = tmp_path / "figs"
    args = ["--model=gpt", "--profile_source=analytic", "--device_preset=a100-80gb",
            "--gpt_layers=6", "--num_stages=4", "--block_n=1", "--schedules=1f1b",
            "--global_batch=16", "--microbatches=4,8", "--representative_microbatches=8",
            "--bandwidths_GBps=50", "--representative_bandwidth_GBps=50",
            "--memory_capacity_GB=0.2", f"--out_dir={out}"]
    assert demo_script.main(args) == 0
    assert (out / "memory_per_stage.png").stat().st_size > 0
    summary = (out / "summary.txt").read_text()
    assert "Memory per device (1f1b, 4 devices, m = 8" in summary
    assert "costs from the analytic model of a100-80gb" in summary
    assert "Exact dp_min_max+memory vs even split" in summary
    with open(out / "memory.csv") as fh:
        header = fh.readline().strip().split(",")
    assert header[:3] == ["strategy", "partition", "bottleneck_s"]
    bad = tmp_path / "bad"
    assert demo_script.main([*args[:-1], f"--out_dir={bad}", "--gpt_heads=5"]) == 2
    assert not bad.exists() or not any(bad.iterdir())
