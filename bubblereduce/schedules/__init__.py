"""Pipeline schedules as data: one ordered action list per device (semantics.md §3).

An action is ``(kind, stage, microbatch)`` with kind ``"F"`` (forward), ``"B"``
(full backward), ``"I"`` (input-gradient backward) or ``"W"`` (weight-gradient
backward). An order is ``list[list[action]]``, device 0 first. Generators only
build orders; timing them is ``bubblereduce.simulate``'s job.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

Action = tuple[str, int, int]
Order = list[list[Action]]

__all__ = [
    "Action",
    "Order",
    "SCHEDULES",
    "NEEDS_W",
    "build_order",
    "format_action",
    "order_table",
]

# name -> "module:function"; each generator is
#   fn(num_devices: int, microbatches: int, stages_per_device: int) -> Order
_GENERATORS: dict[str, str] = {
    "gpipe": "basic:gpipe",
    "1f1b": "basic:one_f_one_b",
    "interleaved-1f1b": "interleaved:interleaved_1f1b",
    "zb-h1": "zero_bubble:zb_h1",
    "zb-h2": "zero_bubble:zb_h2",
    "zbv": "vshape:zbv",
    "dualpipev": "vshape:dualpipev",
}

SCHEDULES: tuple[str, ...] = tuple(_GENERATORS)

# schedules whose backward is split into I and W (they need `w`)
NEEDS_W: frozenset[str] = frozenset({"zb-h1", "zb-h2", "zbv", "dualpipev"})


def _generator(name: str) -> Callable[[int, int, int], Order]:
    if name not in _GENERATORS:
        raise ValueError(f"unknown schedule {name!r}; known schedules: {', '.join(SCHEDULES)}")
    module, func = _GENERATORS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), func)


def build_order(name: str, num_stages: int, microbatches: int, stages_per_device: int = 1) -> Order:
    """Build the per-device action order of schedule ``name``.

    ``num_stages`` counts model stages; the number of devices is
    ``num_stages // stages_per_device``. Raises ``ValueError`` for an unknown
    name or for settings the schedule does not support (the message says what
    is allowed).
    """
    gen = _generator(name)
    if isinstance(microbatches, bool) or not isinstance(microbatches, int) or microbatches < 1:
        raise ValueError(f"microbatches must be an integer >= 1, got {microbatches!r}")
    if isinstance(stages_per_device, bool) or not isinstance(stages_per_device, int) or stages_per_device < 1:
        raise ValueError(f"stages_per_device must be an integer >= 1, got {stages_per_device!r}")
    if num_stages < 1 or num_stages % stages_per_device:
        raise ValueError(
            f"num_stages ({num_stages}) must be a positive multiple of "
            f"stages_per_device ({stages_per_device})"
        )
    return gen(num_stages // stages_per_device, microbatches, stages_per_device)


def format_action(action: Action) -> str:
    """Compact text of one action, torch.distributed.pipelining style: ``"1F0"``."""
    kind, stage, mb = action
    return f"{stage}{kind}{mb}"


def order_table(order: Sequence[Sequence[Action]]) -> str:
    """A text table of the per-device order, one column per device, for debugging."""
    width = max((len(format_action(a)) for dev in order for a in dev), default=3)
    header = " ".join(f"d{d}".rjust(width) for d in range(len(order)))
    rows = [header]
    for k in range(max((len(dev) for dev in order), default=0)):
        cells = [format_action(dev[k]).rjust(width) if k < len(dev) else " " * width for dev in order]
        rows.append(" ".join(cells))
    return "\n".join(rows)
