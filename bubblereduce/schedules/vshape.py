"""V-shape schedules with two stages per device: ZB-V and DualPipeV.

Placement (torch's ``style="v"``): device ``d`` of ``p`` holds stage ``d`` on the way down
the V and stage ``2p-1-d`` on the way back up, so the first and last stages share device 0
and the turn of the V (stages p-1 and p) sits on device p-1. Orders equal torch 2.13
``ScheduleZBVZeroBubble`` and ``ScheduleDualPipeV``. For p = 2, m = 4 (stages 0..3)::

    zbv
    d0: 0F0 0F1 0F2 3F0 3I0 3W0 3F1 3I1 3W1 0F3 0I0 0W0 3F2 3I2 3W2 0I1 0W1 3F3 3I3 3W3 0I2 0W2 0I3 0W3
    d1: 1F0 2F0 1F1 2F1 2I0 2W0 1F2 1I0 1W0 2F2 2I1 2W1 1F3 1I1 1W1 2F3 2I2 2W2 1I2 2I3 1I3 1W2 2W3 1W3
    dualpipev
    d0: 0F0 0F1 0F2 3F0 3I0 3W0 3F1 0F3 3B1 3F2 0B0 3B2 3F3 0B1 3B3 0I2 0W2 0I3 0W3
    d1: 1F0 2F0 1F1 2F1 1F2 2B0 2F2 1B0 1F3 2B1 2F3 1B1 2B2 1B2 2I3 1I3 2W3 1W3

DualPipeV overlaps the forward of one stage with the backward of the other (torch's
``OVERLAP_F_B`` action). We do not model that overlap: each pair becomes its F followed by
its B, adjacent in the device order, so a pair costs at least ``f + b`` (torch's default
runtime also runs the two sub-actions one after the other).
"""

from __future__ import annotations

from collections import deque

from bubblereduce.schedules import Action, Order
from bubblereduce.schedules.runs import OrderArrays, Runs, check_sizes, expand_arrays, expand_lists

__all__ = ["zbv", "dualpipev", "v_stages", "zbv_arrays", "dualpipev_arrays"]


def _check_dualpipev(num_devices: int, microbatches: int, stages_per_device: int) -> None:
    check_sizes("dualpipev", num_devices, microbatches, stages_per_device, required_stages_per_device=2,
                hint=" (a V-shape schedule holds two stages per device)")
    if microbatches < 2 * num_devices:
        raise ValueError(
            f"dualpipev needs at least as many microbatches as stages: microbatches must be "
            f">= 2 * num_devices = {2 * num_devices}, got {microbatches}"
        )


def v_stages(num_devices: int, device: int) -> tuple[int, int]:
    """The two stages device ``device`` holds in a V-shape schedule: ``(d, 2p - 1 - d)``.

    ``num_devices`` = p >= 1 and ``0 <= device < p``; raises ``ValueError`` otherwise.
    """
    if not 0 <= device < num_devices:
        raise ValueError(f"device must be in 0..{num_devices - 1}, got {device!r}")
    return device, 2 * num_devices - 1 - device


class _DeviceOrder:
    """Builds one device's order as ``Runs``, numbering microbatches per (kind, stage) in order.

    Single actions collect in ``actions`` and become one literal run (count 1) at the next
    ``repeat`` or at ``finish``.
    """

    def __init__(self) -> None:
        self.runs = Runs()
        self.actions: list[Action] = []  # single actions since the last run
        self.next_f: dict[int, int] = {}
        self.next_b: dict[int, int] = {}  # B and I share a counter: one of them per microbatch
        self.pending_w: deque[tuple[int, int]] = deque()

    def f(self, stage: int) -> None:
        j = self.next_f.get(stage, 0)
        self.actions.append(("F", stage, j))
        self.next_f[stage] = j + 1

    def b(self, stage: int, split: bool = False) -> None:
        j = self.next_b.get(stage, 0)
        self.actions.append(("I" if split else "B", stage, j))
        self.next_b[stage] = j + 1
        if split:
            self.pending_w.append((stage, j))

    def oldest_w(self) -> None:
        if self.pending_w:
            stage, j = self.pending_w.popleft()
            self.actions.append(("W", stage, j))

    def repeat(self, count: int, *steps: tuple[str, int]) -> None:
        """``count`` repetitions of ``steps`` (("F" or "B", stage) each, each at most once)."""
        self.finish()
        counters = {"F": self.next_f, "B": self.next_b}
        self.runs.run(count, *[(kind, stage, counters[kind].get(stage, 0)) for kind, stage in steps])
        for kind, stage in steps:
            counters[kind][stage] = counters[kind].get(stage, 0) + count

    def finish(self) -> Runs:
        self.runs.run(1, *self.actions)
        self.actions = []
        return self.runs


def zbv(num_devices: int, microbatches: int, stages_per_device: int = 2) -> Order:
    """ZB-V order (Qi et al., ICLR 2024, §6; torch ``ScheduleZBVZeroBubble``).

    ``num_devices`` = p, ``microbatches`` = m >= 1, ``stages_per_device`` must be 2 (device
    d holds stages d and 2p-1-d). The handcrafted order is built for ``max(m, 2p - 1)``
    microbatches and the surplus ones are dropped, as torch does, so any m >= 1 works.
    Peak activation memory is 1F1B's: at most p microbatches in flight per device, each
    stage's microbatch counting 1/2. Returns one ``(kind, stage, microbatch)`` list per
    device; raises ``ValueError`` for non-positive sizes or ``stages_per_device != 2``.
    """
    check_sizes("zbv", num_devices, microbatches, stages_per_device, required_stages_per_device=2,
                hint=" (a V-shape schedule holds two stages per device)")
    return expand_lists(_zbv_runs(num_devices, microbatches), microbatches)


def zbv_arrays(num_devices: int, microbatches: int, stages_per_device: int = 2) -> OrderArrays:
    """``zbv``'s order as flat arrays (``OrderArrays``), built without Python tuples; same errors."""
    check_sizes("zbv", num_devices, microbatches, stages_per_device, required_stages_per_device=2,
                hint=" (a V-shape schedule holds two stages per device)")
    return expand_arrays(_zbv_runs(num_devices, microbatches), microbatches)


def _zbv_runs(p: int, m: int) -> list[Runs]:
    # built for n = max(m, 2p - 1) microbatches; expanding with m drops the surplus ones
    n = max(2 * p - 1, m)
    devices = []
    for d in range(p):
        down, up = v_stages(p, d)
        f_down = 2 * (p - d) - 1  # forwards of `down` before `up` starts
        acts = Runs()  # run(count, pattern): repetition r adds r to each microbatch
        # warm-up: forwards down the V, then both stages, then the turn (F I W on `up`)
        acts.run(f_down, ("F", down, 0))
        acts.run(d, ("F", up, 0), ("F", down, f_down))
        acts.run(p - d, ("F", up, d), ("I", up, 0), ("W", up, 0))
        # steady: F I W on `down`, then F I W on `up` (forwards of `down` run out first)
        acts.run(n - p, ("F", down, f_down + d), ("I", down, 0), ("W", down, 0),
                 ("F", up, p), ("I", up, p - d), ("W", up, p - d))
        # cool-down: input gradients first; the deferred weight gradients fill the tail
        acts.run(d, ("I", down, n - p), ("I", up, n - d))
        acts.run(p - d, ("I", down, n - p + d), ("W", down, n - p))
        acts.run(d, ("W", up, n - d))
        acts.run(d, ("W", down, n - d))
        devices.append(acts)
    return devices


def dualpipev(num_devices: int, microbatches: int, stages_per_device: int = 2) -> Order:
    """DualPipeV order (DeepSeek's DualPipe folded into a V; torch ``ScheduleDualPipeV``).

    ``num_devices`` = p, ``microbatches`` = m >= 2p (torch's constraint: at least as many
    microbatches as stages), ``stages_per_device`` must be 2 (device d holds stages d and
    2p-1-d). The steady phase pairs a forward of one stage with a full backward of the
    other; each pair is emitted as F then B (no overlap modelled, see the module
    docstring). Returns one ``(kind, stage, microbatch)`` list per device; raises
    ``ValueError`` for non-positive sizes, m < 2p or ``stages_per_device != 2``.
    """
    _check_dualpipev(num_devices, microbatches, stages_per_device)
    p, m = num_devices, microbatches
    return expand_lists(_dualpipev_runs(p, m), m)


def dualpipev_arrays(num_devices: int, microbatches: int, stages_per_device: int = 2) -> OrderArrays:
    """``dualpipev``'s order as flat arrays (``OrderArrays``), built without Python tuples; same errors."""
    _check_dualpipev(num_devices, microbatches, stages_per_device)
    return expand_arrays(_dualpipev_runs(num_devices, microbatches), microbatches)


def _dualpipev_runs(p: int, m: int) -> list[Runs]:
    devices = []
    for d in range(p):
        down, up = v_stages(p, d)
        dev = _DeviceOrder()
        # warm-up: forwards down the V, then both stages
        for _ in range(2 * (p - d - 1)):
            dev.f(down)
        for _ in range(d + 1):
            dev.f(down)
            dev.f(up)
        # the turn, zero-bubble style: I and a pending W on `up` between forwards
        for _ in range(p - d - 1):
            dev.b(up, split=True)
            dev.oldest_w()
            dev.f(up)
        # steady: pairs (F down + B up), (F up + B down), each run back to back
        dev.repeat(m - 2 * p + d + 1, ("F", down), ("B", up), ("F", up), ("B", down))
        # forwards done on `down`: B up, then the pair (F up + B down)
        for _ in range(p - d - 1):
            dev.b(up)
            dev.f(up)
            dev.b(down)
        # cool-down: drain both backwards; halfway through, split B into I + W
        half = (d + 1) // 2
        for i in range(d + 1):
            dev.b(up, split=i > half or (i == half and d % 2 == 1))
            dev.b(down, split=i >= half)
        for _ in range(p - d - 1):
            dev.oldest_w()
            dev.b(down, split=True)
        # tail: the deferred weight gradients
        while dev.pending_w:
            dev.oldest_w()
        assert all(dev.next_f[s] == m and dev.next_b[s] == m for s in (down, up))
        devices.append(dev.finish())
    return devices
