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

__all__ = ["zbv", "dualpipev", "v_stages"]


def _check_sizes(name: str, num_devices: int, microbatches: int, stages_per_device: int) -> None:
    for label, value in (("num_devices", num_devices), ("microbatches", microbatches)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {label} must be an integer >= 1, got {value!r}")
    if stages_per_device != 2:
        raise ValueError(
            f"{name} is a V-shape schedule: stages_per_device must be exactly 2, "
            f"got {stages_per_device!r}"
        )


def v_stages(num_devices: int, device: int) -> tuple[int, int]:
    """The two stages device ``device`` holds in a V-shape schedule: ``(d, 2p - 1 - d)``.

    ``num_devices`` = p >= 1 and ``0 <= device < p``; raises ``ValueError`` otherwise.
    """
    if not 0 <= device < num_devices:
        raise ValueError(f"device must be in 0..{num_devices - 1}, got {device!r}")
    return device, 2 * num_devices - 1 - device


class _DeviceOrder:
    """Builds one device's action list, numbering microbatches per (kind, stage) in order."""

    def __init__(self) -> None:
        self.actions: list[Action] = []
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


def zbv(num_devices: int, microbatches: int, stages_per_device: int = 2) -> Order:
    """ZB-V order (Qi et al., ICLR 2024, §6; torch ``ScheduleZBVZeroBubble``).

    ``num_devices`` = p, ``microbatches`` = m >= 1, ``stages_per_device`` must be 2 (device
    d holds stages d and 2p-1-d). The handcrafted order is built for ``max(m, 2p - 1)``
    microbatches and the surplus ones are dropped, as torch does, so any m >= 1 works.
    Peak activation memory is 1F1B's: at most p microbatches in flight per device, each
    stage's microbatch counting 1/2. Returns one ``(kind, stage, microbatch)`` list per
    device; raises ``ValueError`` for non-positive sizes or ``stages_per_device != 2``.
    """
    _check_sizes("zbv", num_devices, microbatches, stages_per_device)
    p, m = num_devices, microbatches
    n = max(2 * p - 1, m)
    order: Order = []
    for d in range(p):
        dn, up = v_stages(p, d)
        f_dn = 2 * (p - d) - 1  # forwards of `dn` before `up` starts
        # warm-up: forwards down the V, then both stages, then the turn (F I W on `up`)
        acts: list[Action] = [("F", dn, j) for j in range(f_dn)]
        for k in range(d):
            acts += [("F", up, k), ("F", dn, f_dn + k)]
        for k in range(p - d):
            acts += [("F", up, d + k), ("I", up, k), ("W", up, k)]
        # steady (t = 0 .. n-p-1): F I W on `dn`, then F I W on `up`
        f_dn += d
        for t in range(n - p):
            if f_dn + t < n:
                acts.append(("F", dn, f_dn + t))
            acts += [("I", dn, t), ("W", dn, t), ("F", up, p + t), ("I", up, p - d + t), ("W", up, p - d + t)]
        # cool-down: input gradients first; the deferred weight gradients fill the tail
        for k in range(d):
            acts += [("I", dn, n - p + k), ("I", up, n - d + k)]
        for k in range(p - d):
            acts += [("I", dn, n - p + d + k), ("W", dn, n - p + k)]
        acts += [("W", up, j) for j in range(n - d, n)]
        acts += [("W", dn, j) for j in range(n - d, n)]
        order.append(acts if n == m else [a for a in acts if a[2] < m])
    return order


def dualpipev(num_devices: int, microbatches: int, stages_per_device: int = 2) -> Order:
    """DualPipeV order (DeepSeek's DualPipe folded into a V; torch ``ScheduleDualPipeV``).

    ``num_devices`` = p, ``microbatches`` = m >= 2p (torch's constraint: at least as many
    microbatches as stages), ``stages_per_device`` must be 2 (device d holds stages d and
    2p-1-d). The steady phase pairs a forward of one stage with a full backward of the
    other; each pair is emitted as F then B (no overlap modelled, see the module
    docstring). Returns one ``(kind, stage, microbatch)`` list per device; raises
    ``ValueError`` for non-positive sizes, m < 2p or ``stages_per_device != 2``.
    """
    _check_sizes("dualpipev", num_devices, microbatches, stages_per_device)
    p, m = num_devices, microbatches
    if m < 2 * p:
        raise ValueError(
            f"dualpipev needs at least as many microbatches as stages: microbatches must be "
            f">= 2 * num_devices = {2 * p}, got {m}"
        )
    order: Order = []
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
        for _ in range(m - 2 * p + d + 1):
            dev.f(down)
            dev.b(up)
            dev.f(up)
            dev.b(down)
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
        order.append(dev.actions)
    return order
