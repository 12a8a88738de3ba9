"""A slow, obviously correct static-order simulator, the oracle for ``bubblereduce.simulate``.

Same signature and result fields as ``simulate``. It walks the devices round-robin,
running each device's next action as soon as every input action has an end time in a
dict, and applies semantics.md §4 literally. No validation beyond what it needs to run;
an order that can never finish raises ``ValueError("deadlock: ...")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from bubblereduce.schedules import build_order
from bubblereduce.simulate import SimResult

__all__ = ["reference_simulate"]


def _per_stage(x: Any, num_stages: int) -> list[float]:
    if x is None:
        return [0.0] * num_stages
    if np.ndim(x) == 0:
        return [float(x)] * num_stages
    return [float(v) for v in x]


def reference_simulate(
    schedule: str | Sequence[Sequence[tuple[str, int, int]]],
    f: Any,
    b: Any,
    microbatches: int,
    comm: Any = None,
    comm_mode: str = "overlap",
    w: Any = None,
    stages_per_device: int = 1,
) -> SimResult:
    """Time a static order by the letter of semantics.md §4-§5 (seconds); slow, for tests only."""
    if comm_mode not in ("overlap", "blocking"):
        raise ValueError(f"bad comm_mode {comm_mode!r}")
    if isinstance(schedule, str):
        num_stages = len(f)
        order = build_order(schedule, num_stages, microbatches, stages_per_device)
    else:
        order = [list(dev) for dev in schedule]
        num_stages = 1 + max(a[1] for dev in order for a in dev)
        if np.ndim(f) > 0:
            num_stages = len(f)
    fs = _per_stage(f, num_stages)
    bs = _per_stage(b, num_stages)
    ws = _per_stage(w, num_stages)
    cs = _per_stage(comm, num_stages - 1) if num_stages > 1 else []

    device_of = {a[1]: d for d, dev in enumerate(order) for a in dev}
    present = {a for dev in order for a in dev}

    def compute(a: tuple[str, int, int]) -> float:
        kind, s, _ = a
        return {"F": fs[s], "B": bs[s], "I": bs[s] - ws[s], "W": ws[s]}[kind]

    def grad_of(s: int, j: int) -> tuple[str, int, int]:
        return ("B", s, j) if ("B", s, j) in present else ("I", s, j)

    def inputs(a: tuple[str, int, int]) -> list[tuple[str, int, int]]:
        kind, s, j = a
        if kind == "F":
            return [("F", s - 1, j)] if s > 0 else []
        if kind in ("B", "I"):
            need = [("F", s, j)]
            if s < num_stages - 1:
                need.append(grad_of(s + 1, j))
            return need
        return [("I", s, j)]

    def receiver(a: tuple[str, int, int]) -> tuple[int, float] | None:
        """(destination device, seconds) of a's cross-device output, or None."""
        kind, s, _ = a
        if kind == "F" and s < num_stages - 1:
            nxt, seconds = s + 1, cs[s]
        elif kind in ("B", "I") and s > 0:
            nxt, seconds = s - 1, cs[s - 1]
        else:
            return None
        if device_of[nxt] == device_of[s]:
            return None
        return device_of[nxt], seconds

    end: dict[tuple[str, int, int], float] = {}
    usable_at: dict[tuple[tuple[str, int, int], int], float] = {}  # (action, consumer device)
    link_free: dict[tuple[int, int], float] = {}
    free = [0.0] * len(order)
    pos = [0] * len(order)
    events = []
    transfers = []
    remaining = sum(len(dev) for dev in order)
    while remaining:
        progressed = False
        for d, dev in enumerate(order):
            while pos[d] < len(dev):
                a = dev[pos[d]]
                need = inputs(a)
                if any(x not in end for x in need):
                    break
                ready = max([usable_at.get((x, d), end[x]) for x in need], default=0.0)
                start = max(free[d], ready)
                finish = start + compute(a)
                out = receiver(a)
                if out is not None:
                    dst, seconds = out
                    if comm_mode == "overlap":
                        t0 = max(finish, link_free.get((d, dst), 0.0))
                        t1 = t0 + seconds
                        link_free[(d, dst)] = t1
                    else:
                        t0, t1 = finish, finish + seconds
                        finish = t1
                    usable_at[(a, dst)] = t1
                    transfers.append((d, dst, a[0], a[1], a[2], t0, t1))
                end[a] = finish
                free[d] = finish
                events.append((d, a[0], a[1], a[2], start, finish))
                pos[d] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            stuck = [f"device {d} at {dev[pos[d]]}" for d, dev in enumerate(order) if pos[d] < len(dev)]
            raise ValueError("deadlock: " + "; ".join(stuck))

    num_devices = len(order)
    makespan = max(e[5] for e in events)
    busy = [0.0] * num_devices
    first = [None] * num_devices
    last = [0.0] * num_devices
    for d, kind, s, j, t0, t1 in events:
        busy[d] += compute((kind, s, j))
        first[d] = t0 if first[d] is None else min(first[d], t0)
        last[d] = max(last[d], t1)
    span = [last[d] - first[d] for d in range(num_devices)]
    total = sum(busy)
    bubble = 1.0 - total / (num_devices * makespan) if makespan > 0 else 0.0

    peak = []
    for dev in order:
        weight = Fraction(1, len({a[1] for a in dev}))
        level, top = Fraction(0), Fraction(0)
        for kind, _, _ in dev:
            if kind == "F":
                level += weight
                top = max(top, level)
            elif kind in ("B", "I"):
                level -= weight
        peak.append(float(top))

    events.sort(key=lambda e: e[0])  # stable: per device in execution order
    transfers.sort(key=lambda t: t[0])
    return SimResult(
        makespan=makespan,
        bubble_fraction=bubble,
        busy=tuple(busy),
        span=tuple(span),
        peak_inflight=tuple(peak),
        num_devices=num_devices,
        events=events,
        transfers=transfers,
    )
