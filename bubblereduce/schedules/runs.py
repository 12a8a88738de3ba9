"""Orders written as runs of a repeating pattern, expanded to action lists or to flat arrays.

A device's order is a sequence of runs: ``count`` repetitions of a short pattern of actions
``(kind, stage, first_microbatch)``, where repetition r runs microbatch ``first_microbatch + r``
of every action in the pattern. Most schedules read naturally this way (1F1B's steady state
is ``m - warmup`` repetitions of ``F, B``), and one description expands either to the
``(kind, stage, microbatch)`` lists of ``build_order`` or, without building 10^5 Python
tuples, to the flat arrays that ``bubblereduce.simulate`` compiles. Actions whose
microbatch falls outside ``0..m-1`` are dropped, so a schedule may write its warm-up and
cool-down as the steady pattern, clipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from bubblereduce.schedules import Action, Order

__all__ = ["Runs", "OrderArrays", "expand_lists", "expand_arrays", "arrays_to_order", "check_sizes"]


def check_sizes(name: str, num_devices: int, microbatches: int, stages_per_device: int,
                *, required_stages_per_device: int | None = None, hint: str = "") -> None:
    """Validate a generator's arguments: positive integers, and, when the schedule fixes it,
    ``stages_per_device == required_stages_per_device`` (``hint`` is appended to that error).
    Raises ``ValueError`` naming the schedule, the argument and the bad value."""
    for label, value in (("num_devices", num_devices), ("microbatches", microbatches),
                         ("stages_per_device", stages_per_device)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {label} must be an integer >= 1, got {value!r}")
    if required_stages_per_device is not None and stages_per_device != required_stages_per_device:
        raise ValueError(f"{name}: stages_per_device must be exactly {required_stages_per_device}, "
                         f"got {stages_per_device!r}{hint}")


class OrderArrays(NamedTuple):
    """An order as flat arrays, device 0's actions first, each device in execution order.

    ``kinds`` (``<U1``: F/B/I/W), ``stages`` and ``microbatches`` (int64) have one entry per
    action; ``lengths[d]`` (int64) counts device d's actions.
    """

    kinds: np.ndarray
    stages: np.ndarray
    microbatches: np.ndarray
    lengths: np.ndarray


class Runs:
    """One device's order as runs of a pattern (see the module docstring)."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, tuple[Action, ...]]] = []

    def run(self, count: int, *pattern: Action) -> None:
        """Append ``count`` repetitions of ``pattern``; repetition r adds r to every microbatch."""
        if count > 0:
            self.runs.append((count, pattern))


def expand_lists(devices: Sequence[Runs], microbatches: int) -> Order:
    """The order as one ``(kind, stage, microbatch)`` list per device, microbatches in ``0..m-1`` only."""
    m = microbatches
    order: Order = []
    for dev in devices:
        actions: list[Action] = []
        for count, pattern in dev.runs:
            firsts = [first for _, _, first in pattern]
            if min(firsts) >= 0 and max(firsts) + count <= m:  # nothing to clip: skip the test
                actions += [(kind, stage, first + r) for r in range(count) for kind, stage, first in pattern]
            else:
                actions += [(kind, stage, first + r) for r in range(count) for kind, stage, first in pattern
                            if 0 <= first + r < m]
        order.append(actions)
    return order


def expand_arrays(devices: Sequence[Runs], microbatches: int) -> OrderArrays:
    """The same order as ``expand_lists``, as ``OrderArrays`` (vectorised over all runs)."""
    run_device, run_count, run_width, items = [], [], [], []
    for d, dev in enumerate(devices):
        for count, pattern in dev.runs:
            run_device.append(d)
            run_count.append(count)
            run_width.append(len(pattern))
            items.extend(pattern)
    item_kind = np.array([k for k, _, _ in items], dtype="<U1")
    item_stage = np.array([s for _, s, _ in items], dtype=np.int64)
    item_first = np.array([j for _, _, j in items], dtype=np.int64)
    width = np.array(run_width, dtype=np.int64)
    size = np.array(run_count, dtype=np.int64) * width
    run_start = np.cumsum(size) - size
    item_start = np.cumsum(width) - width
    # action k of the expansion lies in run `run`, repetition `rep`, pattern column `col`
    run = np.repeat(np.arange(size.size), size)
    rep, col = np.divmod(np.arange(run.size) - run_start[run], width[run])
    item = item_start[run] + col
    mb = item_first[item] + rep
    keep = (mb >= 0) & (mb < microbatches)
    item = item[keep]
    lengths = np.bincount(np.array(run_device, dtype=np.int64)[run[keep]], minlength=len(devices))
    return OrderArrays(item_kind[item], item_stage[item], mb[keep], lengths.astype(np.int64))


def arrays_to_order(arrays: OrderArrays) -> Order:
    """``OrderArrays`` back to one ``(kind, stage, microbatch)`` list per device (for tests, debugging)."""
    flat = list(zip(arrays.kinds.tolist(), arrays.stages.tolist(), arrays.microbatches.tolist(), strict=True))
    ends = np.cumsum(arrays.lengths).tolist()
    return [flat[lo:hi] for lo, hi in zip([0, *ends[:-1]], ends, strict=True)]
