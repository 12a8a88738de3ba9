"""Tests for bubblereduce.simulate and the gpipe / 1f1b orders (semantics.md §3-§6)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bubblereduce import simulate as simulate_module
from bubblereduce.schedules import SCHEDULES, build_order
from bubblereduce.schedules.basic import gpipe, one_f_one_b
from bubblereduce.schedules.runs import Runs, arrays_to_order, expand_arrays, expand_lists
from bubblereduce.simulate import SimResult, comm_seconds, simulate, stage_comm_seconds
from tests.reference_sim import reference_simulate

REL = 1e-9
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def close(a: float, b: float, rel: float = REL) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0) or (a == b == 0.0)


def assert_same(fast: SimResult, ref: SimResult, scale: float) -> None:
    """Fast and reference results agree: scalars to REL, event times to REL * scale."""
    assert fast.num_devices == ref.num_devices
    assert close(fast.makespan, ref.makespan)
    assert fast.bubble_fraction == pytest.approx(ref.bubble_fraction, rel=1e-9, abs=1e-12)
    for name in ("busy", "span"):
        got, want = getattr(fast, name), getattr(ref, name)
        assert len(got) == len(want)
        assert all(g == pytest.approx(x, rel=1e-9, abs=1e-12 * scale) for g, x in zip(got, want, strict=True)), name
    assert fast.peak_inflight == pytest.approx(ref.peak_inflight, rel=1e-12)
    for name in ("events", "transfers"):
        got, want = list(getattr(fast, name)), list(getattr(ref, name))
        assert len(got) == len(want), name
        for g, x in zip(got, want, strict=True):  # both grouped by device, execution order
            assert g[:-2] == x[:-2], (name, g, x)
            assert g[-2:] == pytest.approx(x[-2:], rel=1e-9, abs=1e-12 * scale), (name, g, x)


# --------------------------------------------------------------------------- orders


def test_orders_match_semantics_text_p3_m4() -> None:
    # the table in basic.py's docstring, written out by hand
    def parse(text: str, s: int) -> list[tuple[str, int, int]]:
        return [(tok[0], s, int(tok[1:])) for tok in text.split()]

    assert gpipe(3, 4) == [parse("F0 F1 F2 F3 B0 B1 B2 B3", s) for s in range(3)]
    assert one_f_one_b(3, 4) == [
        parse("F0 F1 F2 B0 F3 B1 B2 B3", 0),
        parse("F0 F1 B0 F2 B1 F3 B2 B3", 1),
        parse("F0 B0 F1 B1 F2 B2 F3 B3", 2),
    ]
    # warm-up clipped by m: min(p - s - 1, m) forwards first
    assert one_f_one_b(4, 2)[0] == parse("F0 F1 B0 B1", 0)
    assert one_f_one_b(4, 2)[2] == parse("F0 F1 B0 B1", 2)
    assert one_f_one_b(4, 2)[3] == parse("F0 B0 F1 B1", 3)


@pytest.mark.parametrize("p", [1, 2, 5])
@pytest.mark.parametrize("m", [1, 3, 8])
def test_one_f_one_b_structure(p: int, m: int) -> None:
    for s, dev in enumerate(one_f_one_b(p, m)):
        kinds = "".join(k for k, _, _ in dev)
        warm = min(p - s - 1, m)
        assert kinds == "F" * warm + "FB" * (m - warm) + "B" * warm
        assert [j for k, _, j in dev if k == "F"] == list(range(m))
        assert [j for k, _, j in dev if k == "B"] == list(range(m))
        assert {st_ for _, st_, _ in dev} == {s}


@pytest.mark.parametrize("fn", [gpipe, one_f_one_b])
def test_basic_orders_reject_bad_args(fn) -> None:
    with pytest.raises(ValueError, match="stages_per_device must be exactly 1, got 2"):
        fn(4, 8, 2)
    with pytest.raises(ValueError, match="num_devices must be an integer >= 1, got 0"):
        fn(0, 8, 1)
    with pytest.raises(ValueError, match="microbatches must be an integer >= 1, got 0"):
        fn(2, 0, 1)


# each schedule's valid stages_per_device values (the array forms must match for all of them)
_V_GRID = {"gpipe": [1], "1f1b": [1], "zb-h1": [1], "zb-h2": [1], "interleaved-1f1b": [1, 2, 3, 4],
           "zbv": [2], "dualpipev": [2]}


@pytest.mark.parametrize("name", sorted(simulate_module._ARRAY_FORMS))
def test_array_forms_equal_list_orders(name: str) -> None:
    array_form = simulate_module._ARRAY_FORMS[name]
    checked = 0
    for p in [1, 2, 3, 4, 5, 8]:
        for m in [*range(1, 18), 24, 31, 32, 33]:
            for v in _V_GRID[name]:
                try:
                    lists = build_order(name, p * v, m, v)
                except ValueError as exc:
                    with pytest.raises(ValueError, match=re.escape(str(exc))):
                        array_form(p, m, v)
                    continue
                arrays = array_form(p, m, v)
                assert arrays.lengths.tolist() == [len(dev) for dev in lists]
                assert arrays_to_order(arrays) == lists, (name, p, m, v)
                checked += 1
    assert checked > 50


def test_runs_expand_and_clip() -> None:
    a, b = Runs(), Runs()
    a.run(3, ("F", 0, -1), ("B", 0, 1))  # repetitions r = 0, 1, 2 shift every microbatch by r
    a.run(0, ("W", 0, 0))  # empty runs vanish
    b.run(1, ("I", 1, 2))
    expected = [[("B", 0, 1), ("F", 0, 0), ("B", 0, 2), ("F", 0, 1)], [("I", 1, 2)]]
    assert expand_lists([a, b], 3) == expected  # microbatches outside 0..2 dropped
    assert arrays_to_order(expand_arrays([a, b], 3)) == expected
    assert arrays_to_order(expand_arrays([Runs(), b], 2)) == [[], []]


@pytest.mark.parametrize("name", SCHEDULES)
def test_named_fast_path_equals_explicit_order(name: str) -> None:
    v = {"interleaved-1f1b": 2, "zbv": 2, "dualpipev": 2}.get(name, 1)
    p, m = 3, 8
    rng = np.random.default_rng(7)
    f, b, comm = rng.uniform(0.1, 1, p * v), rng.uniform(0.1, 2, p * v), rng.uniform(0, 1, p * v - 1)
    w = b * rng.uniform(0, 1, p * v)
    for mode in ("overlap", "blocking"):
        by_name = simulate(name, f, b, m, comm=comm, comm_mode=mode, w=w, stages_per_device=v)
        by_order = simulate(build_order(name, p * v, m, v), f, b, m, comm=comm, comm_mode=mode, w=w)
        assert by_name == by_order  # bit-identical, events and transfers included


# --------------------------------------------------------------------------- identities §6


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p", [1, 2, 3, 8])
@pytest.mark.parametrize("m", [1, 2, 5, 13])
@pytest.mark.parametrize("scale", [1e-4, 1e4])
def test_closed_forms_uniform(name: str, p: int, m: int, scale: float) -> None:
    f, b = 0.37 * scale, 0.91 * scale
    for mode in ("overlap", "blocking"):
        r = simulate(name, [f] * p, [b] * p, m, comm=[0.0] * (p - 1), comm_mode=mode)
        assert close(r.makespan, (m + p - 1) * (f + b))
        assert close(r.bubble_fraction, (p - 1) / (m + p - 1)) or p == 1 and r.bubble_fraction < 1e-12
        assert close(1 - sum(r.busy) / (p * r.makespan), r.bubble_fraction)
        want_peak = [m] * p if name == "gpipe" else [min(p - s, m) for s in range(p)]
        assert r.peak_inflight == tuple(float(x) for x in want_peak)
        assert len(r.events) == 2 * p * m
        assert r.num_devices == p


@HYP
@given(
    name=st.sampled_from(["gpipe", "1f1b"]),
    p=st.integers(1, 6),
    m=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-4, 1.0, 1e4]),
    mode=st.sampled_from(["overlap", "blocking"]),
)
def test_lower_bounds_and_reference_named(name, p, m, seed, scale, mode) -> None:
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.1, 2.0, p) * scale
    b = rng.uniform(0.1, 3.0, p) * scale
    comm = rng.uniform(0.0, 1.5, p - 1) * scale
    r = simulate(name, f, b, m, comm=comm, comm_mode=mode)
    assert r.makespan >= max(r.busy) * (1 - REL)
    assert r.makespan >= (f.sum() + b.sum() + 2 * comm.sum()) * (1 - REL)
    assert_same(r, reference_simulate(name, f, b, m, comm=comm, comm_mode=mode), scale)


# --------------------------------------------------------------------------- random orders


def random_order(
    rng: np.random.Generator, num_devices: int, num_stages: int, m: int, split_prob: float
) -> list[list[tuple[str, int, int]]]:
    """A random deadlock-free order: a random topological sort of the action graph, split by device."""
    dev_of_stage = rng.permutation(
        np.concatenate([np.arange(num_devices), rng.integers(0, num_devices, num_stages - num_devices)])
    )
    split = rng.random((num_stages, m)) < split_prob
    needs: dict[tuple[str, int, int], list[tuple[str, int, int]]] = {}
    for s in range(num_stages):
        for j in range(m):
            needs[("F", s, j)] = [("F", s - 1, j)] if s > 0 else []
            grad = []
            if s < num_stages - 1:
                grad = [("I", s + 1, j) if split[s + 1, j] else ("B", s + 1, j)]
            if split[s, j]:
                needs[("I", s, j)] = [("F", s, j), *grad]
                needs[("W", s, j)] = [("I", s, j)]
            else:
                needs[("B", s, j)] = [("F", s, j), *grad]
    done: set[tuple[str, int, int]] = set()
    order: list[list[tuple[str, int, int]]] = [[] for _ in range(num_devices)]
    pending = sorted(needs)
    while pending:
        ready = [a for a in pending if all(x in done for x in needs[a])]
        a = ready[int(rng.integers(len(ready)))]
        pending.remove(a)
        done.add(a)
        order[int(dev_of_stage[a[1]])].append(a)
    return order


@HYP
@given(
    d=st.integers(1, 4),
    extra=st.integers(0, 4),
    m=st.integers(1, 5),
    split_prob=st.sampled_from([0.0, 0.5, 1.0]),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-4, 1e4]),
    mode=st.sampled_from(["overlap", "blocking"]),
)
def test_fast_equals_reference_random_orders(d, extra, m, split_prob, seed, scale, mode) -> None:
    rng = np.random.default_rng(seed)
    S = d + extra
    order = random_order(rng, d, S, m, split_prob)
    f = rng.uniform(0.0, 2.0, S) * scale
    b = rng.uniform(0.5, 3.0, S) * scale
    w = b * rng.uniform(0.0, 1.0, S)
    comm = rng.choice([0.0, 0.3, 2.5], S - 1) * scale
    r = simulate(order, f, b, m, comm=comm, comm_mode=mode, w=w)
    assert_same(r, reference_simulate(order, f, b, m, comm=comm, comm_mode=mode, w=w), scale)
    # lower bounds (§6); same-device boundaries are free
    dev_of = {a[1]: k for k, dev in enumerate(order) for a in dev}
    crossing = sum(comm[s] for s in range(S - 1) if dev_of[s] != dev_of[s + 1])
    i = b - w if split_prob > 0 else b  # the cheapest backward a microbatch can take
    assert r.makespan >= max(r.busy) * (1 - REL)
    assert r.makespan >= (f.sum() + i.sum() + 2 * crossing) * (1 - REL)
    assert all(s <= r.makespan * (1 + REL) for s in r.span)


@HYP
@given(
    d=st.integers(1, 3),
    extra=st.integers(0, 2),
    m=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["overlap", "blocking"]),
)
def test_shuffled_orders_deadlock_iff_reference_does(d, extra, m, seed, mode) -> None:
    rng = np.random.default_rng(seed)
    S = d + extra
    order = random_order(rng, d, S, m, 0.5)
    for dev in order:  # swap two actions on each device: often (not always) a deadlock
        if len(dev) > 1:
            x, y = rng.choice(len(dev), 2, replace=False)
            dev[x], dev[y] = dev[y], dev[x]
    f, b = rng.uniform(0.1, 1.0, S), rng.uniform(1.0, 2.0, S)
    w = 0.5 * b
    comm = rng.uniform(0, 1, S - 1)
    try:
        want = reference_simulate(order, f, b, m, comm=comm, comm_mode=mode, w=w)
    except ValueError as exc:
        assert str(exc).startswith("deadlock")
        with pytest.raises(ValueError, match=r"^deadlock: device \d+ waits at \d+[FBIW]\d+ for \d+[FBIW]\d+"):
            simulate(order, f, b, m, comm=comm, comm_mode=mode, w=w)
    else:
        assert_same(simulate(order, f, b, m, comm=comm, comm_mode=mode, w=w), want, 1.0)


# --------------------------------------------------------------------------- hand-checked examples


def test_blocking_mode_hand_example() -> None:
    # gpipe, p = 2, m = 2, f = 1, b = 2, comm = 0.5: each producer is busy during its transfer
    r = simulate("gpipe", [1.0, 1.0], [2.0, 2.0], 2, comm=[0.5], comm_mode="blocking")
    assert list(r.events) == [
        (0, "F", 0, 0, 0.0, 1.5), (0, "F", 0, 1, 1.5, 3.0), (0, "B", 0, 0, 6.5, 8.5), (0, "B", 0, 1, 9.0, 11.0),
        (1, "F", 1, 0, 1.5, 2.5), (1, "F", 1, 1, 3.0, 4.0), (1, "B", 1, 0, 4.0, 6.5), (1, "B", 1, 1, 6.5, 9.0),
    ]  # fmt: skip
    assert list(r.transfers) == [
        (0, 1, "F", 0, 0, 1.0, 1.5), (0, 1, "F", 0, 1, 2.5, 3.0),
        (1, 0, "B", 1, 0, 6.0, 6.5), (1, 0, "B", 1, 1, 8.5, 9.0),
    ]  # fmt: skip
    assert r.makespan == 11.0
    assert r.busy == (6.0, 6.0)  # transfers are not work
    assert r.span == (11.0, 7.5)
    assert r.bubble_fraction == pytest.approx(1 - 12.0 / 22.0, rel=1e-12)


def test_overlap_mode_hand_example() -> None:
    r = simulate("gpipe", [1.0, 1.0], [2.0, 2.0], 2, comm=[0.5])
    assert [e[4:] for e in r.events] == [
        (0.0, 1.0), (1.0, 2.0), (6.0, 8.0), (8.0, 10.0), (1.5, 2.5), (2.5, 3.5), (3.5, 5.5), (5.5, 7.5)
    ]
    assert r.makespan == 10.0


def test_overlap_link_serialises_transfers() -> None:
    # comm (2 s) longer than f (1 s): activations queue on link 0->1, gradients on 1->0
    r = simulate("gpipe", [1.0, 1.0], [1.0, 1.0], 3, comm=[2.0])
    assert [t[5:] for t in r.transfers] == [
        (1.0, 3.0), (3.0, 5.0), (5.0, 7.0),  # 0 -> 1, each waits for the previous one
        (9.0, 11.0), (11.0, 13.0), (13.0, 15.0),  # 1 -> 0
    ]  # fmt: skip
    assert [e[4:] for e in r.events if e[0] == 1] == [(3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (8.0, 9.0), (9.0, 10.0), (10.0, 11.0)]
    assert [e[4:] for e in r.events if e[0] == 0][3:] == [(11.0, 12.0), (13.0, 14.0), (15.0, 16.0)]
    assert r.makespan == 16.0


def test_split_backward_hand_example() -> None:
    order = [[("F", 0, 0), ("I", 0, 0), ("W", 0, 0)], [("F", 1, 0), ("I", 1, 0), ("W", 1, 0)]]
    r = simulate(order, [1.0, 1.0], [3.0, 3.0], 1, w=[1.0, 1.0])
    assert list(r.events) == [
        (0, "F", 0, 0, 0.0, 1.0), (0, "I", 0, 0, 4.0, 6.0), (0, "W", 0, 0, 6.0, 7.0),
        (1, "F", 1, 0, 1.0, 2.0), (1, "I", 1, 0, 2.0, 4.0), (1, "W", 1, 0, 4.0, 5.0),
    ]  # fmt: skip
    assert r.makespan == 7.0 and r.busy == (4.0, 4.0)


def test_same_device_stages_exchange_for_free() -> None:
    # device 0 holds stages 0 and 1; device 1 holds stage 2
    order = [
        [("F", 0, 0), ("F", 1, 0), ("F", 0, 1), ("F", 1, 1), ("B", 1, 0), ("B", 0, 0), ("B", 1, 1), ("B", 0, 1)],
        [("F", 2, 0), ("B", 2, 0), ("F", 2, 1), ("B", 2, 1)],
    ]
    for mode in ("overlap", "blocking"):
        r = simulate(order, 1.0, 2.0, 2, comm=[100.0, 0.25], comm_mode=mode)
        assert all({t[0], t[1]} == {0, 1} and t[3] in (1, 2) for t in r.transfers)  # only boundary 1 -> 2
        assert r.peak_inflight == (2.0, 1.0)  # device 0: four (stage, mb) forwards of 1/2 each
        assert_same(r, reference_simulate(order, 1.0, 2.0, 2, comm=[100.0, 0.25], comm_mode=mode), 1.0)


def test_peak_inflight_counts_fraction_per_stage() -> None:
    order = [[("F", 0, 0), ("F", 2, 0), ("F", 0, 1), ("B", 2, 0), ("B", 0, 0), ("F", 2, 1), ("B", 2, 1), ("B", 0, 1)],
             [("F", 1, 0), ("B", 1, 0), ("F", 1, 1), ("B", 1, 1)]]  # fmt: skip
    r = simulate(order, [1.0] * 3, [1.0] * 3, 2)
    assert r.peak_inflight == (1.5, 1.0)


def test_events_are_lazy_rows() -> None:
    r = simulate("1f1b", [1.0] * 4, [2.0] * 4, 6)
    assert len(r.events) == 48 and len(r.transfers) == 2 * 3 * 6
    assert r.events[0] == (0, "F", 0, 0, 0.0, 1.0)
    assert r.events[-1][:4] == (3, "B", 3, 5)
    assert isinstance(r.events[0][4], float) and isinstance(r.events[0][0], int)
    assert list(r.events) == r.events[:]


def test_scalar_times_broadcast_with_explicit_order() -> None:
    order = one_f_one_b(3, 4)
    a = simulate(order, 1.0, 2.0, 4, comm=0.5)
    b = simulate("1f1b", [1.0] * 3, 2.0, 4, comm=[0.5, 0.5])
    assert a.makespan == b.makespan and list(a.events) == list(b.events)


def test_every_named_schedule_is_registered() -> None:
    assert "gpipe" in SCHEDULES and "1f1b" in SCHEDULES
    assert build_order("1f1b", 3, 4) == one_f_one_b(3, 4)


# --------------------------------------------------------------------------- errors


F3, B3 = [1.0] * 3, [2.0] * 3


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        (dict(schedule="pipedream"), ValueError, r"unknown schedule 'pipedream'; known schedules: gpipe, 1f1b"),
        (dict(microbatches=0), ValueError, r"microbatches must be an integer >= 1, got 0"),
        (dict(microbatches=2.0), ValueError, r"microbatches must be an integer >= 1, got 2.0"),
        (dict(microbatches=True), ValueError, r"microbatches must be an integer >= 1, got True"),
        (dict(b=[2.0] * 4), ValueError, r"per-stage arrays differ in length: \{'f': 3, 'b': 4\}"),
        (dict(comm=[1.0]), ValueError, r"comm has length 1, expected 2"),
        (dict(f=[1.0, -1.0, 1.0]), ValueError, r"f\[1\] = -1.0: times must be finite and >= 0"),
        (dict(b=[2.0, 2.0, float("nan")]), ValueError, r"b\[2\] = nan: times must be finite"),
        (dict(comm=[0.0, float("inf")]), ValueError, r"comm\[1\] = inf"),
        (dict(f=[[1.0] * 3]), ValueError, r"f must be one-dimensional"),
        (dict(f="fast"), TypeError, r"f must be seconds"),
        (dict(w=[1.0, 3.0, 1.0]), ValueError, r"w\[1\] = 3.0 exceeds b\[1\] = 2.0; need 0 <= w <= b"),
        (dict(comm_mode="async"), ValueError, r"comm_mode must be one of \('overlap', 'blocking'\), got 'async'"),
        (dict(f=1.0, b=2.0), ValueError, r"f, b \(and w\) are all scalars: pass per-stage arrays"),
        (dict(stages_per_device=3), ValueError, r"stages_per_device must be exactly 1, got 3"),
        (dict(schedule="zb-h1"), ValueError, r"schedule 'zb-h1' splits the backward into I and W: pass w"),
    ],
)
def test_argument_errors(kwargs, exc, pattern) -> None:
    args = dict(schedule="1f1b", f=F3, b=B3, microbatches=2)
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        simulate(**args)


def _ok_order() -> list[list[tuple[str, int, int]]]:
    return [list(dev) for dev in one_f_one_b(2, 2)]


def _edit(fn) -> list[list[tuple[str, int, int]]]:
    order = _ok_order()
    fn(order)
    return order


@pytest.mark.parametrize(
    ("order", "exc", "pattern"),
    [
        (_edit(lambda o: o[0].__setitem__(0, ("X", 0, 0))), ValueError, r"unknown action kind in \('X', 0, 0\); allowed kinds: F, B, I, W"),
        (_edit(lambda o: o[0].__setitem__(0, ("FB", 0, 0))), ValueError, r"unknown action kind in \('FB', 0, 0\)"),
        (_edit(lambda o: o[0].__setitem__(0, ("F", 0))), TypeError, r"every action must be a \(kind, stage, microbatch\) tuple"),
        (_edit(lambda o: o[0].__setitem__(0, ("F", 0, 0.5))), TypeError, r"stage and microbatch must be integers, got action \('F', 0, 0.5\)"),
        (_edit(lambda o: o[0].append(("F", 2, 0))), ValueError, r"action \('F', 2, 0\) on device 0 references stage 2; stages are 0..1"),
        (_edit(lambda o: o[1].append(("F", 1, 5))), ValueError, r"action \('F', 1, 5\) on device 1 references microbatch 5; microbatches are 0..1"),
        (_edit(lambda o: o[0].append(("F", 0, 1))), ValueError, r"action 0F1 appears 2 times \(devices \[0\]\)"),
        (_edit(lambda o: o[0].remove(("F", 0, 1))), ValueError, r"missing forward 0F1"),
        (_edit(lambda o: o[1].remove(("B", 1, 0))), ValueError, r"missing backward 1B0 \(or 1I0 and 1W0\)"),
        (_edit(lambda o: o[1].append(("I", 1, 0))), ValueError, r"1B0 and a split backward \(1I0/1W0\) both appear"),
        (_edit(lambda o: o[1].__setitem__(o[1].index(("B", 1, 0)), ("I", 1, 0))), ValueError, r"1I0 appears without 1W0"),
        (_edit(lambda o: o[1].__setitem__(o[1].index(("B", 1, 0)), ("W", 1, 0))), ValueError, r"1W0 appears without 1I0"),
        (_edit(lambda o: o[1].append(o[0].pop())), ValueError, r"stage 0 appears on devices 1 and 0; each stage must live on exactly one device|stage 0 appears on devices 0 and 1"),
        ([[("F", 0, 0), ("B", 0, 0), ("F", 0, 1), ("B", 0, 1)], []], ValueError, r"device 1 has no actions"),
        ([], ValueError, r"the order has no devices"),
        ("not-an-order-but-a-str", ValueError, r"unknown schedule"),
        (_edit(lambda o: o[0].reverse()), ValueError, r"deadlock: device 0 waits at 0B1 for 0F1, which comes later on device 0"),
    ],
)
def test_order_errors(order, exc, pattern) -> None:
    with pytest.raises(exc, match=pattern):
        simulate(order, [1.0, 1.0], [2.0, 2.0], 2)


def test_order_with_i_w_needs_w() -> None:
    order = [[("F", 0, 0), ("I", 0, 0), ("W", 0, 0)]]
    with pytest.raises(ValueError, match=r"the order uses I/W actions: pass w"):
        simulate(order, [1.0], [2.0], 1)


def test_cross_device_deadlock_names_the_stuck_actions() -> None:
    order = [
        [("F", 0, 0), ("B", 0, 0), ("F", 0, 1), ("B", 0, 1)],
        [("F", 1, 1), ("B", 1, 1), ("F", 1, 0), ("B", 1, 0)],
    ]
    msg = (
        "deadlock: device 0 waits at 0B0 for 1B0 (device 1 is stuck at 1F1); "
        "device 1 waits at 1F1 for 0F1 (device 0 is stuck at 0B0)"
    )
    for mode in ("overlap", "blocking"):
        with pytest.raises(ValueError, match=re.escape(msg)):
            simulate(order, [1.0, 1.0], [2.0, 2.0], 2, comm=[1.0], comm_mode=mode)
        with pytest.raises(ValueError, match="deadlock"):
            reference_simulate(order, [1.0, 1.0], [2.0, 2.0], 2, comm=[1.0], comm_mode=mode)


def test_zero_times_give_zero_makespan() -> None:
    r = simulate("1f1b", [0.0] * 3, [0.0] * 3, 4)
    assert r.makespan == 0.0 and r.bubble_fraction == 0.0 and r.span == (0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- comm helpers


def test_comm_seconds() -> None:
    got = comm_seconds([0, 2_000_000_000, 5e8], bandwidth_GBps=10.0, latency_s=1e-5)
    assert got == pytest.approx([1e-5, 0.2 + 1e-5, 0.05 + 1e-5], rel=1e-12)
    with pytest.raises(ValueError, match=r"bandwidth_GBps must be finite and > 0, got 0"):
        comm_seconds([1], 0)
    with pytest.raises(ValueError, match=r"latency_s must be finite and >= 0, got -1"):
        comm_seconds([1], 1.0, -1)
    with pytest.raises(ValueError, match=r"act_bytes must be finite and >= 0"):
        comm_seconds([-5], 1.0)


def test_stage_comm_seconds() -> None:
    acts = [100, 200, 300, 400, 500]
    got = stage_comm_seconds(acts, [(0, 2), (2, 3), (3, 5)], bandwidth_GBps=1e-7)  # 100 B/s
    assert got == pytest.approx([2.0, 3.0], rel=1e-12)
    assert stage_comm_seconds(acts, [(0, 5)], 1.0).shape == (0,)
    with pytest.raises(ValueError, match=r"parts\[1\] = \(3, 5\) breaks a contiguous"):
        stage_comm_seconds(acts, [(0, 2), (3, 5)], 1.0)
    with pytest.raises(ValueError, match=r"parts must cover blocks 0..5 exactly"):
        stage_comm_seconds(acts, [(0, 2), (2, 4)], 1.0)


def _named_settings() -> list[tuple[str, int, int, int]]:
    """(name, num_devices, stages_per_device, microbatches) that each registered schedule builds."""
    out = []
    for name in SCHEDULES:
        for devices, spd, m in ((2, 1, 3), (3, 1, 6), (4, 1, 8), (2, 2, 4), (3, 2, 6), (4, 2, 8)):
            try:
                build_order(name, devices * spd, m, spd)
            except (ValueError, ImportError, AttributeError):
                continue
            out.append((name, devices, spd, m))
    return out


@pytest.mark.parametrize(("name", "devices", "spd", "m"), _named_settings())
def test_fast_equals_reference_named_schedules(name: str, devices: int, spd: int, m: int) -> None:
    rng = np.random.default_rng(devices * 100 + spd * 10 + m)
    S = devices * spd
    f = rng.uniform(0.2, 2.0, S)
    b = rng.uniform(1.0, 3.0, S)
    w = b * rng.uniform(0.0, 1.0, S)
    comm = rng.uniform(0.0, 1.0, S - 1)
    for mode in ("overlap", "blocking"):
        got = simulate(name, f, b, m, comm=comm, comm_mode=mode, w=w, stages_per_device=spd)
        want = reference_simulate(name, f, b, m, comm=comm, comm_mode=mode, w=w, stages_per_device=spd)
        assert_same(got, want, 1.0)


def test_deadlock_on_one_device_holding_neighbour_stages() -> None:
    # stages 0 and 1 on one device: the neighbour input comes later in the same list
    order = [[("F", 1, 0), ("F", 0, 0), ("B", 1, 0), ("B", 0, 0)]]
    with pytest.raises(ValueError, match=re.escape("deadlock: device 0 waits at 1F0 for 0F0 (which comes later on device 0)")):
        simulate(order, 1.0, 1.0, 1)
    order = [[("F", 0, 0), ("F", 1, 0), ("B", 0, 0), ("B", 1, 0)]]
    with pytest.raises(ValueError, match=re.escape("deadlock: device 0 waits at 0B0 for 1B0 (which comes later on device 0)")):
        simulate(order, 1.0, 1.0, 1)


def test_result_pickles_with_its_rows() -> None:
    import pickle

    r = simulate("1f1b", [1.0] * 3, [2.0] * 3, 4, comm=[0.5, 0.5])
    back = pickle.loads(pickle.dumps(r))
    assert back.makespan == r.makespan
    assert list(back.events) == list(r.events) and list(back.transfers) == list(r.transfers)
