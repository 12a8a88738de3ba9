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
  the search ends on the exact subarray sum, typically after a few dozen probes.
- ``dp_min_max`` / ``dp_slack``: a suffix DP over stages for the minimum total cut
  cost under a bottleneck bound. For stage k starting at block i the feasible ends
  form a window ``(i, reach_k(i)]`` whose right end is monotone in i, so each
  stage layer is one vectorised sparse-table range minimum: O(p·n·log w) for
  windows of w blocks, never O(p·n²).

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
    "stage_costs",
    "uniform",
    "validate_partition",
]

REL_TOL = 1e-9
"""Relative tolerance of every comparison (semantics.md §2: never absolute)."""

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
    for k in range(p - 1):
        last_end = n - (p - k - 1)
        ends = np.arange(i + 1, last_end + 1)
        target = (prefix[n] - prefix[i]) / (p - k)
        score = np.abs(prefix[ends] - prefix[i] - target) + a * m[ends - 1]
        best = score.min()
        j = int(ends[np.flatnonzero(score <= best + REL_TOL * (target + best))[0]])
        cuts.append(j)
        i = j
    return _ranges_from_cuts(cuts, n)


# --------------------------------------------------------------------------- #
# Exact machinery
# --------------------------------------------------------------------------- #
class _Instance:
    """Prefix sums and per-stage window reaches for one (costs, p, memory) problem.

    ``reach(k, i, bound)`` is the largest j with ``[i, j)`` fitting stage k: cost
    ``P[j] <= P[i] + bound`` and memory ``Q_k[j] <= Q_k[i] + capacity``. Both are
    monotone windows, so reaches are non-decreasing in i.
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
            # The greedy probe is exact when every single block fits every stage
            # (reachable end sets are then intervals); same formula as the reach.
            self.singles_fit = all(
                bool(np.all(q[1:] <= q[:-1] + self.capacity))
                for q in (self.mem_row(f) for f in sorted(set(self.inflight)))
            )
            self._mem_cache: dict[tuple[int, int], int] = {}

    # -- memory reach ------------------------------------------------------- #
    def mem_row(self, factor: float) -> np.ndarray:
        return self.pers_prefix + factor * self.act_prefix

    def mem_reach_scalar(self, k: int, i: int) -> int:
        key = (k, i)
        hit = self._mem_cache.get(key)
        if hit is not None:
            return hit
        f = self.inflight[k]
        pp, pa = self.pers_list, self.act_list
        limit = (pp[i] + f * pa[i]) + self.capacity
        lo, hi = i, self.n  # largest j in [i, n] with Q[j] <= limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if pp[mid] + f * pa[mid] <= limit:
                lo = mid
            else:
                hi = mid - 1
        self._mem_cache[key] = lo
        return lo

    def reach_array(self, k: int, starts: np.ndarray, bound: float,
                    capacity: float | None = None) -> np.ndarray:
        """Vectorised reach for stage k from each start (``bound=inf``: memory only)."""
        if math.isinf(bound):
            r = np.full(starts.size, self.n, dtype=np.int64)
        else:
            r = np.searchsorted(self.prefix, self.prefix[starts] + bound, side="right") - 1
        if self.memory is not None:
            cap = self.capacity if capacity is None else capacity
            q = self.mem_row(self.inflight[k])
            rm = np.searchsorted(q, q[starts] + cap, side="right") - 1
            r = np.minimum(r, rm)
        return r

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
                      want_cuts: bool = False) -> tuple[bool, list[int]]:
        """Exact feasibility for exactly p stages when reach sets need not be intervals.

        Propagates the set of reachable stage ends layer by layer, O(p·n log n).
        Returns (feasible, stage ends of one feasible partition if ``want_cuts``).
        """
        n, p = self.n, self.p
        reach_set = np.zeros(n + 1, dtype=bool)
        reach_set[0] = True
        layers = []
        for k in range(p):
            layers.append(reach_set)
            starts = np.flatnonzero(reach_set[: n - (p - k) + 1])
            if starts.size == 0:
                return False, []
            r = self.reach_array(k, starts, bound, capacity)
            ok = r > starts
            starts, r = starts[ok], r[ok]
            diff = np.bincount(starts + 1, minlength=n + 2) - np.bincount(r + 1, minlength=n + 2)
            reach_set = np.cumsum(diff)[: n + 1] > 0
        if not reach_set[n]:
            return False, []
        if not want_cuts:
            return True, []
        ends = [n]
        for k in range(p - 1, 0, -1):  # walk back: a reachable start that reaches ends[-1]
            j = ends[-1]
            starts = np.flatnonzero(layers[k][:j])
            r = self.reach_array(k, starts, bound, capacity)
            ends.append(int(starts[np.flatnonzero(r >= j)[-1]]))
        return True, ends[::-1]

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
        hi = max(float(self.mem_row(f)[-1]) for f in self.inflight)
        if not self.layered_probe(math.inf, lo)[0]:
            # invariant: infeasible at lo, feasible at hi
            while True:
                mid = lo + (hi - lo) / 2
                if not lo < mid < hi:
                    break
                if self.layered_probe(math.inf, mid)[0]:
                    hi = mid
                else:
                    lo = mid
        else:
            hi = lo
        # report the memory of an actual partition (exact, not a bisection float)
        return self._largest_memory(self.layered_probe(math.inf, hi, want_cuts=True)[1])

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
        total = self.prefix_list[-1]
        lo = max(float(self.costs.max()), total / self.p)
        if self.singles_fit:
            ok, realized, _ = self.greedy_probe(total)
            if not ok:
                self.raise_capacity()
            hi = realized
            while lo < hi:
                mid = lo + (hi - lo) / 2
                if not mid < hi:
                    mid = lo
                ok, largest, next_bound = self.greedy_probe(mid)
                if ok:
                    realized, hi = largest, min(largest, mid)
                elif math.isinf(next_bound):
                    # all stages memory-bound: the probe at `total` would fail too
                    raise AssertionError("probe infeasible with no cost-bound stage")
                else:
                    lo = max(next_bound, math.nextafter(mid, math.inf))
            return realized
        # General (memory) path: bisection to adjacent floats, then the exact
        # largest stage of a partition feasible at the final bound.
        if not self.layered_probe(total)[0]:
            self.raise_capacity()
        hi = total
        if self.layered_probe(lo)[0]:
            hi = lo
        else:
            while True:
                mid = lo + (hi - lo) / 2
                if not lo < mid < hi:
                    break
                if self.layered_probe(mid)[0]:
                    hi = mid
                else:
                    lo = mid
        return self._largest_stage(self.layered_probe(hi, want_cuts=True)[1])

    # -- cut-cost DP -------------------------------------------------------- #
    def min_cut(self, comm: np.ndarray, bound: float) -> Partition:
        """Minimum total cut cost with every stage fitting ``bound`` (and memory).

        Suffix DP in band coordinates: stage k starts at i in [k, k + w - 1] with
        w = n - p + 1; ``best[k][i - k]`` is the least cut cost of covering
        ``[i, n)`` with stages k..p-1. Then a forward pass picks, stage by stage,
        the earliest end keeping the total within REL_TOL of the optimum.
        """
        n, p = self.n, self.p
        w = n - p + 1
        band = np.arange(w)
        best = np.empty((p, w), dtype=np.float64)
        uniform_reach = None
        if self.memory is None:
            uniform_reach = self.reach_array(0, np.arange(n + 1), bound)
        levels_max = max(1, int(w).bit_length())
        log_table = np.zeros(w + 1, dtype=np.int64)
        # exact floor(log2(length)) by ranges, no float log
        for lv in range(levels_max + 1):
            lo_, hi_ = 1 << lv, min(w + 1, 1 << (lv + 1))
            if lo_ < hi_:
                log_table[lo_:hi_] = lv
        table = np.full((levels_max + 1, w), np.inf)

        def reach_of(k: int) -> np.ndarray:
            starts = band + k
            if uniform_reach is not None:
                return uniform_reach[starts]
            return self.reach_array(k, starts, bound)

        last = reach_of(p - 1)
        best[p - 1] = np.where(last == n, 0.0, np.inf)
        for k in range(p - 2, -1, -1):
            # h[y]: cost of cutting after block k + y (stage k+1 starts at k + 1 + y)
            h = comm[k: k + w] + best[k + 1]
            length = np.minimum(reach_of(k) - (band + k), w - band)  # ends j - i in [1, length]
            valid = length >= 1
            table[0] = h
            top = int(log_table[max(1, int(length.max()))])
            for lv in range(1, top + 1):
                half = 1 << (lv - 1)
                table[lv, : w - half] = np.minimum(table[lv - 1, : w - half], table[lv - 1, half:])
                table[lv, w - half:] = np.inf
            safe = np.where(valid, length, 1)
            lv = log_table[safe]
            right = band + safe - (1 << lv)
            row = np.minimum(table[lv, band], table[lv, right])
            best[k] = np.where(valid, row, np.inf)
        optimum = float(best[0, 0])
        if math.isinf(optimum):
            raise AssertionError("cut DP found no partition within a feasible bound")
        # forward pass: earliest cut that keeps the total within tolerance
        budget = optimum * (1.0 + REL_TOL)
        cuts: list[int] = []
        i, spent = 0, 0.0
        for k in range(p - 1):
            if uniform_reach is not None:
                r = int(uniform_reach[i])
            else:
                r = int(self.reach_array(k, np.array([i]), bound)[0])
            j_hi = min(r, n - (p - k - 1))
            ends = np.arange(i + 1, j_hi + 1)
            total = (spent + comm[ends - 1]) + best[k + 1, ends - (k + 1)]
            pick = np.flatnonzero(total <= budget)
            assert pick.size, "forward pass lost the optimum"
            j = int(ends[pick[0]])
            spent += float(comm[j - 1])
            cuts.append(j)
            i = j
        return _ranges_from_cuts(cuts, n)


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


def __getattr__(name: str) -> Any:
    # schedule_aware lives in schedule_search (it needs the simulator); re-export lazily.
    if name == "schedule_aware":
        from bubblereduce.schedule_search import schedule_aware

        return schedule_aware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
