"""Tests for bubblereduce.engine: splitting, link fit, prediction, reporting, and real
2-process pipelines on torch.distributed.pipelining (gloo, CPU)."""

from __future__ import annotations

import csv
import functools
import math
import multiprocessing
import signal
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bubblereduce.engine import (
    ENGINE_CSV_HEADER,
    EngineError,
    EngineRow,
    LinkFit,
    block_to_layer_ranges,
    engine_check,
    engine_summary_lines,
    fit_link,
    predict_step,
    ranking_checks,
    run_pipeline,
    split_sequential,
    write_engine_check,
)
from bubblereduce.engine_worker import PipelineJob, PipelineTask, run_ranks
from bubblereduce.models import build_mlp

TINY_WIDTHS = (8, 16, 12, 16, 8, 4, 6)  # 6 layers, input 8, output 6
tiny_mlp = functools.partial(build_mlp, TINY_WIDTHS, seed=0)


def _cuts_to_ranges(cuts: list[int], n: int) -> list[tuple[int, int]]:
    bounds = [0, *cuts, n]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _draw_ranges(data: st.DataObject, n: int) -> list[tuple[int, int]]:
    """A random partition of 0..n into contiguous non-empty half-open ranges."""
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    return _cuts_to_ranges(cuts, n)


# --------------------------------------------------------------------------- split_sequential


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_split_sequential_composes_to_the_model(data: st.DataObject) -> None:
    model = tiny_mlp()
    n = len(model)
    ranges = _draw_ranges(data, n)
    stages = split_sequential(model, ranges)
    assert len(stages) == len(ranges)
    x = torch.randn(5, TINY_WIDTHS[0], generator=torch.Generator().manual_seed(len(ranges)))
    y = x
    for s in stages:
        y = s(y)
    assert torch.equal(y, model(x))
    names = [name for s in stages for name, _ in s.named_parameters()]
    assert names == [name for name, _ in model.named_parameters()]
    # shared, not copied
    for s, (a, _b) in zip(stages, ranges, strict=True):
        assert next(iter(s.children())) is model[a]


@pytest.mark.parametrize(
    "ranges",
    [[], [(0, 3)], [(0, 3), (4, 6)], [(0, 3), (3, 7)], [(1, 6)], [(0, 0), (0, 6)], [(0, 4), (3, 6)]],
)
def test_split_sequential_rejects_bad_ranges(ranges: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError, match="layer_ranges"):
        split_sequential(tiny_mlp(), ranges)


def test_split_sequential_rejects_non_sequential() -> None:
    with pytest.raises(TypeError, match="nn.Sequential"):
        split_sequential(nn.Linear(2, 2), [(0, 1)])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- block_to_layer_ranges


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_block_to_layer_ranges_matches_set_union(data: st.DataObject) -> None:
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=10))
    starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    blocks = list(zip(starts[:-1], starts[1:], strict=True))
    parts = _draw_ranges(data, len(blocks))
    layers = block_to_layer_ranges(parts, blocks)
    for (a, b), (la, lb) in zip(parts, layers, strict=True):
        expected = set()
        for i in range(a, b):
            expected |= set(range(*blocks[i]))
        assert set(range(la, lb)) == expected


@pytest.mark.parametrize("parts", [[(0, 1)], [(0, 1), (2, 3)], [(0, 2), (2, 4)], []])
def test_block_to_layer_ranges_rejects_bad_parts(parts: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError):
        block_to_layer_ranges(parts, [(0, 2), (2, 3), (3, 5)])


# --------------------------------------------------------------------------- fit_link


@settings(max_examples=80, deadline=None)
@given(
    latency_s=st.floats(1e-7, 1e-2),
    bandwidth_GBps=st.floats(0.01, 100.0),
    sizes=st.lists(st.integers(1, 1 << 26), min_size=2, max_size=6, unique=True),
)
def test_fit_link_recovers_noiseless_parameters(latency_s: float, bandwidth_GBps: float, sizes: list[int]) -> None:
    times = [latency_s + s / (bandwidth_GBps * 1e9) for s in sizes]
    lat, bw = fit_link(sizes, times)
    assert math.isclose(bw, bandwidth_GBps, rel_tol=1e-6)
    # latency is recoverable to the precision the data carries about it
    assert abs(lat - latency_s) <= 1e-6 * max(times)


def test_fit_link_clamps_negative_latency_and_rejects_flat_data() -> None:
    lat, bw = fit_link([1000, 2000, 4000], [0.9e-6, 2.0e-6, 4.0e-6])
    assert lat == 0.0
    assert 0.9 < bw < 1.1
    with pytest.raises(ValueError, match="does not grow"):
        fit_link([1000, 2000], [1e-3, 1e-3])
    with pytest.raises(ValueError, match="two distinct"):
        fit_link([1000, 1000], [1e-3, 2e-3])


# --------------------------------------------------------------------------- predict_step


FAST_LINK = LinkFit(0.0, 1e12, (1, 2), (0.0, 0.0))


@settings(max_examples=60, deadline=None)
@given(
    schedule=st.sampled_from(["gpipe", "1f1b"]),
    m=st.integers(2, 12),
    layers_per_stage=st.integers(1, 3),
    f=st.floats(1e-4, 1.0),
    b=st.floats(1e-4, 1.0),
    post=st.tuples(st.floats(0.0, 3.0), st.floats(0.0, 3.0)),
    acc=st.floats(0.0, 0.5),
)
def test_predict_step_closed_form_two_uniform_stages(
    schedule: str, m: int, layers_per_stage: int, f: float, b: float, post: tuple[float, float], acc: float
) -> None:
    n = 2 * layers_per_stage
    lf = [f / layers_per_stage] * n
    lb = [b / layers_per_stage] * n
    ranges = [(0, layers_per_stage), (layers_per_stage, n)]
    b_eff = b + acc * (m - 1) / m
    pred, makespan = predict_step(lf, lb, [4] * n, ranges, schedule, m, FAST_LINK,
                                  accumulate_s=[acc, acc], post_step_s=list(post))
    # semantics §6: (m + p - 1)(f + b); device 1 ends one backward before device 0
    total = (m + 1) * (f + b_eff)
    assert math.isclose(makespan, total, rel_tol=1e-9)
    assert math.isclose(pred, max(total + post[0], total - b_eff + post[1]), rel_tol=1e-9)


def test_predict_step_adds_loss_to_last_stage_and_comm_delays() -> None:
    base, _ = predict_step([1.0, 1.0], [2.0, 2.0], [1e9, 1e9], [(0, 1), (1, 2)], "gpipe", 4, FAST_LINK)
    with_loss, _ = predict_step([1.0, 1.0], [2.0, 2.0], [1e9, 1e9], [(0, 1), (1, 2)], "gpipe", 4,
                                FAST_LINK, loss_s=(0.5, 0.25))
    slow = LinkFit(0.1, 1.0, (1, 2), (0.0, 0.0))  # 5e8 bytes at 1 GB/s: 0.6 s per transfer
    with_comm, _ = predict_step([1.0, 1.0], [2.0, 2.0], [5e8, 5e8], [(0, 1), (1, 2)], "gpipe", 4, slow)
    assert math.isclose(base, 5 * 3.0)
    assert with_loss > base and with_comm > base
    # transfers (0.6 s) are shorter than the forward (1 s) so the link never queues: exactly one
    # forward and one backward transfer sit on GPipe's critical path
    assert math.isclose(with_comm, base + 2 * 0.6, rel_tol=1e-9)
    # 1.1 s transfers issued every 1 s queue on the link: the last forward arrives 0.4 s later
    queued = LinkFit(0.1, 1.0, (1, 2), (0.0, 0.0))
    with_queue, _ = predict_step([1.0, 1.0], [2.0, 2.0], [1e9, 1e9], [(0, 1), (1, 2)], "gpipe", 4, queued)
    assert math.isclose(with_queue, base + 2 * 1.1 + 3 * 0.1, rel_tol=1e-9)


def test_predict_step_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown engine schedule"):
        predict_step([1.0, 1.0], [1.0, 1.0], [1, 1], [(0, 1), (1, 2)], "nope", 2, FAST_LINK)
    with pytest.raises(ValueError, match="post_step_s"):
        predict_step([1.0, 1.0], [1.0, 1.0], [1, 1], [(0, 1), (1, 2)], "gpipe", 2, FAST_LINK,
                     post_step_s=[1.0])
    with pytest.raises(ValueError, match="layer_weight_grad_s"):
        predict_step([1.0] * 4, [1.0] * 4, [1] * 4, [(0, 1), (1, 2), (2, 3), (3, 4)], "zbv", 4, FAST_LINK)


# --------------------------------------------------------------------------- reporting


def _row(strategy: str, schedule: str, m: int, measured: float, predicted: float, iqr: float) -> EngineRow:
    return EngineRow(
        strategy=strategy, schedule=schedule, microbatches=m, microbatch_size=64 // m, global_batch=64,
        stage_layers=((0, 3), (3, 6)), measured_s=measured, measured_iqr_s=iqr, noise=iqr / measured,
        predicted_s=predicted, error=(predicted - measured) / measured, predicted_sim_s=predicted,
        error_sim=(predicted - measured) / measured, predicted_inrun_s=measured, error_inrun=0.0,
        profile_stage_s=(0.1, 0.2), inrun_stage_s=(0.11, 0.19),
        post_step_s=0.01, steps=9, loss=1.0, link_latency_s=5e-5, link_bandwidth_GBps=2.5, comm_mode="overlap",
    )


def test_ranking_checks_significance_and_agreement() -> None:
    rows = [
        _row("uniform", "gpipe", 2, 1.0, 1.1, 0.01),
        _row("dp_min_max", "gpipe", 2, 0.8, 0.9, 0.02),  # measured a-b = 0.2 > noise; predicted agrees
        _row("uniform", "1f1b", 2, 1.0, 0.8, 0.01),
        _row("dp_min_max", "1f1b", 2, 0.9, 0.9, 0.01),  # significant, predicted disagrees
        _row("uniform", "1f1b", 4, 1.0, 1.0, 0.05),
        _row("dp_min_max", "1f1b", 4, 0.99, 0.9, 0.05),  # not significant
        _row("uniform", "gpipe", 8, 1.0, 1.0, 0.05),  # no partner
    ]
    checks = {(c.schedule, c.microbatches): c for c in ranking_checks(rows)}
    assert set(checks) == {("gpipe", 2), ("1f1b", 2), ("1f1b", 4)}
    assert checks["gpipe", 2].significant and checks["gpipe", 2].agrees
    assert math.isclose(checks["gpipe", 2].measured_diff_s, 0.2)
    assert checks["1f1b", 2].significant and not checks["1f1b", 2].agrees
    assert not checks["1f1b", 4].significant
    lines = engine_summary_lines(rows)
    assert any("agrees in 1 of 2" in line for line in lines)
    median_err = float(np.median([abs(r.error) for r in rows]))
    assert f"{median_err:.1%}" in lines[0]


def test_write_engine_check_round_trips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = [_row("uniform", "gpipe", 2, 1.0, 1.1, 0.01), _row("dp_min_max", "gpipe", 2, 0.8, 0.9, 0.02)]
    path = tmp_path / "engine_check.csv"
    write_engine_check(path, rows)
    with open(path, newline="") as fh:
        read = list(csv.DictReader(fh))
    assert tuple(read[0]) == ENGINE_CSV_HEADER
    assert [r["strategy"] for r in read] == ["uniform", "dp_min_max"]
    for r, row in zip(read, rows, strict=True):
        assert float(r["measured_s"]) == row.measured_s
        assert float(r["predicted_s"]) == row.predicted_s
        assert float(r["error"]) == row.error
        assert r["stage_layers"] == "0-3 3-6"


# --------------------------------------------------------------------------- argument checks (no spawn)


def test_run_pipeline_rejects_bad_arguments_before_spawning() -> None:
    with pytest.raises(ValueError, match="unknown engine schedule"):
        run_pipeline(tiny_mlp, [(0, 3), (3, 6)], "looped")
    with pytest.raises(ValueError, match="microbatches >= stages"):
        run_pipeline(tiny_mlp, [(0, 3), (3, 6)], "1f1b", microbatches=1, global_batch=4)
    with pytest.raises(ValueError, match="divisible"):
        run_pipeline(tiny_mlp, [(0, 3), (3, 6)], "gpipe", microbatches=3, global_batch=8)
    with pytest.raises(ValueError, match="layer_ranges"):
        run_pipeline(tiny_mlp, [(0, 3), (3, 5)], "gpipe", microbatches=2, global_batch=8)
    with pytest.raises(ValueError, match="no \\(partition, schedule\\) pair fits"):
        engine_check(tiny_mlp, {"u": [(0, 6)]}, ["gpipe"], [2], 8)


# --------------------------------------------------------------------------- real 2-process runs


ALL_SCHEDULE_JOBS = (
    PipelineJob("gpipe", ((0, 2), (2, 6)), "gpipe", 4, return_grads=True),
    PipelineJob("1f1b", ((0, 3), (3, 6)), "1f1b", 4, return_grads=True),
    PipelineJob("interleaved-1f1b", ((0, 1), (1, 3), (3, 4), (4, 6)), "interleaved-1f1b", 4, return_grads=True),
    PipelineJob("zbv", ((0, 1), (1, 3), (3, 4), (4, 6)), "zbv", 4, return_grads=True),
    PipelineJob("dualpipev", ((0, 2), (2, 3), (3, 5), (5, 6)), "dualpipev", 4, return_grads=True),
)


@pytest.mark.slow
def test_pipeline_loss_and_gradients_equal_single_process() -> None:
    global_batch = 16
    payloads = run_ranks(PipelineTask(tiny_mlp, (TINY_WIDTHS[0],), global_batch, ALL_SCHEDULE_JOBS), 2,
                         timeout_s=120)
    # the single-process reference, on the same data as the ranks draw it
    model = tiny_mlp()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((global_batch, TINY_WIDTHS[0]), generator=gen)
    y = torch.randn((global_batch, TINY_WIDTHS[-1]), generator=gen)
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    for job in ALL_SCHEDULE_JOBS:
        grads: dict[str, torch.Tensor] = {}
        losses = []
        for p in payloads:
            grads.update(p["jobs"][job.key]["grads"])
            if "loss" in p["jobs"][job.key]:
                losses.append(p["jobs"][job.key]["loss"])
        assert losses == [pytest.approx(loss.item(), rel=1e-6)], job.key
        assert set(grads) == {name for name, _ in model.named_parameters()}, job.key
        for name, param in model.named_parameters():
            torch.testing.assert_close(grads[name], param.grad, rtol=1e-5, atol=1e-7, msg=f"{job.key}: {name}")


@pytest.mark.slow
def test_engine_check_timing_path_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    rows = engine_check(
        tiny_mlp, {"uniform": [(0, 3), (3, 6)], "dp_min_max": [(0, 4), (4, 6)]}, ["gpipe", "1f1b"], [2, 4],
        16, warmup_steps=1, rounds=2, steps_per_round=2, profile_warmup=0, profile_repeats=1,
        link_sizes_bytes=(4096, 4 << 20), malloc_steady=True,
        progress=lines.append,
    )
    assert [(r.strategy, r.schedule, r.microbatches) for r in rows] == [
        (s, sch, m) for s in ("uniform", "dp_min_max") for sch in ("gpipe", "1f1b") for m in (2, 4)
    ]
    for r in rows:
        assert r.steps == 4
        assert r.measured_s > 0 and r.predicted_s > 0 and r.predicted_sim_s > 0
        assert r.predicted_s >= r.predicted_sim_s
        assert math.isclose(r.error, (r.predicted_s - r.measured_s) / r.measured_s)
        assert r.noise >= 0 and math.isfinite(r.loss)
        assert r.link_bandwidth_GBps > 0 and r.link_latency_s >= 0
    assert any("link latency" in line for line in lines)
    write_engine_check(tmp_path / "e.csv", rows)
    assert (tmp_path / "e.csv").read_text().count("\n") == len(rows) + 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [({"_fail_rank": 1}, r"^rank 1 failed:(.|\n)*injected failure on rank 1"),
     ({"_crash_rank": 0}, r"^rank 0 exited with code 3 without reporting"),
     ({"_crash_rank": 1}, r"^rank 1 exited with code 3 without reporting")],
)
def test_failing_rank_raises_quickly_and_leaves_no_workers(kwargs: dict, pattern: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(EngineError, match=pattern):
        run_pipeline(tiny_mlp, [(0, 3), (3, 6)], "gpipe", microbatches=2, global_batch=8,
                     collective_timeout_s=60, timeout_s=60, **kwargs)
    # well under the 60 s collective timeout: the parent did not wait for the survivor
    assert time.monotonic() - t0 < 30
    assert multiprocessing.active_children() == []


@pytest.mark.slow
def test_interrupt_in_parent_stops_all_workers() -> None:
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 4.0)  # mid-run: the steps below would take minutes
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(tiny_mlp, [(0, 3), (3, 6)], "gpipe", microbatches=2, global_batch=8,
                         warmup_steps=0, measure_steps=1_000_000)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - t0 < 20
    assert multiprocessing.active_children() == []
