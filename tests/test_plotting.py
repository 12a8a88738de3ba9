"""Smoke and error tests for bubblereduce.plotting (figures are checked by eye, see report)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from bubblereduce.plotting import (
    plot_lines,
    plot_stage_loads,
    plot_timeline,
    plot_timelines,
    plot_timeseries,
    time_unit,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class FakeResult:
    """Stand-in with SimResult's fields: 2 devices, 2 microbatches, 1F1B-like."""

    makespan: float = 8e-3
    bubble_fraction: float = 0.25
    num_devices: int = 2
    events: tuple = (
        (0, "F", 0, 0, 0.0, 1e-3), (0, "F", 0, 1, 1e-3, 2e-3),
        (1, "F", 1, 0, 1.2e-3, 2.2e-3), (1, "B", 1, 0, 2.2e-3, 4.2e-3),
        (1, "F", 1, 1, 4.2e-3, 5.2e-3), (1, "B", 1, 1, 5.2e-3, 7.2e-3),
        (0, "B", 0, 0, 4.4e-3, 6.4e-3), (0, "B", 0, 1, 6.4e-3, 8e-3),
    )
    transfers: tuple = ((0, 1, "F", 0, 0, 1e-3, 1.2e-3), (1, 0, "B", 1, 0, 4.2e-3, 4.4e-3))


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000


def _only(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize(("max_s", "unit", "scale"),
                         [(2.0, "s", 1.0), (1.0, "s", 1.0), (0.5, "ms", 1e3), (1e-3, "ms", 1e3),
                          (5e-4, "µs", 1e6), (math.inf, "s", 1.0)])
def test_time_unit(max_s: float, unit: str, scale: float) -> None:
    assert time_unit(max_s) == (unit, scale)


def test_timeline_fake_result(tmp_path: Path) -> None:
    plot_timeline(FakeResult(), tmp_path / "t.png", "fake", stage_names=["a", "b"])
    plot_timeline(FakeResult(), tmp_path / "t2.png", "fake", show_transfers=False, xmax_s=0.02)
    assert _is_png(tmp_path / "t.png") and _is_png(tmp_path / "t2.png")
    assert _only(tmp_path) == ["t.png", "t2.png"], "no temp files left"


def test_timeline_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stage 1 has no name"):
        plot_timeline(FakeResult(), tmp_path / "t.png", "x", stage_names=["a"])
    bad = FakeResult(events=((0, "X", 0, 0, 0.0, 1.0),), transfers=())
    with pytest.raises(ValueError, match="unknown action kind 'X'"):
        plot_timeline(bad, tmp_path / "t.png", "x")
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.pdf"):
        plot_timeline(FakeResult(), tmp_path / "t.txt", "x")
    assert _only(tmp_path) == []


def test_timelines_real_simulator_every_schedule(tmp_path: Path) -> None:
    sim = pytest.importorskip("bubblereduce.simulate")
    from bubblereduce.schedules import NEEDS_W, SCHEDULES

    results, titles = [], []
    for name in SCHEDULES:
        spd = 2 if name in ("interleaved-1f1b", "zbv", "dualpipev") else 1
        n = 4 * spd
        f = [1e-3 * (1 + 0.1 * s) for s in range(n)]
        b = [2 * x for x in f]
        w = [0.8 * x for x in f] if name in NEEDS_W else None
        try:
            res = sim.simulate(name, f, b, 8, comm=[2e-4] * (n - 1), w=w, stages_per_device=spd)
        except (ValueError, ImportError, AttributeError) as exc:  # generator not there yet
            pytest.skip(f"{name}: {exc}")
        results.append(res)
        titles.append(name)
    # one figure with every schedule (one render keeps the test fast)
    plot_timelines(results, tmp_path / "all.png", titles=titles, title="all schedules",
                   stage_names=[[f"s{s}" for s in range(8)]] * len(results))
    assert _is_png(tmp_path / "all.png")


@pytest.mark.slow
def test_timeline_16_devices_64_microbatches(tmp_path: Path) -> None:
    sim = pytest.importorskip("bubblereduce.simulate")
    f = [1e-3 * (1 + (s % 3)) for s in range(16)]
    res = sim.simulate("1f1b", f, [2 * x for x in f], 64, comm=[1e-4] * 15)
    plot_timeline(res, tmp_path / "big.png", "16 x 64")
    assert _is_png(tmp_path / "big.png")


def test_timelines_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one result"):
        plot_timelines([], tmp_path / "x.png", titles=[], title="x")
    with pytest.raises(ValueError, match="titles has 1 entries for 2 results"):
        plot_timelines([FakeResult(), FakeResult()], tmp_path / "x.png", titles=["a"], title="x")


def test_plot_lines_and_determinism(tmp_path: Path) -> None:
    x = [1, 2, 4, 8]
    series = {"uniform": [4.0, 3.0, 2.5, 2.2], "dp": [3.0, 2.5, float("nan"), 2.0]}
    for k in range(2):
        plot_lines(x, series, tmp_path / f"l{k}.png", xlabel="microbatches",
                   ylabel="makespan (ms)", title="t", logx=True, reference_y=2.0,
                   reference_label="ref")
    assert _is_png(tmp_path / "l0.png")
    assert (tmp_path / "l0.png").read_bytes() == (tmp_path / "l1.png").read_bytes()
    many = {f"s{k}": [float(k)] * 4 for k in range(10)}
    plot_lines(x, many, tmp_path / "many.png", xlabel="x", ylabel="y", title="t", markers=False)
    assert _is_png(tmp_path / "many.png")


def test_plot_lines_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="series 'a' has 2 values but x has 3"):
        plot_lines([1, 2, 3], {"a": [1, 2]}, tmp_path / "x.png", xlabel="x", ylabel="y", title="t")
    with pytest.raises(ValueError, match="series is empty"):
        plot_lines([1], {}, tmp_path / "x.png", xlabel="x", ylabel="y", title="t")
    with pytest.raises(ValueError, match="logx needs x > 0"):
        plot_lines([0, 1], {"a": [1, 2]}, tmp_path / "x.png", xlabel="x", ylabel="y", title="t",
                   logx=True)
    assert _only(tmp_path) == []


def test_plot_stage_loads(tmp_path: Path) -> None:
    plot_stage_loads([1e-3, 2e-3], [2e-3, 4e-3], tmp_path / "a.png", title="t")
    plot_stage_loads([1e-3, 2e-3], [2e-3, 4e-3], tmp_path / "b.png", title="t", ymax=1e-2,
                     weight_s=[1e-3, 1.5e-3], stage_labels=["fc0..fc7", "fc8..fc15"])
    assert _is_png(tmp_path / "a.png") and _is_png(tmp_path / "b.png")
    with pytest.raises(ValueError, match="backward_s has 1 stages but forward_s has 2"):
        plot_stage_loads([1, 2], [1], tmp_path / "c.png", title="t")
    with pytest.raises(ValueError, match="weight_s must not exceed backward_s"):
        plot_stage_loads([1], [1], tmp_path / "c.png", title="t", weight_s=[2])
    with pytest.raises(ValueError, match="finite and >= 0"):
        plot_stage_loads([-1], [1], tmp_path / "c.png", title="t")
    assert not (tmp_path / "c.png").exists()


def test_plot_timeseries(tmp_path: Path) -> None:
    steps = list(range(50))
    plot_timeseries(steps, {"step time": [1.0 + 0.01 * s for s in steps]}, tmp_path / "ts.png",
                    ylabel="time (ms)", title="t", markers={"repartition": [10, 30]})
    assert _is_png(tmp_path / "ts.png")
    with pytest.raises(ValueError, match="has 2 values but x has 50"):
        plot_timeseries(steps, {"a": [1, 2]}, tmp_path / "x.png", ylabel="y", title="t")
