"""Order parity with torch.distributed.pipelining 2.13 (issue 4).

Torch builds every rank's compute order in the schedule constructor, without a process
group, from stand-in stage objects carrying the attributes the constructors read. We map
its actions to ours (FORWARD -> F, FULL_BACKWARD -> B, BACKWARD_INPUT -> I,
BACKWARD_WEIGHT -> W, OVERLAP_F_B -> its sub-actions F then B; idle ``None`` slots and
REDUCE_GRAD dropped) and compare rank by rank. Private torch helpers are used, so the whole
module skips cleanly when they are missing.
"""

from __future__ import annotations

from typing import Any

import pytest

from bubblereduce.schedules import build_order
from bubblereduce.schedules.basic import gpipe, one_f_one_b
from bubblereduce.schedules.interleaved import interleaved_1f1b
from bubblereduce.schedules.vshape import dualpipev, zbv
from bubblereduce.schedules.zero_bubble import zb_h1, zb_h2

ts = pytest.importorskip("torch.distributed.pipelining.schedules")
for _name in ("_Action", "_ComputationType", "ScheduleInterleaved1F1B", "ScheduleInterleavedZeroBubble",
              "ScheduleZBVZeroBubble", "ScheduleDualPipeV", "ScheduleGPipe", "Schedule1F1B"):
    if not hasattr(ts, _name):
        pytest.skip(f"torch.distributed.pipelining.schedules has no {_name}", allow_module_level=True)

_COMPUTE_KINDS = frozenset("FBIW")


class _StandInStage:
    """The attributes torch's schedule constructors read from a pipeline stage."""

    def __init__(self, stage_index: int, num_stages: int, group_size: int) -> None:
        self.stage_index = stage_index
        self.num_stages = num_stages
        self.group_size = group_size
        self.group_rank = 0
        self.submod = None
        self.stage_index_to_group_rank: dict[int, int] = {}
        self.is_first = stage_index == 0
        self.is_last = stage_index == num_stages - 1


class _RecordingStage(_StandInStage):
    """A stage whose compute calls are recorded, to replay a single-stage runtime loop."""

    def __init__(self, stage_index: int, num_stages: int) -> None:
        super().__init__(stage_index, num_stages, num_stages)
        self.is_last = False  # no loss function: the runtime then never asks for a loss
        self.log: list[tuple[str, int, int]] = []

    def get_fwd_recv_ops(self, mb: int) -> list:
        return []

    get_fwd_send_ops = get_bwd_recv_ops = get_bwd_send_ops = get_fwd_recv_ops

    def forward_one_chunk(self, mb: int, *args: Any, **kwargs: Any) -> None:
        self.log.append(("F", self.stage_index, mb))

    def backward_one_chunk(self, mb: int, **kwargs: Any) -> None:
        self.log.append(("B", self.stage_index, mb))

    def perform_reduce_grad(self, *args: Any) -> None:
        pass


def _flatten(actions: list[Any]) -> list[tuple[str, int, int]]:
    out = []
    for a in actions:
        if a is None:
            continue
        for sub in a.sub_actions if a.sub_actions is not None else (a,):
            kind = sub.computation_type.value
            if kind in _COMPUTE_KINDS:
                out.append((kind, sub.stage_index, sub.microbatch_index))
    return out


def torch_multi_order(cls: type, p: int, m: int, v: int, v_shape: bool = False) -> list[list[tuple[str, int, int]]]:
    """Per-rank compute order of a multi-stage torch schedule class (rank 0's stages)."""
    n = p * v
    local = [0, n - 1] if v_shape else [k * p for k in range(v)]
    schedule = cls([_StandInStage(s, n, p) for s in local], m)
    return [_flatten(schedule.pipeline_order[r]) for r in range(p)]


def torch_single_ir(cls: type, p: int, m: int) -> list[list[tuple[str, int, int]]]:
    """The ``pipeline_order`` IR a single-stage torch schedule exposes."""
    schedule = cls(_StandInStage(0, p, p), m)
    return [_flatten(schedule.pipeline_order[r]) for r in range(p)]


def torch_single_runtime(cls: type, p: int, m: int) -> list[list[tuple[str, int, int]]]:
    """The order torch's single-stage runtime loop actually executes, recorded per stage."""
    order = []
    for s in range(p):
        stage = _RecordingStage(s, p)
        schedule = cls(stage, m)
        schedule._initialize_stage = lambda *a, **k: None  # no process group, no shape inference
        schedule._step_microbatches()
        order.append(stage.log)
    return order


def _accepts(fn: Any, *args: int) -> bool:
    try:
        fn(*args)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------- multi-stage schedules


def test_brief_example_4_devices_8_microbatches_2_stages_per_device() -> None:
    assert interleaved_1f1b(4, 8, 2) == torch_multi_order(ts.ScheduleInterleaved1F1B, 4, 8, 2)
    assert zbv(4, 8, 2) == torch_multi_order(ts.ScheduleZBVZeroBubble, 4, 8, 2, v_shape=True)
    assert dualpipev(4, 8, 2) == torch_multi_order(ts.ScheduleDualPipeV, 4, 8, 2, v_shape=True)
    assert build_order("interleaved-1f1b", 8, 8, 2) == interleaved_1f1b(4, 8, 2)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("v", [2, 3])
def test_interleaved_1f1b_equals_torch_and_rejects_the_same_m(p: int, v: int) -> None:
    compared = 0
    for m in range(1, 3 * p + 3):
        torch_ok = _accepts(ts.ScheduleInterleaved1F1B, [_StandInStage(k * p, p * v, p) for k in range(v)], m)
        assert _accepts(interleaved_1f1b, p, m, v) == torch_ok, (p, m, v)
        if torch_ok:
            assert interleaved_1f1b(p, m, v) == torch_multi_order(ts.ScheduleInterleaved1F1B, p, m, v), (p, m, v)
            compared += 1
    assert compared >= 3


def test_interleaved_accepts_m_not_a_multiple_of_p_like_torch() -> None:
    # torch 2.13 relaxes Megatron's "m multiple of p": p=4 allows m=6 (one round of 6) and
    # m=10 (two rounds of 5), and rejects m=9 (two rounds do not divide 9)
    for m in (6, 10):
        assert interleaved_1f1b(4, m, 2) == torch_multi_order(ts.ScheduleInterleaved1F1B, 4, m, 2)
    with pytest.raises(ValueError, match=r"microbatches \(9\).*rounds.*= 2"):
        interleaved_1f1b(4, 9, 2)


def test_interleaved_with_one_stage_per_device_is_1f1b_not_torchs_order() -> None:
    # documented choice: v = 1 falls back to plain 1F1B; torch's interleaved class with one
    # local stage warms up with 2(p-1-d) forwards instead of p-1-d
    assert interleaved_1f1b(4, 8, 1) == one_f_one_b(4, 8, 1)
    torch_v1 = torch_multi_order(ts.ScheduleInterleaved1F1B, 4, 8, 1)
    first_b = [next(k for k, a in enumerate(dev) if a[0] == "B") for dev in torch_v1]
    assert first_b == [min(2 * (4 - 1 - d) + 1, 8) for d in range(4)]  # warm-up + one steady F
    assert torch_v1 != one_f_one_b(4, 8, 1)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 6])
def test_zb_h1_equals_torch_interleaved_zero_bubble_with_one_stage_per_rank(p: int) -> None:
    compared = 0
    for m in range(1, 3 * p + 3):
        if not _accepts(ts.ScheduleInterleavedZeroBubble, [_StandInStage(0, p, p)], m):
            continue  # torch rejects m % max(1, m // p) != 0; our ZB-H1 accepts every m
        assert zb_h1(p, m) == torch_multi_order(ts.ScheduleInterleavedZeroBubble, p, m, 1), (p, m)
        compared += 1
    assert compared >= 3


def test_zb_h2_has_no_torch_class_and_differs_from_zb_h1() -> None:
    assert not hasattr(ts, "ScheduleZBH2")
    assert zb_h2(4, 8) != torch_multi_order(ts.ScheduleInterleavedZeroBubble, 4, 8, 1)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
def test_zbv_equals_torch_for_every_m(p: int) -> None:
    for m in range(1, 3 * p + 3):
        assert zbv(p, m) == torch_multi_order(ts.ScheduleZBVZeroBubble, p, m, 2, v_shape=True), (p, m)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
def test_dualpipev_equals_torch_and_rejects_the_same_m(p: int) -> None:
    for m in range(1, 3 * p + 3):
        stages = [_StandInStage(0, 2 * p, p), _StandInStage(2 * p - 1, 2 * p, p)]
        torch_ok = _accepts(ts.ScheduleDualPipeV, stages, m)
        assert _accepts(dualpipev, p, m, 2) == torch_ok == (m >= 2 * p), (p, m)
        if torch_ok:
            assert dualpipev(p, m) == torch_multi_order(ts.ScheduleDualPipeV, p, m, 2, v_shape=True), (p, m)


def test_dualpipev_overlapped_pairs_become_adjacent_f_then_b() -> None:
    p, m = 4, 10
    schedule = ts.ScheduleDualPipeV([_StandInStage(0, 2 * p, p), _StandInStage(2 * p - 1, 2 * p, p)], m)
    ours = dualpipev(p, m)
    pairs = 0
    for r in range(p):
        position = {a: k for k, a in enumerate(ours[r])}
        for a in schedule.pipeline_order[r]:
            if a is not None and a.sub_actions is not None:
                fwd, bwd = _flatten([a])
                assert fwd[0] == "F" and bwd[0] == "B"
                assert position[bwd] == position[fwd] + 1
                pairs += 1
    assert pairs > 0


# --------------------------------------------------------------------- single-stage schedules


@pytest.mark.parametrize("p, m", [(1, 1), (2, 5), (4, 4), (4, 8), (5, 3)])
def test_gpipe_equals_torch_ir_and_runtime(p: int, m: int) -> None:
    assert gpipe(p, m) == torch_single_ir(ts.ScheduleGPipe, p, m)
    assert gpipe(p, m) == torch_single_runtime(ts.ScheduleGPipe, p, m)


@pytest.mark.parametrize("p, m", [(1, 1), (2, 5), (4, 4), (4, 8), (5, 9)])
def test_1f1b_equals_the_order_torchs_runtime_executes(p: int, m: int) -> None:
    assert one_f_one_b(p, m) == torch_single_runtime(ts.Schedule1F1B, p, m)


def test_torch_1f1b_ir_is_wrong_on_the_last_rank() -> None:
    # torch 2.13 Schedule1F1B.pipeline_order (the IR, not the runtime loop): ranks 0..p-2
    # match 1F1B, but the last rank starts its forwards at microbatch 1 and runs a forward
    # of microbatch m, which does not exist, and never runs F0. We follow the runtime.
    p, m = 4, 6
    ir = torch_single_ir(ts.Schedule1F1B, p, m)
    ours = one_f_one_b(p, m)
    assert ir[: p - 1] == ours[: p - 1]
    last_forwards = [a[2] for a in ir[p - 1] if a[0] == "F"]
    assert last_forwards == list(range(1, m + 1))
    assert [a[2] for a in ours[p - 1] if a[0] == "F"] == list(range(m))
