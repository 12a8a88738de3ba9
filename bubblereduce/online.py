"""Online boundary micro-adjustment of a pipeline partition (issue 7).

A trainer measures, after every step, how long each stage spent in forward and
backward. From those per-stage times of PAST steps only, the
:class:`OnlineController` keeps per-block cost estimates (stage totals split by
each block's share), finds a persistently slowest stage (effect-size test over a
rolling window, so jitter alone does not trigger anything), and proposes to shift
1 or 2 blocks across one boundary of that laggard. A move is taken only when its
predicted gain, checked on both halves of the window, exceeds ``improve_epsilon``
and pays back the migration stall over ``payback_horizon_steps``, and when the
receiving device's memory and the links stay under their guards. After
``rollback_patience`` steps the move is judged against the counterfactual (the
old partition's predicted step time on the same post-move estimates) and rolled
back when it did not help. Every move and rollback pays a migration stall and
starts a cooldown; undoing the previous change within ``3 × cooldown_steps`` is
forbidden (no oscillation).

Migration cost model (stated assumption): the profile stores fp32 parameters
(``profile_bytes_per_param = 4``); a moved parameter carries
``migration_bytes_per_param = 12`` bytes (fp32 Adam: 4 B weight + 8 B moments;
gradients are not moved because moves happen between steps), over the stage
link at ``bandwidth_GBps`` (links work in parallel, the busiest one counts),
plus ``migration_setup_s`` seconds of fixed setup (rebuilding the stage modules
and optimizer). The memory guard counts ``state_bytes_per_param = 16`` bytes per
parameter (weights, gradients, two Adam moments) plus the activations of the
schedule's peak in-flight microbatches.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

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
    "stages_per_device_for",
]

SCENARIOS: tuple[str, ...] = ("jitter", "drift", "straggler")
PLANNERS: tuple[str, ...] = ("schedule_aware", "dp_min_max")

# schedules that place two stages on each device (semantics §3)
_TWO_STAGES_PER_DEVICE = frozenset({"interleaved-1f1b", "zbv", "dualpipev"})


def stages_per_device_for(schedule: str) -> int:
    """Model stages per device that the online experiment uses for ``schedule``.

    Returns 2 for the interleaved and V-shape schedules (``interleaved-1f1b``,
    ``zbv``, ``dualpipev``) and 1 otherwise. Raises ``ValueError`` for a name not
    in ``bubblereduce.schedules.SCHEDULES``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known schedules: {', '.join(SCHEDULES)}")
    return 2 if schedule in _TWO_STAGES_PER_DEVICE else 1


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
    periodic full re-plan. ``planner`` makes every full plan (static, periodic,
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
    improve_epsilon: float = 0.02
    laggard_z: float = 3.0
    payback_horizon_steps: int = 100
    payback_factor: float = 2.0
    mem_threshold_ratio: float = 0.9
    device_memory_bytes: float = 0.0
    pcie_threshold_ratio: float = 0.8
    replan_every_steps: int = 100
    migration_bytes_per_param: float = 12.0
    migration_setup_s: float = 0.1
    profile_bytes_per_param: float = 4.0
    state_bytes_per_param: float = 16.0

    def __post_init__(self) -> None:
        ints_min = {
            "steps": 1, "num_seeds": 1, "num_stages": 2, "microbatches": 1, "roll_window": 4,
            "cooldown_steps": 1, "rollback_patience": 1, "payback_horizon_steps": 1,
            "replan_every_steps": 1, "seed": 0,
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
            "improve_epsilon": (0.0, 1.0, False, True), "laggard_z": (0.0, np.inf, False, True),
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
        w = np.zeros_like(b) if w_rows is None else np.minimum(self.stage_sums(parts, w_rows), b)
        comm = np.broadcast_to(self.comm_s(parts), (f.shape[0], len(parts) - 1))
        return np.concatenate((f, b, np.maximum(b - w, 0.0), w, comm, np.zeros((f.shape[0], 1))), axis=1)

    def _compiled(self):  # noqa: ANN202 - private evaluator type of another module
        if "compiled" in self._cache:
            return self._cache["compiled"]
        compiled = None
        try:
            from bubblereduce.schedule_search import _CompiledOrder

            compiled = _CompiledOrder(self._order(), self.cfg.num_stages, "overlap")
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
        except (ImportError, AttributeError, TypeError, ValueError, IndexError):
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
    stage's blocks in proportion to a basis: initially the profile's block
    costs, afterwards the window mean of the estimates themselves. Within a
    stage that never changes, this is exactly "scale the profile's block
    shares"; a block that moved keeps the cost learned on its previous stage.
    """

    def __init__(self, forward_s: np.ndarray, backward_s: np.ndarray, weight_s: np.ndarray | None,
                 window: int) -> None:
        self._basis = [np.asarray(x, dtype=np.float64).copy() for x in (forward_s, backward_s, weight_s)
                       if x is not None]
        self._has_w = weight_s is not None
        self._window = window
        self._hist: deque[np.ndarray] = deque(maxlen=window)  # each (kinds, n)

    def __len__(self) -> int:
        return len(self._hist)

    def observe(self, parts: Sequence[tuple[int, int]], stage_times: Sequence[np.ndarray]) -> None:
        """Add one step's per-stage seconds (forward, backward[, weight]) for partition ``parts``."""
        if len(stage_times) != len(self._basis):
            raise ValueError(f"expected {len(self._basis)} per-stage arrays, got {len(stage_times)}")
        n = len(self._basis[0])
        owner = np.empty(n, dtype=np.intp)
        counts = np.empty(len(parts), dtype=np.float64)
        for k, (s, e) in enumerate(parts):
            owner[s:e] = k
            counts[k] = e - s
        rows = []
        for basis, stage in zip(self._basis, stage_times, strict=True):
            stage = np.asarray(stage, dtype=np.float64)
            if stage.shape != (len(parts),):
                raise ValueError(f"per-stage times must have {len(parts)} entries, got {stage.shape}")
            tot = np.bincount(owner, basis, len(parts))
            share = np.where(tot[owner] > 0, basis / np.where(tot[owner] > 0, tot[owner], 1.0),
                             1.0 / counts[owner])
            rows.append(stage[owner] * share)
        self._hist.append(np.stack(rows))
        mean = np.mean(self._hist, axis=0)
        self._basis = list(mean)

    def history(self, last: int | None = None) -> np.ndarray:
        """Estimates of the last ``last`` steps (all in the window if None): (steps, kinds, n)."""
        h = list(self._hist)
        if last is not None:
            h = h[-last:] if last > 0 else []
        return np.stack(h) if h else np.empty((0, len(self._basis), len(self._basis[0])))


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
    """

    def __init__(self, model: PipelineModel, parts: Sequence[tuple[int, int]], capacity_bytes: float) -> None:
        self.model = model
        self.cfg = model.cfg
        self.parts = tuple(tuple(p) for p in parts)
        self.capacity_bytes = float(capacity_bytes)
        self.estimator = BlockEstimator(model.forward_s, model.backward_s,
                                        model.weight_s if model.uses_w else None, self.cfg.roll_window)
        self._trial: _Trial | None = None
        self._last_change_step = -10**9
        self._before_last_change: tuple[tuple[int, int], ...] | None = None
        self._observed_step_s: deque[float] = deque(maxlen=self.cfg.roll_window)
        self._next_check_step = 0
        self.events: list[tuple[int, str, str]] = []  # (step, kind, note)
        self.pauses: dict[str, int] = {"memory": 0, "link": 0}

    # -- measurements -------------------------------------------------------
    def observe(self, stage_forward_s: np.ndarray, stage_backward_s: np.ndarray,
                stage_weight_s: np.ndarray | None = None, step_s: float | None = None) -> None:
        """Record one finished step: per-stage seconds per microbatch, and the step's wall seconds."""
        times = [stage_forward_s, stage_backward_s]
        if self.model.uses_w:
            if stage_weight_s is None:
                raise ValueError(f"schedule {self.cfg.schedule!r} needs stage_weight_s")
            times.append(stage_weight_s)
        self.estimator.observe(self.parts, times)
        if step_s is not None:
            self._observed_step_s.append(float(step_s))

    # -- model predictions --------------------------------------------------
    def _predict(self, parts: Sequence[tuple[int, int]], est: np.ndarray) -> SimResult:
        w = est[2] if self.model.uses_w else None
        return self.model.simulate_blocks(parts, est[0], est[1], w)

    def laggard(self) -> int | None:
        """The persistently slowest stage of the current partition, or None.

        Over the window, stage loads (forward + backward per microbatch) are
        predicted for the CURRENT partition from the per-block estimates. The
        stage with the largest mean load is the laggard when it is the slowest
        in at least half of the steps and its lead over the runner-up is
        ``laggard_z`` standard errors or more (paired test over the steps).
        """
        hist = self.estimator.history()
        if len(hist) < self.cfg.roll_window:
            return None
        loads = self.model.stage_sums(self.parts, hist[:, 0] + hist[:, 1])  # (steps, p)
        mean = loads.mean(axis=0)
        order = np.argsort(-mean, kind="stable")
        lag, runner = int(order[0]), int(order[1])
        if np.mean(np.argmax(loads, axis=1) == lag) < 0.5:
            return None
        diff = loads[:, lag] - loads[:, runner]
        sd = float(diff.std(ddof=1))
        se = sd / np.sqrt(len(diff))
        effect = np.inf if se <= 1e-12 * max(float(mean[lag]), 1e-300) else float(diff.mean()) / se
        return lag if effect >= self.cfg.laggard_z else None

    def candidates(self, lag: int) -> list[tuple[tuple[int, int], ...]]:
        """Partitions that shift 1 or 2 blocks off stage ``lag`` across one adjacent boundary."""
        cuts = list(cuts_from_parts(self.parts))
        s, e = self.parts[lag]
        out = []
        for k in (1, 2):
            if e - s <= k:
                continue
            if lag > 0:  # give the first k blocks to the left neighbour
                c = cuts.copy()
                c[lag - 1] += k
                out.append(parts_from_cuts(c, self.model.num_blocks))
            if lag < len(self.parts) - 1:  # give the last k blocks to the right neighbour
                c = cuts.copy()
                c[lag] -= k
                out.append(parts_from_cuts(c, self.model.num_blocks))
        return out

    # -- the policy ----------------------------------------------------------
    def decide(self, step: int) -> Decision:
        """Choose the partition for ``step`` from past observations (move, rollback or keep).

        Order: judge a pending move once ``rollback_patience`` steps have been
        observed; respect the cooldown; find a persistent laggard; keep the
        candidate moves whose predicted gain is at least ``improve_epsilon`` of
        the step time on the whole window AND on each half of it, and whose gain
        over ``payback_horizon_steps`` covers ``payback_factor`` × the migration
        stall; take the best one that passes the guards, else count a pause.
        After an evaluation that found nothing, the next one waits
        ``roll_window // 4`` steps (the window has barely changed).
        """
        cfg = self.cfg
        if self._trial is not None:
            if step - self._trial.step < cfg.rollback_patience:
                return Decision(self.parts)
            return self._judge(step)
        if step - self._last_change_step < cfg.cooldown_steps or step < self._next_check_step:
            return Decision(self.parts)
        self._next_check_step = step + max(1, cfg.roll_window // 4)
        lag = self.laggard()
        if lag is None:
            return Decision(self.parts)
        hist = self.estimator.history()
        full = hist.mean(axis=0)
        cur = self._predict(self.parts, full).makespan
        halves = (hist[: len(hist) // 2].mean(axis=0), hist[len(hist) // 2 :].mean(axis=0))
        cur_halves: list[float] = []
        paying = []
        for cand in self.candidates(lag):
            if self._is_undo(step, cand):
                continue
            res = self._predict(cand, full)
            gain = cur - res.makespan
            if gain < cfg.improve_epsilon * cur:
                continue
            cost = self.model.migration_s(self.parts, cand)
            if gain * cfg.payback_horizon_steps < cfg.payback_factor * cost:
                continue
            if not cur_halves:
                cur_halves = [self._predict(self.parts, h).makespan for h in halves]
            if any(c - self._predict(cand, h).makespan < cfg.improve_epsilon * c
                   for c, h in zip(cur_halves, halves, strict=True)):
                continue  # the gain is not persistent over the window
            paying.append((-gain, len(paying), cand, res))
        if not paying:
            return Decision(self.parts)
        paying.sort(key=lambda t: (t[0], t[1]))
        blocked: set[str] = set()
        step_s = float(np.mean(self._observed_step_s)) if self._observed_step_s else cur
        if self.model.link_utilisation(self.parts, step_s) > cfg.pcie_threshold_ratio:
            blocked.add("link")
        else:
            for neg_gain, _, cand, res in paying:
                if self.model.link_utilisation(cand, res.makespan) > cfg.pcie_threshold_ratio:
                    blocked.add("link")
                    continue
                if not self._memory_ok(cand, res):
                    blocked.add("memory")
                    continue
                return self._change(step, cand, "move", f"laggard {lag}, predicted gain {-neg_gain:.3g} s/step")
        reason = "memory" if blocked == {"memory"} else "link"
        self.pauses[reason] += 1
        self.events.append((step, "pause", reason))
        return Decision(self.parts, pause=reason, note=f"paying move blocked by {reason} guard")

    def _memory_ok(self, cand: Sequence[tuple[int, int]], res: SimResult) -> bool:
        """The receiving device(s) stay under ``capacity × mem_threshold_ratio``."""
        mem = self.model.device_memory_bytes(cand, res.peak_inflight)
        old_owner = self.model.block_owner(self.parts)
        new_owner = self.model.block_owner(cand)
        dev = self.model.stage_device()
        receivers = np.unique(dev[new_owner[old_owner != new_owner]])
        return bool(np.all(mem[receivers] <= self.capacity_bytes * self.cfg.mem_threshold_ratio))

    def _is_undo(self, step: int, cand: Sequence[tuple[int, int]]) -> bool:
        return (self._before_last_change is not None and tuple(cand) == self._before_last_change
                and step - self._last_change_step < 3 * self.cfg.cooldown_steps)

    def _judge(self, step: int) -> Decision:
        trial = self._trial
        assert trial is not None
        self._trial = None
        post = self.estimator.history(last=step - trial.step)
        est = post.mean(axis=0)
        new_s = self._predict(trial.new, est).makespan
        old_s = self._predict(trial.old, est).makespan  # counterfactual: what the old split would do now
        if old_s - new_s > 0:
            self.events.append((step, "kept", f"counterfactual gain {old_s - new_s:.3g} s/step"))
            return Decision(self.parts, note="move kept")
        return self._change(step, trial.old, "rollback", f"counterfactual gain {old_s - new_s:.3g} s/step <= 0")

    def _change(self, step: int, new: tuple[tuple[int, int], ...], kind: str, note: str) -> Decision:
        old = self.parts
        stall = self.model.migration_s(old, new)
        self._before_last_change = old
        self._last_change_step = step
        self.parts = tuple(new)
        self._trial = _Trial(step, old, self.parts) if kind == "move" else None
        self.events.append((step, kind, note))
        return Decision(self.parts, stall_s=stall, kind=kind, note=note)
