"""Exact, fast pipeline partitioners (semantics.md §2).

A partition of ``n`` blocks into ``p`` stages is a list of half-open ranges
``[(0, e1), (e1, e2), ..., (e_{p-1}, n)]``. ``costs[i]`` is block i's cost (any
unit, e.g. seconds per microbatch) and ``comm[i]`` the cost, in the same unit, of
cutting after block i (``comm[n-1]`` is never used).

How the exact partitioners work:

- ``min_bottleneck``: parametric search on prefix sums. A greedy furthest-reach
  probe answers "can ``p`` stages of cost <= B cover the blocks" with ``p``
  binary searches. A feasible probe snaps the upper bound down to the largest
  stage it formed (a subarray sum); an infeasible one lifts the lower bound to the
  smallest stage extension it saw (below that value the probe cannot change), so
  the search ends on the exact subarray sum, typically after 15-25 probes.
- ``dp_min_max`` / ``dp_slack``: a suffix DP over stages for the minimum total cut
  cost under a bottleneck bound. For stage k starting at block i the feasible ends
  form a window ``(i, reach_k(i)]`` whose ends are monotone in i, so each stage
  layer is one vectorised sparse-table range minimum. Only starts inside a band
  (between a forward and a backward furthest-reach greedy) are visited: the band
  is about ``slack * n`` blocks wide, so the DP costs O(p·(n·slack + n/p)·log w)
  for windows of w blocks, never O(p·n²).
- With memory limits that some single block cannot meet at some stage, the
  reachable stage starts need not form intervals and the greedy probe is not
  exact; the probe then propagates the reachable set layer by layer (inside the
  same bands), which is exact for any stage-dependent monotone windows.

Tolerance and ties (no absolute epsilons anywhere, so scaling every cost and comm
by 1e-4 or 1e4 returns the same partition):

- a stage fits the bottleneck bound when its cost is <= ``bound * (1 + REL_TOL)``;
- among partitions within the bound, those whose total cut cost is within
  ``REL_TOL`` (relative) of the minimum are ties, and the one with the
  lexicographically smallest cut list (``boundary_indices``) wins.

Memory: with ``memory=StageMemory(...)`` stage k over blocks ``[i, j)`` needs
``Σ persistent[i:j] + inflight[k] * Σ activation[i:j]`` bytes, which must be
``<= capacity_bytes * (1 + REL_TOL)``. If no partition fits, a
``MemoryCapacityError`` (a ``ValueError``) reports the smallest capacity that
would, computed exactly by the same parametric search.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "REL_TOL",
    "MemoryCapacityError",
    "StageMemory",
    "boundary_indices",
    "bottleneck",
    "cut_cost",
    "dp_min_max",
    "dp_slack",
    "greedy",
    "min_bottleneck",
    "min_capacity_bytes",
    "schedule_aware",
    "stage_costs",
    "uniform",
    "validate_partition",
]

REL_TOL = 1e-9
"""Relative tolerance of every comparison (semantics.md §2: never absolute)."""

_CACHE_ENTRIES = 20_000_000  # cap on cached per-stage memory prefix sums (float64 entries)

Partition = list[tuple[int, int]]


# --------------------------------------------------------------------------- #
# Input checking
# --------------------------------------------------------------------------- #
def _as_vector(values: Any, name: str) -> np.ndarray:
    """Return ``values`` as a finite, non-negative float64 vector or raise."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    try:
        arr = np.asarray(values)
    except Exception as exc:  # ragged input and the like
        raise TypeError(f"{name} must be a 1-D sequence of numbers: {exc}") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{i}] = {float(arr[i])!r}: values must be finite and >= 0"
        )
    return arr


def _check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


def _check_stages(num_stages: Any, n: int) -> int:
    p = _check_int(num_stages, "num_stages")
    if p < 1 or p > n:
        raise ValueError(f"num_stages = {p} is not allowed: need 1 <= num_stages <= {n} blocks")
    return p


def _check_costs_comm(costs: Any, comm: Any, num_stages: Any) -> tuple[np.ndarray, np.ndarray, int]:
    c = _as_vector(costs, "costs")
    if c.size == 0:
        raise ValueError("costs is empty: need at least one block")
    m = _as_vector(comm, "comm")
    if m.size != c.size:
        raise ValueError(
            f"len(comm) = {m.size} must equal len(costs) = {c.size} "
            "(comm[i] is the cost of cutting after block i)"
        )
    return c, m, _check_stages(num_stages, c.size)


def _check_factor(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} = {v!r}: must be finite and >= 0")
    return v


# --------------------------------------------------------------------------- #
# Memory model
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, eq=False)
class StageMemory:
    """Per-stage memory limit for the exact partitioners.

    Stage k over blocks ``[i, j)`` needs
    ``sum(persistent_bytes[i:j]) + inflight[k] * sum(activation_bytes[i:j])``
    bytes (weights/optimizer state plus one activation set per in-flight
    microbatch) and fits when that is ``<= capacity_bytes * (1 + REL_TOL)``.
    ``persistent_bytes`` and ``activation_bytes`` have one entry per block,
    ``inflight`` one per stage (e.g. 1F1B: ``min(p - k, m)``). Arrays are stored
    as read-only float64 copies.
    """

    persistent_bytes: np.ndarray
    activation_bytes: np.ndarray
    inflight: np.ndarray
    capacity_bytes: float

    def __post_init__(self) -> None:
        for name in ("persistent_bytes", "activation_bytes", "inflight"):
            arr = _as_vector(getattr(self, name), name).copy()
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if self.persistent_bytes.size != self.activation_bytes.size:
            raise ValueError(
                f"len(persistent_bytes) = {self.persistent_bytes.size} must equal "
                f"len(activation_bytes) = {self.activation_bytes.size}"
            )
        cap = _check_factor(self.capacity_bytes, "capacity_bytes")
        object.__setattr__(self, "capacity_bytes", cap)


class MemoryCapacityError(ValueError):
    """No partition fits the memory capacity; ``min_capacity_bytes`` would."""

    def __init__(self, message: str, min_capacity_bytes: float) -> None:
        super().__init__(message)
        self.min_capacity_bytes = min_capacity_bytes


# --------------------------------------------------------------------------- #
# Partition helpers
# --------------------------------------------------------------------------- #
def validate_partition(parts: Sequence[tuple[int, int]], n: int, num_stages: int) -> None:
    """Check that ``parts`` is a partition of ``n`` blocks into ``num_stages`` stages.

    Valid means (semantics.md §2): exactly ``num_stages`` half-open integer ranges,
    contiguous, covering ``[0, n)`` in order, none empty. Returns None; raises
    ValueError naming the first offending range otherwise (TypeError for non-pairs).
    """
    n = _check_int(n, "n")
    num_stages = _check_int(num_stages, "num_stages")
    parts = list(parts)
    if len(parts) != num_stages:
        raise ValueError(f"partition has {len(parts)} stages, expected num_stages = {num_stages}")
    expected_start = 0
    for k, rng in enumerate(parts):
        if not isinstance(rng, (tuple, list)) or len(rng) != 2:
            raise TypeError(f"stage {k} must be a (start, end) pair, got {rng!r}")
        start, end = (_check_int(v, f"stage {k} bound") for v in rng)
        if start != expected_start:
            raise ValueError(
                f"stage {k} = {tuple(rng)!r} starts at {start}, expected {expected_start} "
                "(stages must be contiguous and start at 0)"
            )
        if end <= start:
            raise ValueError(f"stage {k} = {tuple(rng)!r} is empty or reversed")
        expected_start = end
    if expected_start != n:
        raise ValueError(f"partition covers blocks [0, {expected_start}), expected [0, {n})")


def stage_costs(costs: Any, parts: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per-stage cost ``sum(costs[s:e])`` for each range, in the unit of ``costs``.

    ``parts`` must be a valid partition of ``len(costs)`` blocks (any stage count);
    returns a float64 array with one entry per stage.
    """
    c = _as_vector(costs, "costs")
    validate_partition(parts, c.size, len(parts))
    return np.array([c[s:e].sum() for s, e in parts], dtype=np.float64)


def bottleneck(costs: Any, parts: Sequence[tuple[int, int]]) -> float:
    """The largest stage cost of ``parts`` (same unit as ``costs``)."""
    return float(stage_costs(costs, parts).max())


def boundary_indices(parts: Sequence[tuple[int, int]]) -> list[int]:
    """Block index after which each cut falls: ``[e - 1 for each stage but the last]``.

    These index ``comm`` directly; the list is ``p - 1`` long and increasing.
    """
    return [int(end) - 1 for _, end in list(parts)[:-1]]


def cut_cost(comm: Any, parts: Sequence[tuple[int, int]]) -> float:
    """Total cut cost ``sum(comm[e - 1])`` over the stage boundaries of ``parts``.

    Same unit as ``comm``; ``parts`` must be a valid partition of ``len(comm)`` blocks.
    """
    m = _as_vector(comm, "comm")
    validate_partition(parts, m.size, len(parts))
    return float(sum(m[i] for i in boundary_indices(parts)))


def _ranges_from_cuts(cuts: Sequence[int], n: int) -> Partition:
    edges = [0, *[int(c) for c in cuts], n]
    return [(edges[k], edges[k + 1]) for k in range(len(edges) - 1)]


# --------------------------------------------------------------------------- #
# Heuristic partitioners
# --------------------------------------------------------------------------- #
def uniform(costs: Any, comm: Any, num_stages: int) -> Partition:
    """Equal block counts per stage, ignoring costs and comm.

    With ``n = q * p + r`` the first ``r`` stages get ``q + 1`` blocks and the rest
    ``q``. ``costs``/``comm`` are only validated (lengths, finite, >= 0).
    """
    c, _, p = _check_costs_comm(costs, comm, num_stages)
    q, r = divmod(c.size, p)
    sizes = [q + 1] * r + [q] * (p - r)
    return _ranges_from_cuts(np.cumsum(sizes)[:-1].tolist(), c.size)


def greedy(costs: Any, comm: Any, num_stages: int, alpha: float = 1.0) -> Partition:
    """Left-to-right comm-aware balancing heuristic; always ``num_stages`` stages.

    Stage k starting at block i aims at ``t = (remaining cost) / (stages left)``
    and ends at the block j (leaving one block per later stage) minimising
    ``|sum(costs[i:j]) - t| + alpha * comm[j - 1]``; scores within ``REL_TOL``
    (relative to ``t + best score``) tie and the earliest end wins. Both terms are
    in the unit of ``costs``, so scaling costs and comm together keeps the
    partition. ``alpha >= 0`` (0: pure balance, large: cheap cuts first).
    """
    c, m, p = _check_costs_comm(costs, comm, num_stages)
    a = _check_factor(alpha, "alpha")
    n = c.size
    prefix = np.concatenate(([0.0], np.cumsum(c)))
    cuts: list[int] = []
    i = 0
    def score(ends: np.ndarray, i: int, target: float) -> np.ndarray:
        return np.abs(prefix[ends] - prefix[i] - target) + a * m[ends - 1]

    for k in range(p - 1):
        first_end, last_end = i + 1, n - (p - k - 1)
        target = (prefix[n] - prefix[i]) / (p - k)
        # Only ends whose imbalance alone is below an anchor's full score (the ends
        # closest to the target, within tolerance) can win: search just those.
        near = int(np.searchsorted(prefix, prefix[i] + target))
        anchors = np.clip(np.array([near - 1, near]), first_end, last_end)
        s0 = float(score(anchors, i, target).min())
        margin = s0 + REL_TOL * (target + s0)
        lo_end = int(np.searchsorted(prefix, prefix[i] + target - margin, side="left")) - 1
        hi_end = int(np.searchsorted(prefix, prefix[i] + target + margin, side="right"))
        lo_end = max(first_end, min(lo_end, int(anchors.min())))
        hi_end = min(last_end, max(hi_end, int(anchors.max())))
        ends = np.arange(lo_end, hi_end + 1)
        sc = score(ends, i, target)
        best = sc.min()
        j = int(ends[np.flatnonzero(sc <= best + REL_TOL * (target + best))[0]])
        cuts.append(j)
        i = j
    return _ranges_from_cuts(cuts, n)


# --------------------------------------------------------------------------- #
# Exact machinery
# --------------------------------------------------------------------------- #
class _Instance:
    """Prefix sums and per-stage window reaches for one (costs, p, memory) problem.

    The reach of stage k from start i is the largest j with ``[i, j)`` fitting:
    cost ``P[j] <= P[i] + bound`` and memory ``Q_k[j] <= Q_k[i] + capacity``
    (``Q_k = P_persistent + inflight[k] * P_activation``). Every probe, band and
    DP window uses exactly these two float comparisons, so they agree with each
    other. Both are monotone windows: reaches are non-decreasing in i.
    """

    def __init__(self, costs: np.ndarray, p: int, memory: StageMemory | None) -> None:
        self.n = int(costs.size)
        self.p = p
        self.costs = costs
        self.prefix = np.concatenate(([0.0], np.cumsum(costs)))
        self.prefix_list: list[float] = self.prefix.tolist()
        self.memory = memory
        self.singles_fit = True
        if memory is not None:
            if memory.persistent_bytes.size != self.n:
                raise ValueError(
                    f"len(memory.persistent_bytes) = {memory.persistent_bytes.size} must "
                    f"equal the number of blocks {self.n}"
                )
            if memory.inflight.size != p:
                raise ValueError(
                    f"len(memory.inflight) = {memory.inflight.size} must equal "
                    f"num_stages = {p}"
                )
            self.pers_prefix = np.concatenate(([0.0], np.cumsum(memory.persistent_bytes)))
            self.act_prefix = np.concatenate(([0.0], np.cumsum(memory.activation_bytes)))
            self.pers_list: list[float] = self.pers_prefix.tolist()
            self.act_list: list[float] = self.act_prefix.tolist()
            self.inflight: list[float] = memory.inflight.tolist()
            self.capacity = memory.capacity_bytes * (1.0 + REL_TOL)
            self._mem_cache: dict[tuple[int, int], int] = {}
            self._q_rows: dict[float, np.ndarray] = {}
            # The greedy probe is exact when every single block fits every stage
            # (reachable end sets are then intervals); same formula as the reach.
            self.singles_fit = all(
                bool(np.all(q[1:] <= q[:-1] + self.capacity))
                for q in (self.mem_row(f) for f in sorted(set(self.inflight)))
            )

    # -- memory reach ------------------------------------------------------- #
    def mem_row(self, factor: float) -> np.ndarray:
        """Memory prefix sums ``Q = P_pers + factor * P_act`` (bytes), cached per factor."""
        hit = self._q_rows.get(factor)
        if hit is not None:
            return hit
        q = self.pers_prefix + factor * self.act_prefix
        if len(self._q_rows) * (self.n + 1) < _CACHE_ENTRIES:
            self._q_rows[factor] = q
        return q

    def mem_reach_starts(self, k: int, starts: np.ndarray,
                         capacity: float | None = None) -> np.ndarray:
        """Memory reach of stage k from each start: largest j with Q_k[j] <= Q_k[i] + capacity."""
        q = self.mem_row(self.inflight[k])
        cap = self.capacity if capacity is None else capacity
        return np.searchsorted(q, q[starts] + cap, side="right") - 1

    def mem_reach_scalar(self, k: int, i: int, capacity: float | None = None) -> int:
        """Largest j with ``Q_k[j] <= Q_k[i] + capacity`` (cached at the set capacity)."""
        key = (k, i)
        if capacity is None:
            hit = self._mem_cache.get(key)
            if hit is not None:
                return hit
        f = self.inflight[k]
        pp, pa = self.pers_list, self.act_list
        limit = (pp[i] + f * pa[i]) + (self.capacity if capacity is None else capacity)
        lo, hi = i, self.n  # largest j in [i, n] with Q[j] <= limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if pp[mid] + f * pa[mid] <= limit:
                lo = mid
            else:
                hi = mid - 1
        if capacity is None:
            self._mem_cache[key] = lo
        return lo

    def cost_reach_all(self, bound: float) -> np.ndarray:
        """Cost reach from every start 0..n: largest j with P[j] <= P[i] + bound."""
        if math.isinf(bound):
            return np.full(self.n + 1, self.n, dtype=np.int64)
        return np.searchsorted(self.prefix, self.prefix + bound, side="right") - 1

    # -- feasibility probes ------------------------------------------------- #
    def greedy_probe(self, bound: float) -> tuple[bool, float, float]:
        """Furthest-reach greedy with stage cost <= bound.

        Returns (feasible, largest stage cost formed, smallest bound > ``bound`` at
        which some greedy stage could grow). Exact when ``singles_fit``.
        """
        pl, n = self.prefix_list, self.n
        i, largest, next_bound = 0, 0.0, math.inf
        for k in range(self.p):
            j = bisect.bisect_right(pl, pl[i] + bound, i) - 1
            if self.memory is not None:
                jm = self.mem_reach_scalar(k, i)
                if j < jm:
                    next_bound = min(next_bound, pl[j + 1] - pl[i])
                j = min(j, jm)
            elif j < n:
                next_bound = min(next_bound, pl[j + 1] - pl[i])
            if j == i:
                return False, largest, next_bound
            largest = max(largest, pl[j] - pl[i])
            i = j
            if i == n:
                return True, largest, next_bound
        return False, largest, next_bound

    def layered_probe(self, bound: float, capacity: float | None = None,
                      search: str = "cost") -> tuple[bool, float, float]:
        """Exact feasibility for exactly p stages when reach sets need not be intervals.

        Propagates the set of reachable stage starts layer by layer, each layer
        restricted to its start band (O(band width) per layer). ``search`` names
        the parameter being minimised ("cost": the bottleneck ``bound``;
        "memory": ``capacity``). Returns (feasible, that parameter's
        largest stage value in one feasible partition, smallest value above the
        probe at which some reachable window or band could grow).
        """
        n, p = self.n, self.p
        cost_reach = self.cost_reach_all(bound)
        has_mem = self.memory is not None
        lo, hi, next_value = self.start_bands(bound, capacity, search)
        if any(lo[k] > hi[k] for k in range(p)):
            return False, math.inf, next_value
        lo, hi = [*lo, n], [*hi, n]  # stage p "starts" at n
        reachable = np.zeros(hi[0] - lo[0] + 1, dtype=bool)
        reachable[0] = lo[0] == 0
        layers = []
        for k in range(p):
            layers.append(reachable)
            starts = np.flatnonzero(reachable) + lo[k]
            if starts.size == 0:
                return False, math.inf, next_value
            rc = cost_reach[starts]
            r = rc
            if has_mem:
                rm = self.mem_reach_starts(k, starts, capacity)
                r = np.minimum(rc, rm)
            # where could a larger parameter let a window grow?
            if search == "cost":
                grow = rc < n if not has_mem else (rc < rm)
                if grow.any():
                    g = starts[grow]
                    next_value = min(next_value, float(
                        (self.prefix[rc[grow] + 1] - self.prefix[g]).min()))
            else:
                grow = (rm < rc) & (rm < n)
                if grow.any():
                    q = self.mem_row(self.inflight[k])
                    g = starts[grow]
                    next_value = min(next_value, float((q[rm[grow] + 1] - q[g]).min()))
            # next starts: (i, r] clipped to the next band
            first = np.maximum(starts + 1, lo[k + 1]) - lo[k + 1]
            last = np.minimum(r, hi[k + 1]) - lo[k + 1]
            ok = first <= last
            width = hi[k + 1] - lo[k + 1] + 1
            diff = (np.bincount(first[ok], minlength=width + 1)
                    - np.bincount(last[ok] + 1, minlength=width + 1))
            reachable = np.cumsum(diff[:width]) > 0
        if not reachable[0]:
            return False, math.inf, next_value
        # walk back through the layers: a reachable start whose window reaches the end
        ends = [n]
        for k in range(p - 1, 0, -1):
            j = ends[-1]
            starts = np.flatnonzero(layers[k][: max(0, j - lo[k])]) + lo[k]
            r = cost_reach[starts]
            if has_mem:
                r = np.minimum(r, self.mem_reach_starts(k, starts, capacity))
            ends.append(int(starts[np.flatnonzero(r >= j)[-1]]))
        ends.reverse()
        largest = self._largest_stage(ends) if search == "cost" else self._largest_memory(ends)
        return True, largest, next_value

    def _largest_stage(self, ends: list[int]) -> float:
        edges = [0, *ends]
        return max(self.prefix_list[edges[k + 1]] - self.prefix_list[edges[k]]
                   for k in range(len(ends)))

    def _largest_memory(self, ends: list[int]) -> float:
        edges = [0, *ends]
        pp, pa = self.pers_list, self.act_list
        return max(
            (pp[b] + self.inflight[k] * pa[b]) - (pp[a] + self.inflight[k] * pa[a])
            for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))
        )

    # -- capacity ----------------------------------------------------------- #
    def min_capacity(self) -> float:
        """Smallest capacity (bytes, no tolerance) for which some partition fits."""
        # every block sits in some stage: at best the one with the fewest in flight
        lo = float(np.diff(self.mem_row(min(self.inflight))).max())
        hi = max(float(self.mem_row(f)[-1]) for f in self.inflight)  # anything fits
        ok, realized, _ = self.layered_probe(math.inf, hi, search="memory")
        assert ok, "every partition fits the total memory"
        return _parametric_min(
            lambda c: self.layered_probe(math.inf, c, search="memory"), lo, realized)

    def raise_capacity(self) -> None:
        assert self.memory is not None
        need = self.min_capacity()
        raise MemoryCapacityError(
            f"no partition of {self.n} blocks into {self.p} stages fits "
            f"capacity_bytes = {self.memory.capacity_bytes!r}; the smallest capacity "
            f"that fits is {need!r} bytes",
            need,
        )

    # -- bottleneck --------------------------------------------------------- #
    def min_bottleneck(self) -> float:
        """Exact minimum bottleneck: a parametric search over stage sums."""
        total = self.prefix_list[-1]
        lo = max(float(self.costs.max()), total / self.p)
        probe = self.greedy_probe if self.singles_fit else self.layered_probe
        ok, realized, _ = probe(total)
        if not ok:
            self.raise_capacity()
        return _parametric_min(probe, lo, realized)

    # -- cut-cost DP -------------------------------------------------------- #
    def cost_start_scalar(self, j: int, bound: float) -> int:
        """Smallest start i with ``P[j] <= P[i] + bound`` (the reach formula, inverted)."""
        pl = self.prefix_list
        lo, hi = 0, j
        while lo < hi:
            mid = (lo + hi) // 2
            if pl[j] <= pl[mid] + bound:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def mem_start_scalar(self, k: int, j: int, capacity: float | None = None) -> int:
        """Smallest start i with ``Q_k[j] <= Q_k[i] + capacity`` for stage k."""
        f, pp, pa = self.inflight[k], self.pers_list, self.act_list
        cap = self.capacity if capacity is None else capacity
        qj = pp[j] + f * pa[j]
        lo, hi = 0, j
        while lo < hi:
            mid = (lo + hi) // 2
            if qj <= (pp[mid] + f * pa[mid]) + cap:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def start_bands(self, bound: float, capacity: float | None = None,
                    search: str = "cost") -> tuple[list[int], list[int], float]:
        """Per stage, a range [lo_k, hi_k] holding every feasible start of stage k.

        hi_k: a furthest-reach greedy from block 0 is ahead of any feasible
        partition; lo_k: the same greedy run backwards from n is behind it. Both
        use the reach formula itself, so no feasible start falls outside. Also
        returns the smallest value of the searched parameter ("cost": ``bound``,
        "memory": ``capacity``) above the current one at which either greedy changes.
        """
        n, p, pl, has_mem = self.n, self.p, self.prefix_list, self.memory is not None
        pp, pa, infl = (self.pers_list, self.act_list, self.inflight) if has_mem else ([], [], [])
        hi, i, next_value = [], 0, math.inf
        for k in range(p):
            hi.append(min(i, n - (p - k)))
            jc = bisect.bisect_right(pl, pl[i] + bound, i) - 1 if bound < math.inf else n
            jm = self.mem_reach_scalar(k, i, capacity) if has_mem else n
            if search == "cost" and jc < jm:
                next_value = min(next_value, pl[jc + 1] - pl[i])
            elif search == "memory" and jm < min(jc, n):
                f = infl[k]
                next_value = min(next_value, (pp[jm + 1] + f * pa[jm + 1]) - (pp[i] + f * pa[i]))
            i = min(jc, jm)
        lo, j = [0] * p, n
        for k in range(p - 1, -1, -1):
            ic = self.cost_start_scalar(j, bound) if bound < math.inf else 0
            im = self.mem_start_scalar(k, j, capacity) if has_mem else 0
            if search == "cost" and ic > im:
                next_value = min(next_value, pl[j] - pl[ic - 1])
            elif search == "memory" and im > ic:
                f = infl[k]
                next_value = min(next_value,
                                 (pp[j] + f * pa[j]) - (pp[im - 1] + f * pa[im - 1]))
            i = max(ic, im)
            lo[k] = max(k, i)
            j = i
        return lo, hi, next_value

    def stage_reach(self, k: int, starts: np.ndarray, cost_reach: np.ndarray) -> np.ndarray:
        """Reach of stage k from each start (cost and memory)."""
        r = cost_reach[starts]
        if self.memory is None:
            return r
        return np.minimum(r, self.mem_reach_starts(k, starts))

    # -- cut-cost DP -------------------------------------------------------- #
    def min_cut(self, comm: np.ndarray, bound: float) -> Partition:
        """Minimum total cut cost with every stage fitting ``bound`` (and memory).

        Suffix DP over the start bands of ``start_bands``: ``best[k][i - lo_k]`` is
        the least cut cost covering ``[i, n)`` with stages k..p-1, a range minimum
        over the window of next starts ``[i + 1, reach_k(i)]`` (both ends monotone),
        answered for all i at once by a sparse table. A forward pass then picks,
        stage by stage, the earliest cut keeping the total within REL_TOL of the
        optimum (lexicographically smallest cut list).
        """
        n, p = self.n, self.p
        cost_reach = self.cost_reach_all(bound)
        lo, hi, _ = self.start_bands(bound)
        if any(lo[k] > hi[k] for k in range(p)):
            raise AssertionError(f"empty start band under a feasible bound {bound!r}")
        best: list[np.ndarray] = [np.empty(0)] * p
        starts = np.arange(lo[p - 1], hi[p - 1] + 1)
        best[p - 1] = np.where(self.stage_reach(p - 1, starts, cost_reach) == n, 0.0, np.inf)
        for k in range(p - 2, -1, -1):
            nlo, nhi = lo[k + 1], hi[k + 1]
            # h[y]: cut after block nlo + y - 1, then stages k+1.. from block nlo + y
            h = comm[nlo - 1: nhi] + best[k + 1]
            starts = np.arange(lo[k], hi[k] + 1)
            left = np.maximum(starts + 1, nlo) - nlo
            right = np.minimum(self.stage_reach(k, starts, cost_reach), nhi) - nlo
            best[k] = _range_min(h, left, right)
        optimum = float(best[0][0])
        if math.isinf(optimum):
            raise AssertionError(f"cut DP found no partition under a feasible bound {bound!r}")
        budget = optimum * (1.0 + REL_TOL)
        cuts: list[int] = []
        i, spent = 0, 0.0
        for k in range(p - 1):
            nlo, nhi = lo[k + 1], hi[k + 1]
            reach = int(self.stage_reach(k, np.array([i]), cost_reach)[0])
            ends = np.arange(max(i + 1, nlo), min(reach, nhi) + 1)
            total = (spent + comm[ends - 1]) + best[k + 1][ends - nlo]
            pick = np.flatnonzero(total <= budget)
            assert pick.size, "forward pass lost the optimum"
            j = int(ends[pick[0]])
            spent += float(comm[j - 1])
            cuts.append(j)
            i = j
        return _ranges_from_cuts(cuts, n)


def _range_min(values: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``min(values[left[x] : right[x] + 1])`` for every x (inf where left > right).

    Sparse table: row l holds minima of runs of 2**l; each query is the min of two
    overlapping runs of its level. O(len · log(longest query)).
    """
    length = right - left + 1
    valid = length >= 1
    if not valid.any():
        return np.full(left.size, np.inf)
    top = int(length.max()).bit_length() - 1
    size = values.size
    table = np.full((top + 1, size), np.inf)
    table[0] = values
    for lv in range(1, top + 1):
        half, span = 1 << (lv - 1), size - (1 << lv) + 1
        np.minimum(table[lv - 1, :span], table[lv - 1, half: half + span], out=table[lv, :span])
    safe_len = np.where(valid, length, 1)
    # floor(log2(length)) exactly, via the float exponent of an integer
    level = np.frexp(safe_len.astype(np.float64))[1] - 1
    first = level * size + np.where(valid, left, 0)
    second = first + safe_len - (1 << level)
    flat = table.ravel()
    return np.where(valid, np.minimum(flat[first], flat[second]), np.inf)


def _parametric_min(probe: Any, lo: float, realized: float) -> float:
    """Smallest feasible value of a monotone probe, snapped to a realized value.

    ``probe(x) -> (feasible, largest realized value <= ~x, next value > x where the
    probe can change)``; ``lo`` is a lower bound and ``realized`` a feasible
    realized value. A feasible probe snaps the upper end down to what it formed,
    an infeasible one lifts the lower end past every value where nothing changes,
    so the loop ends on a realized value (not a bisection float).
    """
    hi = realized
    while lo < hi:
        mid = lo + (hi - lo) / 2
        if not mid < hi:
            mid = lo
        ok, largest, next_value = probe(mid)
        if ok:
            realized, hi = largest, min(largest, mid)
        else:
            # nothing can change below next_value; inf would contradict `realized`
            assert math.isfinite(next_value), "probe infeasible everywhere above a feasible value"
            lo = max(next_value, math.nextafter(mid, math.inf))
    return realized


def _instance(costs: Any, num_stages: Any, memory: StageMemory | None) -> _Instance:
    c = _as_vector(costs, "costs")
    if c.size == 0:
        raise ValueError("costs is empty: need at least one block")
    p = _check_stages(num_stages, c.size)
    if memory is not None and not isinstance(memory, StageMemory):
        raise TypeError(f"memory must be a StageMemory or None, got {type(memory).__name__}")
    return _Instance(c, p, memory)


def min_bottleneck(costs: Any, num_stages: int, *, memory: StageMemory | None = None) -> float:
    """Exact minimum over partitions into ``num_stages`` stages of the largest stage cost.

    Same unit as ``costs``; the value is a subarray sum (exact up to float
    rounding of prefix sums). With ``memory`` the minimum is over partitions that
    fit; if none does, raises ``MemoryCapacityError`` with the smallest capacity
    (bytes) that would.
    """
    return _instance(costs, num_stages, memory).min_bottleneck()


def min_capacity_bytes(memory: StageMemory) -> float:
    """Smallest capacity (bytes) at which some partition fits ``memory``'s limits.

    Partitions ``len(memory.persistent_bytes)`` blocks into ``len(memory.inflight)``
    stages and minimises the largest stage memory
    ``sum(persistent[i:j]) + inflight[k] * sum(activation[i:j])``; the value is
    that of an actual partition. ``memory.capacity_bytes`` is ignored. This is the
    number a ``MemoryCapacityError`` reports.
    """
    if not isinstance(memory, StageMemory):
        raise TypeError(f"memory must be a StageMemory, got {type(memory).__name__}")
    n = memory.persistent_bytes.size
    if n == 0:
        raise ValueError("memory.persistent_bytes is empty: need at least one block")
    p = memory.inflight.size
    if p < 1 or p > n:
        raise ValueError(
            f"len(memory.inflight) = {p} is not allowed: need 1 <= stages <= {n} blocks")
    return _Instance(np.zeros(n), p, memory).min_capacity()


def dp_min_max(costs: Any, comm: Any, num_stages: int, *,
               memory: StageMemory | None = None) -> Partition:
    """Exact minimum-bottleneck partition, then minimum total cut cost among those.

    Finds ``B* = min_bottleneck(costs, num_stages)``; among partitions whose stages
    all cost ``<= B* (1 + REL_TOL)`` (and fit ``memory`` if given) returns one of
    minimum ``cut_cost``; ties (within REL_TOL) go to the lexicographically
    smallest cut list. O(p·n·log w) time; n = 10,000, p = 128 in well under 0.25 s.
    """
    return dp_slack(costs, comm, num_stages, 0.0, memory=memory)


def dp_slack(costs: Any, comm: Any, num_stages: int, slack: float = 0.1, *,
             memory: StageMemory | None = None) -> Partition:
    """Minimum total cut cost subject to bottleneck ``<= (1 + slack) * B*``.

    ``B*`` is the exact minimum bottleneck (with ``memory``: over partitions that
    fit). ``slack >= 0`` is a fraction (0.1 = 10 % above optimum); the bound gets
    the usual ``(1 + REL_TOL)`` tolerance and ties in cut cost go to the
    lexicographically smallest cut list. ``slack = 0`` equals ``dp_min_max``.
    """
    c, m, p = _check_costs_comm(costs, comm, num_stages)
    s = _check_factor(slack, "slack")
    inst = _instance(c, p, memory)
    b_star = inst.min_bottleneck()
    bound = b_star * (1.0 + s) * (1.0 + REL_TOL)
    return inst.min_cut(m, bound)


def schedule_aware(f: Any, b: Any, comm: Any, num_stages: int, schedule: str = "1f1b",
                   microbatches: int = 8, comm_mode: str = "overlap", w: Any = None, *,
                   stages_per_device: int | None = None) -> Partition:
    """Partition minimising the simulated makespan of ``schedule`` (seconds in, ranges out).

    Per-block ``f``, ``b``, ``w`` seconds per microbatch, ``comm[i]`` seconds per cut
    after block ``i``; never slower than ``dp_min_max``. Implemented (and documented) in
    :func:`bubblereduce.schedule_search.schedule_aware`, imported on first call.
    """
    from bubblereduce.schedule_search import schedule_aware as _search

    return _search(f, b, comm, num_stages, schedule, microbatches, comm_mode, w,
                   stages_per_device=stages_per_device)
