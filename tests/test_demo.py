"""End-to-end and unit tests of the main demo (pipeline_partition_demo.py, bubblereduce.demo/experiment).

The end-to-end cases run ``main()`` on a tiny MLP profile saved once per module and
check the outputs against each other and against bounds recomputed independently
from ``profile.json`` (not from the demo's own helpers).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipeline_partition_demo as script
from bubblereduce import experiment as ex
from bubblereduce import models
from bubblereduce.config import script_knobs
from bubblereduce.profile import load_profiles
from bubblereduce.schedules import NEEDS_W, SCHEDULES
from tests.tiny_run import (
    BANDWIDTHS,
    BASE_ARGS,
    GLOBAL_BATCH,
    MICROBATCHES,
    TINY_WIDTHS,
    cli_args,
    read_rows,
    save_tiny_profile,
)


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) profile at the microbatch sizes of MICROBATCHES, saved as JSON."""
    return save_tiny_profile(models.build_mlp(TINY_WIDTHS, seed=0),
                             tmp_path_factory.mktemp("profile") / "tiny_profile.json")


def tiny_args(profile: Path | None, out_dir: Path, *extra: str) -> list[str]:
    """Arguments for a tiny run (``profile`` None: measure the tiny MLP); ``extra`` ``--key=value`` items win."""
    return cli_args(BASE_ARGS, profile, out_dir, extra)


def device_of(schedule: str, stage: int, num_devices: int) -> int:
    """Stage -> device placement, written out from docs/architecture.md (independent of the code)."""
    if schedule in ("zbv", "dualpipev"):
        return stage if stage < num_devices else 2 * num_devices - 1 - stage
    return stage % num_devices


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_end_to_end_files_and_consistency(tiny_profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "figs"
    assert script.main(tiny_args(tiny_profile, out)) == 0
    printed = capsys.readouterr().out
    assert "wall time" in printed and str(out) in printed

    rows = read_rows(out / "results.csv")
    strategies = list(ex.STRATEGIES)
    schedules = list(SCHEDULES)
    tokens = [ex.bandwidth_token(b) for b in BANDWIDTHS]
    # every file the brief names
    for s in schedules:
        for tok in tokens:
            for prefix in ("makespan", "bubble", "speedup"):
                assert (out / f"{prefix}_{s}_{tok}.png").stat().st_size > 1000
        assert (out / f"timeline_{s}_uniform.png").exists()
        assert (out / f"timeline_{s}_uniform_vs_best.png").exists()
        assert (out / f"trace_{s}_uniform.json").exists()
    for name in ("profile.json", "config.json", "env.json", "summary.txt"):
        assert (out / name).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"

    # one row per (schedule, bandwidth, microbatches, strategy)
    keys = [(r["schedule"], float(r["bandwidth_GBps"]), int(r["microbatches"]), r["strategy"]) for r in rows]
    assert len(set(keys)) == len(keys)
    expected = {(s, b, m, k) for s in schedules for b in BANDWIDTHS for m in MICROBATCHES for k in strategies}
    assert set(keys) == expected

    profiles = {p.meta.microbatch_size: p for p in load_profiles(out / "profile.json")}
    cfg = json.loads((out / "config.json").read_text())
    latency = cfg["latency_s"]
    cells: dict[tuple[str, float, int], dict[str, dict[str, str]]] = {}
    for r in rows:
        cells.setdefault((r["schedule"], float(r["bandwidth_GBps"]), int(r["microbatches"])), {})[r["strategy"]] = r

    for r in rows:
        s, m, bw = r["schedule"], int(r["microbatches"]), float(r["bandwidth_GBps"])
        span = float(r["makespan_s"])
        cell = cells[(s, bw, m)]
        # speedup = uniform makespan / makespan from the same CSV
        assert float(r["speedup_vs_uniform"]) == pytest.approx(float(cell["uniform"]["makespan_s"]) / span, rel=1e-12)
        assert 0.0 <= float(r["bubble_fraction"]) < 1.0
        assert 0.0 <= float(r["comm_share"]) < 1.0
        assert float(r["makespan_no_comm_s"]) <= span * (1 + 1e-12)
        # microbatches split a fixed global batch
        assert int(r["microbatch_size"]) * m == GLOBAL_BATCH

        # recompute stage costs from profile.json, layer by layer
        prof = profiles[int(r["microbatch_size"])]
        block_n = int(r["block_n"])
        parts = ex.parse_partition_text(r["partition"])
        n_layers = len(prof.layers)
        n_blocks = math.ceil(n_layers / block_n)
        assert parts[0][0] == 0 and parts[-1][1] == n_blocks and len(parts) == int(r["num_stages"])
        assert all(a < b for a, b in parts) and all(p[1] == q[0] for p, q in zip(parts, parts[1:], strict=False))
        lay = [(k * block_n, min((k + 1) * block_n, n_layers)) for k in range(n_blocks)]
        f = np.array([sum(prof.layers[i].forward_s for i in range(lay[a][0], lay[b - 1][1])) for a, b in parts])
        bwd = np.array([sum(prof.layers[i].backward_s for i in range(lay[a][0], lay[b - 1][1])) for a, b in parts])
        act = [prof.layers[lay[b - 1][1] - 1].act_bytes for _, b in parts[:-1]]
        comm = np.array([latency + a / (bw * 1e9) for a in act])
        assert float(r["bottleneck_s"]) == pytest.approx(float(np.max(f + bwd)), rel=1e-9)
        assert int(r["boundary_bytes_total"]) == sum(act)
        assert int(r["boundary_bytes_max"]) == max(act)
        # input-gradient part: the measured I share of the measured B (w = b * W / (I + W))
        if s in NEEDS_W:
            i_part = []
            for a, b in parts:
                tot = 0.0
                for blk in range(a, b):
                    ls = range(lay[blk][0], lay[blk][1])
                    i_s = sum(prof.layers[i].input_grad_s for i in ls)
                    w_s = sum(prof.layers[i].weight_grad_s for i in ls)
                    b_s = sum(prof.layers[i].backward_s for i in ls)
                    tot += b_s * (i_s / (i_s + w_s) if i_s + w_s > 0 else 1.0)
                i_part.append(tot)
            i_arr = np.array(i_part)
        else:
            i_arr = bwd
        # lower bounds (semantics §6): one microbatch's round trip, and each device's work
        assert span >= (float(np.sum(f + i_arr)) + 2 * float(comm.sum())) * (1 - 1e-9)
        busy = np.zeros(int(r["num_devices"]))
        for st_idx in range(len(parts)):
            busy[device_of(s, st_idx, int(r["num_devices"]))] += m * (f[st_idx] + bwd[st_idx])
        assert span >= float(busy.max()) * (1 - 1e-9)
        # bubble = 1 - compute / (devices x makespan)
        expect_bubble = 1 - m * float(np.sum(f + bwd)) / (int(r["num_devices"]) * span)
        assert float(r["bubble_fraction"]) == pytest.approx(expect_bubble, abs=1e-9)

    for cell in cells.values():
        dp = cell["dp_min_max"]
        # dp_min_max has the smallest bottleneck of all strategies (same blocks)
        for r in cell.values():
            assert float(dp["bottleneck_s"]) <= float(r["bottleneck_s"]) * (1 + 1e-9)
        # dp_slack within its slack, schedule_aware never slower than dp_min_max
        assert float(cell["dp_slack"]["bottleneck_s"]) <= float(dp["bottleneck_s"]) * (1 + cfg["slack"]) * (1 + 1e-9)
        assert float(cell["dp_slack"]["boundary_bytes_total"]) <= float(dp["boundary_bytes_total"])
        assert float(cell["schedule_aware"]["makespan_s"]) <= float(dp["makespan_s"]) * (1 + 1e-9)

    # timelines: uniform and the best strategy of the representative configuration
    rep = cells[(schedules[0], BANDWIDTHS[0], 4)]
    best = min((r for k, r in rep.items() if k != "uniform"), key=lambda r: float(r["makespan_s"]))
    trace = json.loads((out / f"trace_{schedules[0]}_{best['strategy']}.json").read_text())
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("cat") == "F"]
    assert len(events) == 2 * 4  # stages x microbatches
    end_us = max(e["ts"] + e["dur"] for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("cat") != "transfer")
    assert end_us == pytest.approx(float(best["makespan_s"]) * 1e6, rel=1e-9)

    summary = (out / "summary.txt").read_text()
    for s in schedules:
        assert f"- {s}, " in summary
    assert "schedule_aware vs dp_min_max" in summary and "dp_slack" in summary
    assert cfg["num_stages"] == 2 and cfg["out_dir"] == str(out)


@pytest.mark.slow
def test_rerun_from_saved_profile_is_byte_identical(tmp_path: Path) -> None:
    few = ["--schedules=1f1b,zb-h1,zbv", "--bandwidths_GBps=0.001", "--warmup=0", "--repeats=1"]
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    # a measures; b and c repeat it from a's profile.json, the documented way to reproduce a run
    assert script.main(tiny_args(None, a, *few)) == 0
    assert script.main(tiny_args(a / "profile.json", b, *few)) == 0
    assert script.main(tiny_args(a / "profile.json", c, *few)) == 0
    for name in ("results.csv", "summary.txt", "profile.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes() == (c / name).read_bytes(), name


@pytest.mark.slow
def test_schedule_that_cannot_run_some_counts_skips_those_cells(
    tiny_profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # dualpipev on 3 devices needs m >= 6: m=4 (the representative count) is skipped, m=8 runs
    out = tmp_path / "out"
    args = tiny_args(tiny_profile, out, "--num_stages=3", "--schedules=1f1b,dualpipev", "--bandwidths_GBps=0.001")
    assert script.main(args) == 0
    printed = capsys.readouterr().out
    assert "note: dualpipev skipped at m=4" in printed and "note: no timeline for dualpipev" in printed
    rows = read_rows(out / "results.csv")
    assert {int(r["microbatches"]) for r in rows if r["schedule"] == "dualpipev"} == {8}
    assert {int(r["microbatches"]) for r in rows if r["schedule"] == "1f1b"} == {4, 8}
    assert "dualpipev cannot run with m = 4 on 3 devices" in (out / "summary.txt").read_text()
    assert (out / "speedup_dualpipev_0.001GBps.png").exists()
    assert not list(out.glob("timeline_dualpipev_*"))


# --------------------------------------------------------------------------- bad input


BAD_INPUT = [
    (["--num_stages=0"], "num_stages"),
    (["--num_stages=9"], "num_stages"),
    (["--microbatches=3,4"], "divide"),
    (["--schedules=gpipe,nope"], "unknown schedule"),
    (["--nope=1"], "unknown config key"),
    (["--num_stages=two"], "num_stages"),
    (["--bandwidths_GBps=0"], "bandwidths_GBps"),
    (["--representative_microbatches=2"], "representative_microbatches"),
    (["--comm_mode=sometimes"], "comm_mode"),
    (["--engine_check=True", "--mlp_widths=8,8"], "engine_check"),  # 1-layer MLP vs the 8-layer profile
    (["--multi_stage_block_n=4"], "multi_stage_block_n"),  # 2 blocks cannot hold 2 x 2 model stages
]


@pytest.mark.parametrize(("extra", "needle"), BAD_INPUT)
def test_bad_input_exits_2_and_writes_nothing(
    tiny_profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], needle: str
) -> None:
    out = tmp_path / "out"
    assert script.main(tiny_args(tiny_profile, out, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]
    assert list(tmp_path.iterdir()) == []


def test_missing_corrupt_profile_and_unwritable_out_dir(tmp_path: Path, capsys: pytest.CaptureFixture, tiny_profile: Path) -> None:
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = [
        tiny_args(tmp_path / "missing.json", tmp_path / "out"),
        tiny_args(corrupt, tmp_path / "out"),
        tiny_args(tiny_profile, blocker / "out"),
    ]
    for args in cases:
        assert script.main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "corrupt.json"]


def test_profile_without_the_needed_size_is_rejected(tiny_profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    args = tiny_args(tiny_profile, out, "--global_batch=32")  # needs sizes 8 and 4; file has 4 and 2
    assert script.main(args) == 2
    assert "microbatch sizes" in capsys.readouterr().err
    assert not out.exists()


def test_help_lists_every_knob(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        script.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for key in script_knobs(vars(script)):
        assert f"--{key}" in text


def test_default_microbatches_divide_the_global_batch() -> None:
    assert all(script.global_batch % m == 0 for m in script.microbatches)
    assert script.representative_microbatches in script.microbatches
    assert script.representative_bandwidth_GBps in script.bandwidths_GBps
    assert list(script.schedules) == list(SCHEDULES)


# --------------------------------------------------------------------------- helpers


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=8))
def test_partition_text_round_trip(sizes: list[int]) -> None:
    ends = np.cumsum(sizes).tolist()
    parts = list(zip([0, *ends[:-1]], ends, strict=True))
    assert ex.parse_partition_text(ex.partition_text(parts)) == parts
    with pytest.raises(ValueError, match="malformed"):
        ex.parse_partition_text("0-2 2:4")


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-3, 1e4, allow_nan=False))
def test_bandwidth_token_is_filename_safe(bw: float) -> None:
    tok = ex.bandwidth_token(bw)
    assert tok.endswith("GBps") and "/" not in tok and " " not in tok and "+" not in tok
    assert float(tok[:-4]) == pytest.approx(bw, rel=1e-5)


def test_stages_per_device() -> None:
    assert ex.model_stages_per_device("zbv", 3) == 2
    assert ex.model_stages_per_device("dualpipev", 1) == 2
    assert ex.model_stages_per_device("interleaved-1f1b", 3) == 3
    assert ex.model_stages_per_device("1f1b", 3) == 1


def test_block_costs_weight_share(tiny_profile: Path) -> None:
    prof = load_profiles(tiny_profile)[0]
    costs = ex.block_costs(prof, 3)
    assert costs.num_blocks == 3  # 8 layers in blocks of 3, 3, 2
    assert costs.weight_s is not None
    assert np.all(costs.weight_s >= 0) and np.all(costs.weight_s <= costs.backward_s)
    layers = prof.layers[6:8]
    i_s = sum(x.input_grad_s for x in layers)
    w_s = sum(x.weight_grad_s for x in layers)
    assert costs.weight_s[2] == pytest.approx(costs.backward_s[2] * w_s / (i_s + w_s), rel=1e-12)
    assert costs.forward_s.sum() == pytest.approx(sum(x.forward_s for x in prof.layers), rel=1e-12)
    assert int(costs.act_bytes[2]) == prof.layers[-1].act_bytes
    with pytest.raises(ValueError, match="block_n"):
        ex.block_costs(prof, 0)


def test_simulate_grid_uniform_speedup_is_one_and_order_is_stable(tiny_profile: Path) -> None:
    profs = {p.meta.microbatch_size: p for p in load_profiles(tiny_profile)}

    def costs_for(m: int, v: int) -> ex.BlockCosts:
        return ex.block_costs(profs[GLOBAL_BATCH // m], 1)

    planners = ex.standard_planners(strategies=["uniform", "dp_min_max"])
    rows = ex.simulate_grid(
        costs_for, planners, schedules=["gpipe", "1f1b"], microbatches=MICROBATCHES,
        bandwidths_GBps=BANDWIDTHS, num_devices=2, latency_s=1e-6,
    )
    assert [(r.schedule, r.bandwidth_GBps, r.microbatches, r.strategy) for r in rows] == [
        (s, b, m, k) for s in ["gpipe", "1f1b"] for b in BANDWIDTHS for m in MICROBATCHES for k in planners
    ]
    assert all(r.speedup_vs_uniform == 1.0 for r in rows if r.strategy == "uniform")
    # every stage runs m microbatches on one device: makespan >= m x bottleneck
    for r in rows:
        assert r.makespan_no_comm_s >= r.microbatches * r.bottleneck_s * (1 - 1e-12)
    with pytest.raises(ValueError, match="unknown strategy"):
        ex.standard_planners(strategies=["nope"])
