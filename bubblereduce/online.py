"""Online boundary micro-adjustment of a pipeline partition (issue 7).

A trainer measures, after every step, how long each stage spent in forward and
backward. From those per-stage times of PAST steps only, the
:class:`OnlineController`

1. keeps per-block cost estimates over a rolling window (each stage's measured
   time split over its blocks by the profile's shares, :class:`BlockEstimator`);
2. looks for persistent laggards: the slowest stages of the current split
   whose lead over the other stages is ``significance_z`` standard errors or
   more (paired over the window), so jitter alone triggers nothing;
3. searches target partitions near the current one (each cut within
   ``plan_radius_blocks`` blocks, one cut next to a laggard must move), picking
   the best predicted net benefit on the even steps of the window and testing
   it on the odd steps (the per-step predicted gain must be at least
   ``improve_epsilon`` of the step time and ``significance_z`` standard errors
   above zero: selecting and testing on the same data would mistake the
   luckiest noise for a gain), and requiring the gain over
   ``payback_horizon_steps`` to cover ``payback_factor`` × the migration stalls;
4. checks the guards (memory of every receiving device against capacity ×
   ``mem_threshold_ratio``; a link-utilisation proxy against
   ``pcie_threshold_ratio``); a paying plan that a guard blocks is a pause;
5. walks to the target in micro-moves, one per step, each shifting 1-2 blocks
   across one boundary (cuts next to a laggard first), each charged its
   migration stall;
6. ``rollback_patience`` steps after the last micro-move judges the plan
   against the counterfactual: the old partition's predicted step time on the
   same post-move per-block estimates (not the pre-move window, which drift
   would confound); if the plan did not help, it rolls back (one more stall);
7. waits ``cooldown_steps`` after every change, and never starts a move that
   restores the partition from before the previous change within
   ``3 × cooldown_steps`` (no oscillation).

Predicted and simulated step times follow ``bubblereduce.simulate`` exactly
(semantics.md §4); many (step, partition) rows are timed at once by the
compiled static-order evaluator of ``bubblereduce.schedule_search`` after a
self-check against ``simulate``, with ``simulate`` itself as the fallback.

Migration cost model (stated assumption): the profile stores fp32 parameters
(``profile_bytes_per_param = 4``); a moved parameter carries
``migration_bytes_per_param = 12`` bytes (fp32 Adam: 4 B weight + 8 B moments;
gradients are not moved because moves happen between steps), over the stage
links at ``bandwidth_GBps`` (links work in parallel, the busiest one counts),
plus ``migration_setup_s`` seconds of fixed setup (rebuilding the stage modules
and optimizer). The memory guard counts ``state_bytes_per_param = 16`` bytes
per parameter (weights, gradients, two Adam moments) plus the activations of
the schedule's peak in-flight microbatches.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bubblereduce.schedule_search import CompiledOrder, stages_per_device_for
from bubblereduce.schedules import NEEDS_W, SCHEDULES, build_order
from bubblereduce.simulate import SimResult, simulate, stage_comm_seconds

__all__ = [
    "SCENARIOS",
    "PLANNERS",
    "OnlineConfig",
    "PipelineModel",
    "model_from_blocks",
    "BlockEstimator",
    "Decision",
    "OnlineController",
    "parts_from_cuts",
    "cuts_from_parts",
]

SCENARIOS: tuple[str, ...] = ("jitter", "drift", "straggler")
PLANNERS: tuple[str, ...] = ("schedule_aware", "dp_min_max")

@dataclass(frozen=True)
class OnlineConfig:
    """All knobs of the online experiment (times in seconds, sizes in bytes).

    ``scenarios`` are run with ``num_seeds`` seeds ``seed, seed+1, ...`` for
    ``steps`` steps each. ``jitter_sigma`` is the per-block, per-step lognormal
    noise (mean 1). ``drift_strength`` is the largest relative change of a
    block's cost reached by the end of a drift run (a smooth field over blocks
    ramped linearly in time). ``straggler_factor`` multiplies the blocks of one
    stage of the static plan from ``straggler_start_frac × steps`` for
    ``straggler_duration_frac × steps`` steps. ``replan_every_steps`` is K of the
    periodic full re-plan; ``plan_radius_blocks`` bounds how far the online
    controller's target may move each cut (reached in micro-moves of 1-2
    blocks). ``significance_z`` is the z threshold of the laggard and gain
    tests. ``planner`` makes every full plan (static, periodic,
    regime oracle): ``"schedule_aware"`` minimises the simulated step time
    (seeded by, and never slower than, ``"dp_min_max"``, the bottleneck
    optimum). ``device_memory_bytes = 0`` means "1.5 × the largest
    device memory of the static plan". Fields are validated on construction.
    """

    scenarios: tuple[str, ...] = SCENARIOS
    steps: int = 1000
    num_seeds: int = 5
    seed: int = 0
    num_stages: int = 4
    microbatches: int = 8
    schedule: str = "1f1b"
    planner: str = "schedule_aware"
    bandwidth_GBps: float = 10.0
    jitter_sigma: float = 0.05
    drift_strength: float = 0.3
    straggler_factor: float = 1.3
    straggler_start_frac: float = 0.3
    straggler_duration_frac: float = 0.4
    roll_window: int = 20
    cooldown_steps: int = 10
    rollback_patience: int = 10
    improve_epsilon: float = 0.005
    significance_z: float = 3.5
    payback_horizon_steps: int = 100
    payback_factor: float = 2.0
    mem_threshold_ratio: float = 0.9
    device_memory_bytes: float = 0.0
    pcie_threshold_ratio: float = 0.8
    replan_every_steps: int = 100
    plan_radius_blocks: int = 4
    migration_bytes_per_param: float = 12.0
    migration_setup_s: float = 0.1
    profile_bytes_per_param: float = 4.0
    state_bytes_per_param: float = 16.0

    def __post_init__(self) -> None:
        ints_min = {
            "steps": 1, "num_seeds": 1, "num_stages": 2, "microbatches": 1, "roll_window": 4,
            "cooldown_steps": 1, "rollback_patience": 1, "payback_horizon_steps": 1,
            "replan_every_steps": 1, "seed": 0, "plan_radius_blocks": 1,
        }
        for name, lo in ints_min.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        # name: (low, high, low_open, high_open)
        floats = {
            "bandwidth_GBps": (0.0, np.inf, True, True), "jitter_sigma": (0.0, 1.0, False, False),
            "drift_strength": (0.0, 1.0, False, True), "straggler_factor": (0.0, np.inf, True, True),
            "straggler_start_frac": (0.0, 1.0, False, False),
            "straggler_duration_frac": (0.0, 1.0, False, False),
            "improve_epsilon": (0.0, 1.0, False, True), "significance_z": (0.0, np.inf, False, True),
            "payback_factor": (0.0, np.inf, False, True), "mem_threshold_ratio": (0.0, np.inf, True, True),
            "device_memory_bytes": (0.0, np.inf, False, True),
            "pcie_threshold_ratio": (0.0, np.inf, True, True),
            "migration_bytes_per_param": (0.0, np.inf, False, True),
            "migration_setup_s": (0.0, np.inf, False, True),
            "profile_bytes_per_param": (0.0, np.inf, True, True),
            "state_bytes_per_param": (0.0, np.inf, False, True),
        }
        for name, (lo, hi, lo_open, hi_open) in floats.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
            if v < lo or (lo_open and v == lo) or v > hi or (hi_open and v == hi):
                allowed = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
                raise ValueError(f"{name} must lie in {allowed}, got {v!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if self.planner not in PLANNERS:
            raise ValueError(f"planner must be one of {', '.join(PLANNERS)}; got {self.planner!r}")
        v = stages_per_device_for(self.schedule)
        if self.num_stages % v:
            raise ValueError(
                f"num_stages ({self.num_stages}) must be a multiple of {v} for schedule {self.schedule!r}"
            )
        try:  # the schedule's own constraints on stages and microbatches, with its message
            build_order(self.schedule, self.num_stages, self.microbatches, v)
        except ValueError as exc:
            raise ValueError(f"schedule {self.schedule!r} cannot run {self.num_stages} stages with "
                             f"{self.microbatches} microbatches: {exc}") from None
        if isinstance(self.scenarios, str) or not self.scenarios:
            raise ValueError(f"scenarios must be a non-empty sequence of {SCENARIOS}, got {self.scenarios!r}")
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad:
            raise ValueError(f"unknown scenario(s) {bad}; allowed: {', '.join(SCENARIOS)}")
        object.__setattr__(self, "scenarios", tuple(self.scenarios))

    def replace(self, **changes: object) -> OnlineConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def parts_from_cuts(cuts: Sequence[int], num_blocks: int) -> tuple[tuple[int, int], ...]:
    """Half-open block ranges from the block indices where stages 1..p-1 start."""
    edges = [0, *[int(c) for c in cuts], num_blocks]
    return tuple((edges[k], edges[k + 1]) for k in range(len(edges) - 1))


def cuts_from_parts(parts: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """The start block of every stage but the first (inverse of :func:`parts_from_cuts`)."""
    return tuple(int(s) for s, _ in parts[1:])


@dataclass(frozen=True)
class PipelineModel:
    """Blocks plus pipeline settings: times partitions and prices migrations.

    ``forward_s``, ``backward_s``, ``weight_s`` are per-block seconds for ONE
    microbatch at the profile's baseline (``weight_s`` may be ``None`` unless the
    schedule splits the backward); ``act_bytes``/``param_bytes`` per block.
    Step times come from ``bubblereduce.simulate.simulate`` semantics: many
    (step, partition) rows are timed at once by the compiled static-order
    evaluator of ``bubblereduce.schedule_search`` after a self-check against
    ``simulate`` (exact to 1e-9 relative); if that evaluator is missing or
    disagrees, every row is timed with ``simulate`` itself.
    """

    forward_s: np.ndarray
    backward_s: np.ndarray
    weight_s: np.ndarray | None
    act_bytes: np.ndarray
    param_bytes: np.ndarray
    cfg: OnlineConfig
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.forward_s)
        for name in ("forward_s", "backward_s", "act_bytes", "param_bytes"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (n,) or not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(f"{name} must be {n} finite non-negative numbers, got shape {arr.shape}")
            object.__setattr__(self, name, arr)
        if self.cfg.schedule in NEEDS_W and self.weight_s is None:
            raise ValueError(
                f"schedule {self.cfg.schedule!r} splits the backward and needs per-block "
                "weight_grad_s; the profile has none (profile with split_backward=True)"
            )
        if self.weight_s is not None:
            w = np.asarray(self.weight_s, dtype=np.float64)
            if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError(f"weight_s must be {n} finite non-negative numbers, got shape {w.shape}")
            # measured separately, W may exceed the full backward by noise: keep I = b - w >= 0
            object.__setattr__(self, "weight_s", np.minimum(w, self.backward_s))
        if n < self.cfg.num_stages:
            raise ValueError(f"{n} blocks cannot fill {self.cfg.num_stages} stages")

    @property
    def num_blocks(self) -> int:
        """Number of blocks."""
        return len(self.forward_s)

    @property
    def uses_w(self) -> bool:
        """Whether the schedule needs the weight-gradient split."""
        return self.cfg.schedule in NEEDS_W

    @property
    def base_weight_s(self) -> np.ndarray | None:
        """Per-block weight-gradient seconds when the schedule uses them, else None."""
        return self.weight_s if self.uses_w else None

    def stage_sums(self, parts: Sequence[tuple[int, int]], per_block: np.ndarray) -> np.ndarray:
        """Per-stage sums of a per-block array (last axis = blocks)."""
        starts = np.fromiter((s for s, _ in parts), dtype=np.intp)
        return np.add.reduceat(np.asarray(per_block, dtype=np.float64), starts, axis=-1)

    def comm_s(self, parts: Sequence[tuple[int, int]]) -> np.ndarray:
        """Seconds per stage boundary for one microbatch's activation (cached per partition)."""
        key = ("comm", tuple(parts))
        if key not in self._cache:
            self._cache[key] = np.asarray(
                stage_comm_seconds(self.act_bytes, list(parts), self.cfg.bandwidth_GBps, 0.0), dtype=np.float64
            )
        return self._cache[key]

    def simulate_blocks(self, parts: Sequence[tuple[int, int]], f_s: np.ndarray, b_s: np.ndarray,
                        w_s: np.ndarray | None) -> SimResult:
        """``simulate`` one step of ``cfg.microbatches`` microbatches for per-block seconds."""
        w = None
        if self.uses_w:
            if w_s is None:
                raise ValueError(f"schedule {self.cfg.schedule!r} needs per-block weight seconds")
            w = np.minimum(self.stage_sums(parts, w_s), self.stage_sums(parts, b_s))
        return simulate(self.cfg.schedule, self.stage_sums(parts, f_s), self.stage_sums(parts, b_s),
                        self.cfg.microbatches, comm=self.comm_s(parts), w=w,
                        stages_per_device=stages_per_device_for(self.cfg.schedule))

    def makespans(self, parts: Sequence[tuple[int, int]], f_rows: np.ndarray, b_rows: np.ndarray,
                  w_rows: np.ndarray | None) -> np.ndarray:
        """Step seconds of partition ``parts`` for each row of per-block seconds (rows, blocks)."""
        f_rows, b_rows = np.atleast_2d(f_rows), np.atleast_2d(b_rows)
        w_rows = None if (w_rows is None or not self.uses_w) else np.atleast_2d(w_rows)
        compiled = self._compiled()
        if compiled is None:
            return np.array([
                self.simulate_blocks(parts, f_rows[r], b_rows[r], None if w_rows is None else w_rows[r]).makespan
                for r in range(f_rows.shape[0])
            ])
        return compiled.time(self._cost_vectors(parts, f_rows, b_rows, w_rows))[0]

    def makespans_of_cuts(self, cuts: np.ndarray, f_s: np.ndarray, b_s: np.ndarray,
                          w_s: np.ndarray | None) -> np.ndarray:
        """Step seconds of many partitions (rows of stage start blocks, (C, p-1)) for one cost set."""
        cuts = np.asarray(cuts, dtype=np.intp).reshape(-1, self.cfg.num_stages - 1)
        compiled = self._compiled()
        if compiled is None:
            return np.array([self.predict_s(parts_from_cuts(c, self.num_blocks), f_s, b_s, w_s) for c in cuts])
        n = self.num_blocks
        bounds = np.concatenate((np.zeros((len(cuts), 1), np.intp), cuts, np.full((len(cuts), 1), n)), axis=1)

        def stage(x: np.ndarray) -> np.ndarray:
            pre = np.concatenate(([0.0], np.cumsum(x)))
            return pre[bounds[:, 1:]] - pre[bounds[:, :-1]]

        f, b = stage(f_s), stage(b_s)
        w = None if (w_s is None or not self.uses_w) else np.minimum(stage(w_s), b)
        comm = self.act_bytes[cuts - 1] / (self.cfg.bandwidth_GBps * 1e9)
        return compiled.time(compiled.cost_vectors(f, b, w, comm))[0]

    def predict_s(self, parts: Sequence[tuple[int, int]], f_s: np.ndarray, b_s: np.ndarray,
                  w_s: np.ndarray | None) -> float:
        """Step seconds of ``parts`` for one set of per-block seconds."""
        return float(self.makespans(parts, f_s, b_s, w_s)[0])

    def bubble_fractions(self, makespan_s: np.ndarray, f_rows: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
        """``1 - m Σ(f + b) / (devices × makespan)`` per row (semantics §5; b includes w)."""
        busy = self.cfg.microbatches * (np.atleast_2d(f_rows).sum(axis=1) + np.atleast_2d(b_rows).sum(axis=1))
        devices = self.cfg.num_stages // stages_per_device_for(self.cfg.schedule)
        return 1.0 - busy / (devices * np.asarray(makespan_s))

    def _cost_vectors(self, parts, f_rows, b_rows, w_rows) -> np.ndarray:
        # layout of schedule_search's compiled evaluator: F, B, I, W per stage, comm per boundary, 0
        f = self.stage_sums(parts, f_rows)
        b = self.stage_sums(parts, b_rows)
        w = None if w_rows is None else np.minimum(self.stage_sums(parts, w_rows), b)
        return CompiledOrder.cost_vectors(f, b, w, self.comm_s(parts))

    def _compiled(self) -> CompiledOrder | None:
        if "compiled" in self._cache:
            return self._cache["compiled"]
        compiled = None
        try:
            compiled = CompiledOrder(self._order(), self.cfg.num_stages, "overlap")
            # self-check against simulate on heterogeneous rows of a valid partition
            rng = np.random.default_rng(12345)
            p, n = self.cfg.num_stages, self.num_blocks
            parts = tuple((k * n // p, (k + 1) * n // p) for k in range(p))
            f = self.forward_s * rng.uniform(0.5, 1.5, (3, n))
            b = self.backward_s * rng.uniform(0.5, 1.5, (3, n))
            w = None if self.base_weight_s is None else self.base_weight_s * rng.uniform(0.2, 1.0, (3, n))
            got = compiled.time(self._cost_vectors(parts, f, b, None if w is None else np.minimum(w, b)))[0]
            for r in range(3):
                ref = self.simulate_blocks(parts, f[r], b[r], None if w is None else np.minimum(w[r], b[r])).makespan
                if not abs(got[r] - ref) <= 1e-9 * max(abs(ref), 1e-300):
                    compiled = None
                    break
        except (TypeError, ValueError, IndexError):
            compiled = None
        self._cache["compiled"] = compiled
        return compiled

    def _order(self) -> list:
        key = "order"
        if key not in self._cache:
            self._cache[key] = build_order(self.cfg.schedule, self.cfg.num_stages, self.cfg.microbatches,
                                           stages_per_device_for(self.cfg.schedule))
        return self._cache[key]

    def stage_device(self) -> np.ndarray:
        """Device index of every stage, read from the schedule's order."""
        key = "stage_device"
        if key not in self._cache:
            dev = np.full(self.cfg.num_stages, -1, dtype=np.intp)
            for d, actions in enumerate(self._order()):
                for _, stage, _ in actions:
                    dev[stage] = d
            self._cache[key] = dev
        return self._cache[key]

    @property
    def peak_inflight(self) -> tuple[float, ...]:
        """Peak in-flight microbatches per device; fixed by the static order (not by the costs)."""
        key = "peak_inflight"
        if key not in self._cache:
            p, n = self.cfg.num_stages, self.num_blocks
            parts = tuple((k * n // p, (k + 1) * n // p) for k in range(p))
            self._cache[key] = tuple(self.simulate_blocks(parts, self.forward_s, self.backward_s,
                                                          self.base_weight_s).peak_inflight)
        return self._cache[key]

    def device_memory_bytes(self, parts: Sequence[tuple[int, int]]) -> np.ndarray:
        """Estimated bytes per device: parameter state plus in-flight activations.

        Persistent: parameters × ``state_bytes_per_param`` (weights, gradients,
        Adam moments). Activations: ``peak_inflight[d]`` microbatches of the
        sum of the device's blocks' output bytes (each block's output is kept
        for its backward; a lower bound of what autograd keeps).
        """
        cfg = self.cfg
        persistent = self.stage_sums(parts, self.param_bytes) / cfg.profile_bytes_per_param * cfg.state_bytes_per_param
        act = self.stage_sums(parts, self.act_bytes)
        dev = self.stage_device()
        ndev = int(dev.max()) + 1
        inflight = np.asarray(self.peak_inflight, dtype=np.float64)
        return np.bincount(dev, persistent, ndev) + inflight * np.bincount(dev, act, ndev)

    def migration_s(self, old: Sequence[tuple[int, int]], new: Sequence[tuple[int, int]]) -> float:
        """Stall seconds to move from partition ``old`` to ``new`` (0 if equal).

        Every block whose stage changes sends its parameters and optimizer
        state (``migration_bytes_per_param`` per parameter) across each stage
        link between its old and new stage; links work in parallel, so the
        busiest link sets the transfer time, plus ``migration_setup_s``.
        """
        if tuple(old) == tuple(new):
            return 0.0
        owner_old, owner_new = self.block_owner(old), self.block_owner(new)
        per_block = self.param_bytes / self.cfg.profile_bytes_per_param * self.cfg.migration_bytes_per_param
        link_bytes = np.zeros(self.cfg.num_stages - 1)
        for i in np.nonzero(owner_old != owner_new)[0]:
            lo, hi = sorted((int(owner_old[i]), int(owner_new[i])))
            link_bytes[lo:hi] += per_block[i]
        return float(self.cfg.migration_setup_s + link_bytes.max() / (self.cfg.bandwidth_GBps * 1e9))

    def link_utilisation(self, parts: Sequence[tuple[int, int]], step_s: float) -> float:
        """Busiest link's busy share of a step: ``2 m comm / step_s`` (activations + gradients)."""
        comm = self.comm_s(parts)
        if comm.size == 0 or step_s <= 0:
            return 0.0
        return float(2 * self.cfg.microbatches * comm.max() / step_s)

    def block_owner(self, parts: Sequence[tuple[int, int]]) -> np.ndarray:
        """Stage index of every block under ``parts``."""
        owner = np.empty(self.num_blocks, dtype=np.intp)
        for k, (s, e) in enumerate(parts):
            owner[s:e] = k
        return owner


def model_from_blocks(blocks: object, cfg: OnlineConfig) -> PipelineModel:
    """A :class:`PipelineModel` from a ``bubblereduce.profile.BlockProfile`` (seconds per microbatch)."""
    for name in ("forward_s", "backward_s", "weight_grad_s", "act_bytes", "param_bytes"):
        if not hasattr(blocks, name):
            raise TypeError(f"blocks must be a BlockProfile (missing {name!r}), got {type(blocks).__name__}")
    return PipelineModel(
        np.asarray(blocks.forward_s), np.asarray(blocks.backward_s),
        None if blocks.weight_grad_s is None else np.asarray(blocks.weight_grad_s),
        np.asarray(blocks.act_bytes), np.asarray(blocks.param_bytes), cfg,
    )


class BlockEstimator:
    """Per-block cost estimates from per-stage measurements over a rolling window.

    Each observed stage total (seconds per microbatch) is split over the
    stage's blocks in proportion to the profile's block costs ("scale the
    profile's block shares within each stage"). Each step's estimate depends
    only on that step's measurement, so a slowdown that ends is forgotten as
    soon as it leaves the window; the price is that blocks sharing a stage
    share one multiplier.
    """

    def __init__(self, forward_s: np.ndarray, backward_s: np.ndarray, weight_s: np.ndarray | None,
                 window: int) -> None:
        self._base = np.stack([np.asarray(x, dtype=np.float64) for x in (forward_s, backward_s, weight_s)
                               if x is not None])  # (kinds, n)
        self._hist: deque[np.ndarray] = deque(maxlen=window)  # each (kinds, n)

    def __len__(self) -> int:
        return len(self._hist)

    def observe(self, parts: Sequence[tuple[int, int]], stage_times: Sequence[np.ndarray]) -> None:
        """Add one step's per-stage seconds (forward, backward[, weight]) measured under ``parts``."""
        kinds, n = self._base.shape
        if len(stage_times) != kinds:
            raise ValueError(f"expected {kinds} per-stage arrays, got {len(stage_times)}")
        stage = np.asarray(stage_times, dtype=np.float64)
        if stage.shape != (kinds, len(parts)) or not np.all(np.isfinite(stage)) or np.any(stage < 0):
            raise ValueError(f"per-stage times must be {len(parts)} finite non-negative seconds each, "
                             f"got shape {stage.shape}")
        owner = np.empty(n, dtype=np.intp)
        starts = np.empty(len(parts), dtype=np.intp)
        for k, (s, e) in enumerate(parts):
            owner[s:e] = k
            starts[k] = s
        counts = np.diff(np.append(starts, n))
        tot = np.add.reduceat(self._base, starts, axis=1)[:, owner]  # stage total of the profile, per block
        share = np.where(tot > 0, self._base / np.where(tot > 0, tot, 1.0), 1.0 / counts[owner])
        self._hist.append(stage[:, owner] * share)

    def history(self, last: int | None = None) -> np.ndarray:
        """Estimates of the last ``last`` steps (all in the window if None): (steps, kinds, n)."""
        h = list(self._hist)
        if last is not None:
            h = h[-last:] if last > 0 else []
        return np.stack(h) if h else np.empty((0, *self._base.shape))


@dataclass(frozen=True)
class Decision:
    """What a policy does before a step: the partition to run, the stall it pays, why."""

    parts: tuple[tuple[int, int], ...]
    stall_s: float = 0.0
    kind: str = "none"  # "none", "move", "rollback"
    pause: str | None = None  # guard that blocked a paying move: "memory" or "link"
    note: str = ""


@dataclass
class _Trial:
    step: int
    old: tuple[tuple[int, int], ...]
    new: tuple[tuple[int, int], ...]


class OnlineController:
    """The online boundary micro-adjustment policy (see the module docstring).

    Call :meth:`decide` before step ``t`` (it sees observations of steps < t
    only) and :meth:`observe` after it with the per-stage seconds per
    microbatch a trainer measures. ``capacity_bytes`` is the device memory.
    ``pauses`` counts decisions where a paying move was blocked, per guard;
    ``events`` lists ``(step, kind, note)`` for moves, rollbacks, kept moves
    and pauses.
    """

    def __init__(self, model: PipelineModel, parts: Sequence[tuple[int, int]], capacity_bytes: float) -> None:
        self.model = model
        self.cfg = model.cfg
        self.parts = tuple((int(s), int(e)) for s, e in parts)
        self.capacity_bytes = float(capacity_bytes)
        self.estimator = BlockEstimator(model.forward_s, model.backward_s, model.base_weight_s, self.cfg.roll_window)
        self._trial: _Trial | None = None
        self._path: list[tuple[tuple[int, int], ...]] = []  # remaining micro-moves of an accepted plan
        self._path_origin: tuple[tuple[int, int], ...] | None = None
        self._last_change_step = -(10**9)
        self._before_last_change: tuple[tuple[int, int], ...] | None = None
        self._next_check_step = 0
        self.events: list[tuple[int, str, str]] = []
        self.pauses: dict[str, int] = {"memory": 0, "link": 0}

    # -- measurements -------------------------------------------------------
    def observe(self, stage_forward_s: np.ndarray, stage_backward_s: np.ndarray,
                stage_weight_s: np.ndarray | None = None) -> None:
        """Record one finished step: per-stage forward/backward(/weight) seconds per microbatch."""
        times = [stage_forward_s, stage_backward_s]
        if self.model.uses_w:
            if stage_weight_s is None:
                raise ValueError(f"schedule {self.cfg.schedule!r} needs stage_weight_s")
            times.append(stage_weight_s)
        self.estimator.observe(self.parts, times)

    # -- model predictions --------------------------------------------------
    def _per_step(self, parts: Sequence[tuple[int, int]], hist: np.ndarray) -> np.ndarray:
        """Predicted step seconds of ``parts`` for every step's per-block estimates in ``hist``."""
        w = hist[:, 2] if self.model.uses_w else None
        return self.model.makespans(parts, hist[:, 0], hist[:, 1], w)

    def laggards(self) -> tuple[int, ...]:
        """The persistently slowest stages of the current partition (empty if none).

        Over the window, stage loads (forward + backward per microbatch) are
        predicted for the CURRENT partition from the per-block estimates. The
        slow set holds the slowest stage and every stage that is not
        significantly faster than it (paired over the steps, fewer than
        ``significance_z`` standard errors); it lags when its fastest member is
        significantly slower (``significance_z`` standard errors or more) than
        every stage outside it. A single laggard is a slow set of one; a
        balanced pipeline under pure jitter has every stage in the slow set and
        no laggard.
        """
        hist = self.estimator.history()
        if len(hist) < self.cfg.roll_window:
            return ()
        loads = self.model.stage_sums(self.parts, hist[:, 0] + hist[:, 1])  # (steps, p)
        z = self.cfg.significance_z
        top = int(np.argmax(loads.mean(axis=0)))
        slow = [s for s in range(loads.shape[1]) if s == top or _z_score(loads[:, top] - loads[:, s]) < z]
        rest = [s for s in range(loads.shape[1]) if s not in slow]
        if not rest:
            return ()
        lead = min(_z_score(loads[:, a] - loads[:, r]) for a in slow for r in rest)
        return tuple(slow) if lead >= z else ()

    def candidates(self, lags: Sequence[int]) -> np.ndarray:
        """Candidate targets as rows of cuts: each cut moved by at most ``plan_radius_blocks`` blocks.

        At least one cut adjacent to a laggard must move (the first micro-move
        relieves a laggard); the current partition is excluded. Up to 5 stages
        every cut may move; beyond that only the cuts next to a laggard and
        their direct neighbours (the box stays small).
        """
        cur = np.array(cuts_from_parts(self.parts), dtype=np.intp)
        k, r = len(cur), self.cfg.plan_radius_blocks
        adjacent = sorted({c for lag in lags for c in (lag - 1, lag) if 0 <= c < k})
        movable = list(range(k)) if k <= 4 else sorted(
            {c for a in adjacent for c in (a - 1, a, a + 1) if 0 <= c < k})
        grids = np.meshgrid(*[np.arange(-r, r + 1)] * len(movable), indexing="ij")
        deltas = np.zeros((grids[0].size, k), dtype=np.intp)
        for j, c in enumerate(movable):
            deltas[:, c] = grids[j].ravel()
        cuts = cur + deltas
        ok = np.all(np.diff(cuts, axis=1) > 0, axis=1) & (cuts[:, 0] >= 1) & (cuts[:, -1] <= self.model.num_blocks - 1)
        ok &= np.any(deltas[:, adjacent] != 0, axis=1)
        return cuts[ok]

    def path_to(self, target: Sequence[tuple[int, int]], lags: Sequence[int] = ()) -> list[tuple[tuple[int, int], ...]]:
        """Micro-moves from the current partition to ``target``: the partition after each one.

        Each micro-move shifts one cut by 1 or 2 blocks (1-2 blocks across one
        boundary); cuts next to a laggard go first and every intermediate is a
        valid partition. Returns ``[]`` if no such order exists.
        """
        cur = list(cuts_from_parts(self.parts))
        goal = list(cuts_from_parts(target))
        adjacent = {c for lag in lags for c in (lag - 1, lag)}
        path = []
        while cur != goal:
            pending = sorted((k for k in range(len(cur)) if cur[k] != goal[k]), key=lambda k: (k not in adjacent, k))
            for k in pending:
                trial = cur.copy()
                d = goal[k] - cur[k]
                trial[k] += int(np.sign(d)) * min(2, abs(d))
                if all(a < b for a, b in itertools.pairwise([0, *trial, self.model.num_blocks])):
                    cur = trial
                    path.append(parts_from_cuts(cur, self.model.num_blocks))
                    break
            else:
                return []
        return path

    # -- the policy ----------------------------------------------------------
    def decide(self, step: int) -> Decision:
        """Choose the partition for ``step`` from past observations (move, rollback or keep).

        Order: continue an accepted plan (one micro-move per step); judge the
        plan once ``rollback_patience`` steps were observed after it; respect
        the cooldown; find persistent laggards; among the targets of
        :meth:`candidates`, rank by predicted net benefit over the horizon on
        the window's mean estimates, then take the first whose per-step
        predicted gain over the window has a mean of at least
        ``improve_epsilon`` × the step time and at least ``significance_z``
        standard errors, whose gain over ``payback_horizon_steps`` covers
        ``payback_factor`` × the stalls of its micro-moves, and which passes
        the guards; count a pause if guards blocked every paying target. After
        an evaluation that moved nothing the next one waits ``roll_window // 10``
        steps (the window has barely changed).
        """
        cfg = self.cfg
        if self._path:
            nxt = self._path.pop(0)
            dec = self._change(step, nxt, "move", "micro-move of an accepted plan")
            if not self._path:
                assert self._path_origin is not None
                self._trial = _Trial(step, self._path_origin, self.parts)
            return dec
        if self._trial is not None:
            if step - self._trial.step < cfg.rollback_patience:
                return Decision(self.parts)
            return self._judge(step)
        if step - self._last_change_step < cfg.cooldown_steps or step < self._next_check_step:
            return Decision(self.parts)
        self._next_check_step = step + max(1, cfg.roll_window // 10)
        lags = self.laggards()
        if not lags:
            return Decision(self.parts)
        hist = self.estimator.history()
        # select on the even steps, test on the odd ones: picking the best of many candidates on
        # the same data that tests it would mistake the luckiest noise for a gain
        pick, test = hist[0::2], hist[1::2]
        pick_mean = pick.mean(axis=0)
        w_pick = pick_mean[2] if self.model.uses_w else None
        cand_cuts = self.candidates(lags)
        if len(cand_cuts) == 0:
            return Decision(self.parts)
        mean_mk = self.model.makespans_of_cuts(cand_cuts, pick_mean[0], pick_mean[1], w_pick)
        cur_pick = self.model.predict_s(self.parts, pick_mean[0], pick_mean[1], w_pick)
        ranked = []
        for c, mk in zip(cand_cuts, mean_mk, strict=True):
            gain = cur_pick - float(mk)
            if gain < cfg.improve_epsilon * cur_pick:
                continue
            target = parts_from_cuts(c, self.model.num_blocks)
            path = self.path_to(target, lags)
            if not path or self._is_undo(step, path[0]):
                continue  # the first micro-move would undo the previous change
            stalls = sum(self.model.migration_s(a, b) for a, b in itertools.pairwise([self.parts, *path]))
            net = gain * cfg.payback_horizon_steps - cfg.payback_factor * stalls
            if net >= 0:
                ranked.append((-net, tuple(c), target, path, stalls))
        ranked.sort(key=lambda r: (r[0], r[1]))
        cur = self._per_step(self.parts, test)
        cur_s = float(cur.mean())
        blocked: set[str] = set()
        found_paying = False
        for _, _, target, path, stalls in ranked:
            gains = cur - self._per_step(target, test)
            gain = float(gains.mean())
            if (gain < cfg.improve_epsilon * cur_s or _z_score(gains) < cfg.significance_z
                    or gain * cfg.payback_horizon_steps < cfg.payback_factor * stalls):
                break  # only the best-ranked target not blocked by a guard is tested
            found_paying = True
            if self.model.link_utilisation(self.parts, cur_s) > cfg.pcie_threshold_ratio or any(
                    self.model.link_utilisation(q, cur_s - gain) > cfg.pcie_threshold_ratio for q in path):
                blocked.add("link")
                continue
            if not all(self.memory_ok(a, b) for a, b in itertools.pairwise([self.parts, *path])):
                blocked.add("memory")
                continue
            self._path_origin = self.parts
            self._path = list(path)
            note = f"laggards {lags}: plan to {cuts_from_parts(target)}, predicted gain {gain:.4g} s/step"
            self.events.append((step, "plan", note))
            return self.decide(step)
        if not found_paying or not blocked:
            return Decision(self.parts)
        reason = "memory" if blocked == {"memory"} else "link"
        self.pauses[reason] += 1
        self.events.append((step, "pause", reason))
        return Decision(self.parts, pause=reason, note=f"paying move blocked by the {reason} guard")

    def memory_ok(self, old: Sequence[tuple[int, int]], new: Sequence[tuple[int, int]]) -> bool:
        """Whether every device that receives blocks going from ``old`` to ``new`` stays under capacity × threshold."""
        mem = self.model.device_memory_bytes(new)
        moved = self.model.block_owner(old) != self.model.block_owner(new)
        receivers = np.unique(self.model.stage_device()[self.model.block_owner(new)[moved]])
        return bool(np.all(mem[receivers] <= self.capacity_bytes * self.cfg.mem_threshold_ratio))

    def _is_undo(self, step: int, first: Sequence[tuple[int, int]]) -> bool:
        """Whether moving to ``first`` restores the partition from before the last change, too soon."""
        return (self._before_last_change is not None and tuple(first) == self._before_last_change
                and step - self._last_change_step < 3 * self.cfg.cooldown_steps)

    def _judge(self, step: int) -> Decision:
        """Keep the plan if the old partition would have been slower on the post-plan steps."""
        trial = self._trial
        assert trial is not None
        self._trial = None
        post = self.estimator.history(last=step - trial.step)
        gain = float(np.mean(self._per_step(trial.old, post) - self._per_step(trial.new, post)))
        if gain > 0:
            self.events.append((step, "kept", f"counterfactual gain {gain:.4g} s/step"))
            return Decision(self.parts, note="move kept")
        return self._change(step, trial.old, "rollback", f"counterfactual gain {gain:.4g} s/step <= 0")

    def _change(self, step: int, new: tuple[tuple[int, int], ...], kind: str, note: str) -> Decision:
        old = self.parts
        stall = self.model.migration_s(old, new)
        self._before_last_change = old
        self._last_change_step = step
        self.parts = tuple(new)
        self.events.append((step, kind, note))
        return Decision(self.parts, stall_s=stall, kind=kind, note=note)


def _z_score(x: np.ndarray) -> float:
    """Mean over its standard error (inf for a positive constant, 0 for fewer than 2 values)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 2:
        return 0.0
    mean = float(x.mean())
    se = float(x.std(ddof=1)) / np.sqrt(x.size)
    scale = float(np.abs(x).max())
    if se <= 1e-12 * scale or scale == 0.0:
        return np.inf if mean > 0 else (0.0 if mean == 0 else -np.inf)
    return mean / se
