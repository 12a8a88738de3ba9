"""Tests of balance.py and bubblereduce.fb_balance (forward/backward imbalance compensation).

End-to-end cases run ``main()`` on a tiny recomputation model profiled once per module
and check the outputs against each other and against values recomputed independently
from ``profile.json`` (block sums, comm seconds, partitions and makespans are rebuilt
here with numpy, brute force and the simulator, not with the module's helpers).
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import balance as script
from bubblereduce import fb_balance as fb
from bubblereduce import models
from bubblereduce.config import script_knobs
from bubblereduce.partition import dp_min_max
from bubblereduce.profile import load_profiles
from bubblereduce.schedules import SCHEDULES
from bubblereduce.simulate import simulate
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

TINY_CKPT = [0, 1, 2, 3]
TINY_HEAD = 96
ALPHAS = [0.0, 0.5, 1.0, 1.25, 1.5, 2.0, 3.0]


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) profile of the balance model at the microbatch sizes of MICROBATCHES."""
    net = fb.build_balance_model(TINY_WIDTHS, TINY_CKPT, TINY_HEAD, seed=0)
    return save_tiny_profile(net, tmp_path_factory.mktemp("profile") / "tiny_balance_profile.json")


def tiny_args(profile: Path | None, out_dir: Path, *extra: str) -> list[str]:
    """Arguments for a tiny run; ``extra`` ``--key=value`` items replace the defaults here."""
    base = {**BASE_ARGS, "checkpoint_layers": ",".join(map(str, TINY_CKPT)), "head_width": str(TINY_HEAD)}
    return cli_args(base, profile, out_dir, extra)


def block_sums(profile, block_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent block grouping: (f, b, act_bytes of each block's last layer)."""
    f = np.array([layer.forward_s for layer in profile.layers])
    b = np.array([layer.backward_s for layer in profile.layers])
    act = np.array([layer.act_bytes for layer in profile.layers])
    starts = range(0, len(f), block_n)
    return (np.array([f[s:s + block_n].sum() for s in starts]), np.array([b[s:s + block_n].sum() for s in starts]),
            np.array([act[min(s + block_n, len(f)) - 1] for s in starts]))


def parse_parts(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (t.split(":") for t in text.split())]


def brute_min_max(costs: np.ndarray, p: int) -> float:
    n = len(costs)
    best = math.inf
    for cuts in itertools.combinations(range(1, n), p - 1):
        edges = [0, *cuts, n]
        best = min(best, max(costs[a:e].sum() for a, e in itertools.pairwise(edges)))
    return best


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_end_to_end_files_and_consistency(tiny_profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "figs_fb"
    assert script.main(tiny_args(tiny_profile, out)) == 0
    printed = capsys.readouterr().out
    assert "wall time" in printed and "B/F" in printed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"

    tokens = [f"{b:g}GBps" for b in BANDWIDTHS]
    for s in SCHEDULES:
        for tok in tokens:
            for prefix in ("makespan", "bubble", "speedup"):
                assert (out / f"{prefix}_{s}_{tok}.png").stat().st_size > 1000
    for name in ("stage_loads_baseline.png", "stage_loads_alpha.png", "alpha_sweep.png"):
        assert (out / name).stat().st_size > 1000
    for name in ("profile.json", "config.json", "env.json", "summary.txt", "results.csv"):
        assert (out / name).exists()

    rows = read_rows(out / "results.csv")
    strategies = [f"alpha_{a:g}" for a in ALPHAS] + ["schedule_aware"]
    keys = [(r["schedule"], float(r["bandwidth_GBps"]), int(r["microbatches"]), r["strategy"]) for r in rows]
    assert len(set(keys)) == len(keys)
    assert set(keys) == {(s, b, m, k) for s in SCHEDULES for b in BANDWIDTHS for m in MICROBATCHES for k in strategies}

    cfg = json.loads((out / "config.json").read_text())
    profiles = {p.meta.microbatch_size: p for p in load_profiles(out / "profile.json")}
    assert [layer.name for layer in profiles[4].layers] == [
        f"fc{k}_ckpt" if k in TINY_CKPT else f"fc{k}" for k in range(len(TINY_WIDTHS) - 1)
    ] + ["head"]
    cells: dict[tuple[str, float, int], dict[str, dict[str, str]]] = {}
    for r in rows:
        cells.setdefault((r["schedule"], float(r["bandwidth_GBps"]), int(r["microbatches"])), {})[r["strategy"]] = r

    for (s, bw, m), cell in cells.items():
        base, ref = float(cell["alpha_1"]["makespan_s"]), float(cell["schedule_aware"]["makespan_s"])
        # the reference search starts from dp_min_max on f + b, so it is never slower than alpha = 1
        assert ref <= base * (1 + 1e-9)
        v = int(cell["alpha_1"]["stages_per_device"])
        f, b, act = block_sums(profiles[GLOBAL_BATCH // m], 2 if v == 1 else 1)
        comm = cfg["latency_s"] + act / (bw * 1e9)
        for k, r in cell.items():
            span = float(r["makespan_s"])
            assert math.isclose(float(r["speedup_vs_alpha_1"]), base / span, rel_tol=1e-12)
            assert math.isclose(float(r["gap_to_best"]), span / ref - 1, rel_tol=1e-9, abs_tol=1e-12)
            parts = parse_parts(r["partition"])
            stage_b = np.array([b[a:e].sum() for a, e in parts])
            assert math.isclose(float(r["backward_imbalance"]), stage_b.max() / stage_b.mean(), rel_tol=1e-9)
            if k == "schedule_aware":
                assert r["alpha"] == ""
                continue
            alpha = float(r["alpha"])
            assert k == f"alpha_{alpha:g}"
            # each alpha row is dp_min_max on f + alpha * b with the comm seconds as tie-break
            assert parts == [tuple(p) for p in dp_min_max(f + alpha * b, comm, len(parts))]
            if alpha == 1.0:  # alpha = 1 IS the baseline f + b partition
                assert parts == [tuple(p) for p in dp_min_max(f + b, comm, len(parts))]
            if s in ("gpipe", "1f1b"):  # re-simulate from independent stage sums
                fs = [f[a:e].sum() for a, e in parts]
                bs = [b[a:e].sum() for a, e in parts]
                cs = [comm[e - 1] for _, e in parts[:-1]]
                assert math.isclose(simulate(s, fs, bs, m, comm=cs).makespan, span, rel_tol=1e-9)

    summary = (out / "summary.txt").read_text()
    for needle in ("b/f", "Backward balance", "Verdict", "In plain words", "Best fixed alpha per schedule"):
        assert needle in summary
    rep = cells[("gpipe", BANDWIDTHS[0], 4)]
    assert f"alpha = 1 [{rep['alpha_1']['partition']}]" in summary
    assert f"alpha = 2 [{rep['alpha_2']['partition']}]" in summary
    # best fixed alpha per schedule: smallest mean gap over the schedule's cells, ties to the alpha nearest 1
    for s in SCHEDULES:
        mean_gap = {a: statistics.fmean(float(c[f"alpha_{a:g}"]["gap_to_best"]) for (sc, _, _), c in cells.items()
                                        if sc == s) for a in ALPHAS}
        lo = min(mean_gap.values())
        best = min((a for a, g in mean_gap.items() if g <= lo + 1e-9 * (1 + abs(lo))), key=lambda a: (abs(a - 1), a))
        assert f"- {s}: best alpha {best:g} (" in summary


@pytest.mark.slow
def test_rerun_from_saved_profile_is_byte_identical(tiny_profile: Path, tmp_path: Path) -> None:
    few = ["--schedules=gpipe,1f1b,zb-h1", "--bandwidths_GBps=0.001", "--alphas=0,1,3"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert script.main(tiny_args(tiny_profile, a, *few)) == 0
    assert script.main(tiny_args(a / "profile.json", b, *few)) == 0
    for name in ("results.csv", "summary.txt", "profile.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # alpha = 2 is planned even when the sweep leaves it out, and so is the baseline
    assert {r["strategy"] for r in read_rows(a / "results.csv")} == {
        "alpha_0", "alpha_1", "alpha_2", "alpha_3", "schedule_aware"}


def test_failure_while_writing_leaves_nothing(
    tiny_profile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bubblereduce import plotting

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(plotting, "plot_stage_loads", broken)  # fails after results.csv and 6 plots
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        script.main(tiny_args(tiny_profile, out, "--schedules=1f1b", "--bandwidths_GBps=0.001", "--alphas=1"))
    assert list(tmp_path.iterdir()) == []  # neither out_dir nor a staging folder


# --------------------------------------------------------------------------- bad input


BAD_INPUT = [
    (["--alpha=-1"], "alpha"),
    (["--alpha=nan"], "alpha"),
    (["--alphas=1,1"], "alphas"),
    (["--alphas=0,-0.5"], "alphas"),
    (["--alphas=[]"], "alphas"),
    (["--alpha=1.0000001"], "significant digits"),
    (["--head_width=0"], "head_width"),
    (["--checkpoint_layers=0,8"], "checkpoint_layers"),
    (["--checkpoint_layers=1,1"], "checkpoint_layers"),
    (["--schedules=gpipe,nope"], "unknown schedule"),
    (["--nope=1"], "unknown config key"),
    (["--num_stages=9"], "num_stages"),
    (["--microbatches=3,4"], "divide"),
    (["--representative_bandwidth_GBps=5"], "representative_bandwidth_GBps"),
]


@pytest.mark.parametrize(("extra", "needle"), BAD_INPUT)
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], needle: str
) -> None:
    out = tmp_path / "out"
    assert script.main(tiny_args(None, out, *extra)) == 2  # no profile: fails before measuring
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]
    assert list(tmp_path.iterdir()) == []


def test_missing_or_mismatched_profile(tiny_profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert script.main(tiny_args(tmp_path / "missing.json", out)) == 2
    assert "missing.json" in capsys.readouterr().err
    # the saved profile has sizes 4 and 2 only: m = 2 needs size 8
    assert script.main(tiny_args(tiny_profile, out, "--microbatches=2,4", "--representative_microbatches=4")) == 2
    assert "size 8" in capsys.readouterr().err
    assert not out.exists()


def test_help_lists_every_knob(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        script.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for key in script_knobs(vars(script)):
        assert f"--{key}" in text
    assert {"alpha", "alphas", "num_stages", "block_n", "out_dir", "schedules", "bandwidths_GBps",
            "microbatches", "profile_path"} <= set(script_knobs(vars(script)))
    assert script.alpha == 2.0 and script.out_dir == "figs_fb" and script.threads == 1
    assert {0.0, 0.5, 1.0, 1.25, 1.5, 2.0, 3.0} <= set(script.alphas)


# --------------------------------------------------------------------------- units


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(1e-4, 1.0), min_size=2, max_size=9),
    st.lists(st.floats(0.5, 5.0), min_size=9, max_size=9),
    st.integers(1, 4),
    st.sampled_from([0.0, 0.5, 1.0, 1.25, 2.0, 3.0]),
    st.sampled_from([1e-4, 1.0, 1e4]),
)
def test_alpha_partition_is_min_max_on_f_plus_alpha_b(
    f: list[float], ratio: list[float], p: int, alpha: float, scale: float
) -> None:
    n = len(f)
    p = min(p, n)
    fa = np.array(f) * scale
    ba = fa * np.array(ratio[:n])
    comm = np.linspace(1.0, 2.0, n) * scale * 1e-3
    parts = fb.alpha_partition(fa, ba, comm, p, alpha)
    assert parts[0][0] == 0 and parts[-1][1] == n and len(parts) == p
    assert all(a < e for a, e in parts) and all(e == a2 for (_, e), (a2, _) in itertools.pairwise(parts))
    cost = fa + alpha * ba
    got = max(cost[a:e].sum() for a, e in parts)
    assert math.isclose(got, brute_min_max(cost, p), rel_tol=1e-9)
    if alpha == 1.0:
        assert parts == [tuple(x) for x in dp_min_max(fa + ba, comm, p)]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=8), st.floats(0.0, 4.0))
def test_alpha_costs(f: list[float], alpha: float) -> None:
    b = [2 * x + 1 for x in f]
    got = fb.alpha_costs(f, b, alpha)
    assert np.array_equal(got, np.array(f) + alpha * np.array(b))
    assert np.array_equal(fb.alpha_costs(f, b, 1.0), np.array(f) + np.array(b))  # bitwise: 1.0 * b == b


def test_alpha_checks_and_labels() -> None:
    assert [fb.alpha_label(a) for a in (1, 1.0, 2.0, 0.5, 0)] == ["alpha_1", "alpha_1", "alpha_2", "alpha_0.5", "alpha_0"]
    assert fb.sweep_alphas([0.0, 3.0, 0.5], 2.0) == [0.0, 0.5, 1.0, 2.0, 3.0]
    assert fb.sweep_alphas([1.0], 1.0) == [1.0]
    for bad in (-0.1, math.inf, math.nan, "2", True):
        with pytest.raises(ValueError, match="alpha"):
            fb.alpha_label(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="equal length"):
        fb.alpha_costs([1.0, 2.0], [1.0], 1.0)


def test_backward_imbalance_oracle(tiny_profile: Path) -> None:
    from bubblereduce import experiment as ex

    prof = load_profiles(tiny_profile)[0]
    costs = ex.block_costs(prof, 1)
    b = np.array([layer.backward_s for layer in prof.layers])
    parts = [(0, 3), (3, 4), (4, len(b))]
    stage = np.array([b[0:3].sum(), b[3:4].sum(), b[4:].sum()])
    assert math.isclose(fb.backward_imbalance(costs, parts), stage.max() / stage.mean(), rel_tol=1e-12)
    assert fb.backward_imbalance(costs, [(0, len(b))]) == 1.0


def test_recompute_matches_inner_and_reruns_forward() -> None:
    inner = models.build_mlp([8, 12, 6], seed=3)
    wrapped = fb.Recompute(models.build_mlp([8, 12, 6], seed=3))
    calls = []
    wrapped.inner.register_forward_pre_hook(lambda *_: calls.append(1))  # the recompute may stop early
    x = models.mlp_input(5, 8, seed=1).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    y, y2 = inner(x), wrapped(x2)
    assert torch.equal(y, y2)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(y, [x, *inner.parameters()], g)
    grads2 = torch.autograd.grad(y2, [x2, *wrapped.parameters()], g)
    for a, b in zip(grads, grads2, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    assert len(calls) == 2  # forward once, then again inside the backward
    with torch.no_grad():
        assert torch.equal(wrapped(x2), y)
    assert len(calls) == 3  # no recomputation machinery without grad


def test_build_balance_model_layout_and_seed() -> None:
    net = fb.build_balance_model([8, 16, 4, 8], [1], head_width=10, seed=2)
    assert [n for n, _ in net.named_children()] == ["fc0", "fc1_ckpt", "fc2", "head"]
    assert isinstance(net.fc1_ckpt, fb.Recompute)
    out = net(models.mlp_input(3, 8))
    assert out.shape == (3, 10)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(3), atol=1e-5)  # log-probabilities
    again = fb.build_balance_model([8, 16, 4, 8], [1], head_width=10, seed=2)
    for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other = fb.build_balance_model([8, 16, 4, 8], [1], head_width=10, seed=3)
    assert not torch.equal(net.state_dict()["head.0.weight"], other.state_dict()["head.0.weight"])
    with pytest.raises(ValueError, match="checkpoint_layers"):
        fb.build_balance_model([8, 16, 4, 8], [3], head_width=10)
    with pytest.raises(ValueError, match="head_width"):
        fb.build_balance_model([8, 16, 4, 8], [], head_width=0)
