"""Tests for bubblereduce.io: atomic writes, staging, CSV round trip, JSON, env info, traces."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubblereduce.io import (
    StagedOutput,
    atomic_write_bytes,
    atomic_write_text,
    check_writable_dir,
    chrome_trace,
    environment_info,
    write_csv,
    write_json,
)


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one\n")
    assert target.read_text() == "one\n"
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert _listing(tmp_path) == ["a.txt"], "no temp files may remain"


def test_atomic_write_failure_keeps_old_content_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["a.txt"]


def test_atomic_write_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        atomic_write_text(tmp_path / "nope" / "a.txt", "x")


def test_csv_round_trip_exact_floats(tmp_path: Path) -> None:
    rows = [
        ["gpipe", 4, 0.1 + 0.2, np.float64(1 / 3), True, None],
        ["1f1b", np.int64(8), 1e-300, np.float32(0.1), False, "x,y"],
    ]
    path = tmp_path / "r.csv"
    write_csv(path, ["schedule", "m", "makespan_s", "other", "flag", "note"], rows)
    with open(path, newline="") as fh:
        got = list(csv.reader(fh))
    assert got[0] == ["schedule", "m", "makespan_s", "other", "flag", "note"]
    assert float(got[1][2]) == 0.1 + 0.2
    assert float(got[1][3]) == 1 / 3
    assert float(got[2][2]) == 1e-300
    assert float(got[2][3]) == float(np.float32(0.1))
    assert got[1][4:] == ["True", ""] and got[2][4:] == ["False", "x,y"]
    assert path.read_bytes().count(b"\r") == 0


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=10))
def test_csv_float_round_trip_property(tmp_path_factory: pytest.TempPathFactory, xs: list[float]) -> None:
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    write_csv(path, ["k", "x"], [[k, x] for k, x in enumerate(xs)])
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    assert [float(r[1]) for r in rows] == xs
    assert [int(r[0]) for r in rows] == list(range(len(xs)))


def test_csv_is_deterministic(tmp_path: Path) -> None:
    rows = [["a", 1.5], ["b", 2.25]]
    write_csv(tmp_path / "1.csv", ["k", "v"], rows)
    write_csv(tmp_path / "2.csv", ["k", "v"], rows)
    assert (tmp_path / "1.csv").read_bytes() == (tmp_path / "2.csv").read_bytes()


def test_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="row 1 has 1 cells but the header has 2"):
        write_csv(tmp_path / "x.csv", ["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="duplicate"):
        write_csv(tmp_path / "x.csv", ["a", "a"], [])
    with pytest.raises(TypeError, match="CSV cell"):
        write_csv(tmp_path / "x.csv", ["a"], [[[1, 2]]])
    assert _listing(tmp_path) == []


def test_write_json_numpy_and_nan(tmp_path: Path) -> None:
    obj = {"a": np.float64(0.1), "b": np.arange(3), "c": (1, 2), "d": Path("x/y"), "e": np.bool_(True)}
    write_json(tmp_path / "o.json", obj)
    text = (tmp_path / "o.json").read_text()
    assert text.endswith("\n")
    assert json.loads(text) == {"a": 0.1, "b": [0, 1, 2], "c": [1, 2], "d": "x/y", "e": True}
    with pytest.raises(ValueError, match="non-finite"):
        write_json(tmp_path / "bad.json", {"x": float("nan")})
    with pytest.raises(TypeError, match="keys must be str"):
        write_json(tmp_path / "bad.json", {1: 2})
    assert _listing(tmp_path) == ["o.json"]


def test_environment_info_fields_and_determinism() -> None:
    info = environment_info()
    for key in ("python", "platform", "cpu_count", "torch", "torch_threads", "numpy", "matplotlib"):
        assert key in info and info[key] is not None, key
    assert info == environment_info()
    import socket

    assert socket.gethostname() not in json.dumps(info)
    assert "time" not in " ".join(info)


@dataclass(frozen=True)
class FakeResult:
    events: tuple
    transfers: tuple
    num_devices: int


def _fake() -> FakeResult:
    events = (
        (0, "F", 0, 0, 0.0, 1e-3),
        (1, "F", 1, 0, 1.5e-3, 2.5e-3),
        (1, "B", 1, 0, 2.5e-3, 4.5e-3),
        (0, "B", 0, 0, 5e-3, 7e-3),
    )
    transfers = ((0, 1, "F", 0, 0, 1e-3, 1.5e-3), (1, 0, "B", 1, 0, 4.5e-3, 5e-3))
    return FakeResult(events, transfers, 2)


def test_chrome_trace_structure() -> None:
    trace = chrome_trace(_fake(), stage_names=["fc0..fc7", "fc8..fc15"])
    json.dumps(trace, allow_nan=False)  # strict JSON
    evs = trace["traceEvents"]
    meta = [e for e in evs if e["ph"] == "M"]
    complete = [e for e in evs if e["ph"] == "X"]
    names = {e["tid"]: e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    assert names == {0: "device 0", 1: "device 1", 2: "link 0->1", 3: "link 1->0"}
    assert len(complete) == 6
    compute = [e for e in complete if e["cat"] != "transfer"]
    assert [e["name"] for e in compute] == ["0F0", "1F0", "1B0", "0B0"]
    assert [e["tid"] for e in compute] == [0, 1, 1, 0]
    assert compute[1]["ts"] == pytest.approx(1500.0) and compute[1]["dur"] == pytest.approx(1000.0)
    assert compute[2]["args"] == {"stage": 1, "microbatch": 0, "stage_name": "fc8..fc15"}
    sends = [e for e in complete if e["cat"] == "transfer"]
    assert [e["tid"] for e in sends] == [2, 3]
    assert sends[0]["ts"] == pytest.approx(1000.0) and sends[0]["dur"] == pytest.approx(500.0)
    for e in complete:
        assert e["dur"] >= 0 and e["pid"] == 0


def test_chrome_trace_without_transfers_and_bad_stage_names() -> None:
    @dataclass(frozen=True)
    class Bare:
        events: tuple

    trace = chrome_trace(Bare(((2, "F", 2, 0, 0.0, 1.0),)))
    tids = {e["tid"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert tids == {0, 1, 2}
    with pytest.raises(ValueError, match="stage 1 has no name"):
        chrome_trace(_fake(), stage_names=["only one"])


def test_chrome_trace_from_simulator_if_present() -> None:
    simulate = pytest.importorskip("bubblereduce.simulate")
    res = simulate.simulate("1f1b", [1.0, 1.0], [2.0, 2.0], 3, comm=[0.5])
    trace = chrome_trace(res)
    complete = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["cat"] != "transfer"]
    assert len(complete) == len(res.events) == 12
    end_us = max(e["ts"] + e["dur"] for e in complete)
    assert end_us == pytest.approx(res.makespan * 1e6)


def test_check_writable_dir(tmp_path: Path) -> None:
    assert check_writable_dir(tmp_path / "new" / "deeper") == (tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists(), "the check must create nothing"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"out_dir '.*file' is not writable: it exists and is not a directory"):
        check_writable_dir(tmp_path / "file")
    with pytest.raises(ValueError, match="is not writable: .* is not a directory"):
        check_writable_dir(tmp_path / "file" / "figs")


def test_staged_output_success_moves_files(tmp_path: Path) -> None:
    out = tmp_path / "figs"
    with StagedOutput(out) as tmp:
        assert tmp.parent == tmp_path and tmp != out
        atomic_write_text(tmp / "a.txt", "a")
        (tmp / "sub").mkdir()
        atomic_write_text(tmp / "sub" / "b.txt", "b")
        assert not out.exists(), "nothing appears before the block succeeds"
    assert (out / "a.txt").read_text() == "a"
    assert (out / "sub" / "b.txt").read_text() == "b"
    assert _listing(tmp_path) == ["figs"], "staging dir removed"


def test_staged_output_failure_moves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "figs"
    out.mkdir()
    atomic_write_text(out / "a.txt", "previous run")
    with pytest.raises(RuntimeError):
        with StagedOutput(out) as tmp:
            atomic_write_text(tmp / "a.txt", "half")
            atomic_write_text(tmp / "b.txt", "half")
            raise RuntimeError("simulated crash")
    assert _listing(out) == ["a.txt"]
    assert (out / "a.txt").read_text() == "previous run"
    assert _listing(tmp_path) == ["figs"]


def test_staged_output_creates_missing_parents(tmp_path: Path) -> None:
    out = tmp_path / "x" / "y" / "figs"
    with StagedOutput(out) as tmp:
        atomic_write_text(tmp / "a.txt", "a")
    assert (out / "a.txt").read_text() == "a"
    assert sorted(os.listdir(tmp_path)) == ["x"]


def test_staged_output_unwritable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out_dir .* is not writable"):
        with StagedOutput(tmp_path / "file" / "figs"):
            pass  # pragma: no cover
    assert _listing(tmp_path) == ["file"]
