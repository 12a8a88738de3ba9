"""Tests for bubblereduce.partition against brute force and a plain O(p·n²) DP."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubblereduce.partition import (
    REL_TOL,
    MemoryCapacityError,
    StageMemory,
    bottleneck,
    boundary_indices,
    cut_cost,
    dp_min_max,
    dp_slack,
    greedy,
    min_bottleneck,
    min_capacity_bytes,
    stage_costs,
    uniform,
    validate_partition,
)

FAST = settings(max_examples=80, deadline=None)
SLACKS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)


# --------------------------------------------------------------------------- #
# Oracles (independent of the module: direct sums, no prefix tricks)
# --------------------------------------------------------------------------- #
def _parts(cuts: tuple[int, ...], n: int) -> list[tuple[int, int]]:
    edges = (0, *cuts, n)
    return [(edges[k], edges[k + 1]) for k in range(len(edges) - 1)]


def _all_partitions(n: int, p: int):
    """Every partition, cut lists in lexicographic order."""
    for cuts in itertools.combinations(range(1, n), p - 1):
        yield _parts(cuts, n)


def _stage_memory(mem: StageMemory, parts) -> list[float]:
    return [
        float(sum(mem.persistent_bytes[s:e]))
        + float(mem.inflight[k]) * float(sum(mem.activation_bytes[s:e]))
        for k, (s, e) in enumerate(parts)
    ]


def _fits(mem: StageMemory | None, parts) -> bool:
    if mem is None:
        return True
    return max(_stage_memory(mem, parts)) <= mem.capacity_bytes * (1 + REL_TOL)


def _brute_force(costs, comm, p, slack=0.0, mem=None):
    """(B*, partition) by the documented rule, enumerating every cut set."""
    n = len(costs)
    rows = []
    for parts in _all_partitions(n, p):
        if not _fits(mem, parts):
            continue
        bn = max(float(sum(costs[s:e])) for s, e in parts)
        cc = float(sum(comm[e - 1] for _, e in parts[:-1]))
        rows.append((parts, bn, cc))
    b_star = min(bn for _, bn, _ in rows)
    bound = b_star * (1 + slack) * (1 + REL_TOL)
    ok = [(parts, cc) for parts, bn, cc in rows if bn <= bound]
    c_star = min(cc for _, cc in ok)
    first = next(parts for parts, cc in ok if cc <= c_star * (1 + REL_TOL))
    return b_star, first


def _brute_min_capacity(mem: StageMemory, n: int, p: int) -> float:
    return min(max(_stage_memory(mem, parts)) for parts in _all_partitions(n, p))


def _plain_dp(costs, comm, p, slack=0.0, mem=None):
    """Textbook O(p·n²) DPs: min-max for B*, then suffix min cut with the same tie rule."""
    n = len(costs)
    pre = [0.0]
    for c in costs:
        pre.append(pre[-1] + float(c))
    inf = math.inf

    def fits(k, i, j):
        if mem is None:
            return True
        need = float(sum(mem.persistent_bytes[i:j])) + float(mem.inflight[k]) * float(
            sum(mem.activation_bytes[i:j]))
        return need <= mem.capacity_bytes * (1 + REL_TOL)

    # mm[k][j]: best bottleneck covering [0, j) with k stages
    mm = [[inf] * (n + 1) for _ in range(p + 1)]
    mm[0][0] = 0.0
    for k in range(1, p + 1):
        for j in range(k, n + 1):
            mm[k][j] = min((max(mm[k - 1][i], pre[j] - pre[i]) for i in range(k - 1, j)
                            if fits(k - 1, i, j)), default=inf)
    b_star = mm[p][n]
    bound = b_star * (1 + slack) * (1 + REL_TOL)
    # g[k][i]: least cut cost covering [i, n) with stages k..p-1
    g = [[inf] * (n + 1) for _ in range(p + 1)]
    g[p][n] = 0.0
    for k in range(p - 1, -1, -1):
        for i in range(n):
            for j in range(i + 1, n + 1):
                if pre[j] - pre[i] > bound:
                    break
                rest = g[k + 1][j]
                if rest < inf and fits(k, i, j):
                    g[k][i] = min(g[k][i], rest + (comm[j - 1] if j < n else 0.0))
    budget = g[0][0] * (1 + REL_TOL)
    cuts, i, spent = [], 0, 0.0
    for k in range(p - 1):
        for j in range(i + 1, n):
            if (pre[j] - pre[i] <= bound and fits(k, i, j)
                    and spent + comm[j - 1] + g[k + 1][j] <= budget):
                cuts.append(j)
                spent += comm[j - 1]
                i = j
                break
    return b_star, _parts(tuple(cuts), n)


# --------------------------------------------------------------------------- #
# Strategies: integer-valued data times a scale, so ties are exact ties and
# non-ties are far outside REL_TOL (no accidental near-ties at the tolerance).
# --------------------------------------------------------------------------- #
SCALES = st.sampled_from([1.0, 0.1, 0.37, 1e-3, 7.5])


@st.composite
def instances(draw, max_n: int = 12, zeros: bool = True):
    n = draw(st.integers(1, max_n))
    p = draw(st.integers(1, n))
    lo = 0 if zeros else 1
    costs = [v * draw(SCALES) for v in [draw(st.integers(lo, 20)) for _ in range(n)]]
    scale = draw(SCALES)
    comm = [draw(st.integers(0, 10)) * scale for _ in range(n)]
    return costs, comm, p


@st.composite
def memory_instances(draw, max_n: int = 10):
    costs, comm, p = draw(instances(max_n=max_n))
    n = len(costs)
    pers = [draw(st.integers(0, 10)) for _ in range(n)]
    act = [draw(st.integers(0, 10)) for _ in range(n)]
    inflight = [draw(st.integers(0, 4)) for _ in range(p)]
    cap = draw(st.integers(0, 80))
    return costs, comm, p, StageMemory(pers, act, inflight, cap)


# --------------------------------------------------------------------------- #
# Exactness against brute force
# --------------------------------------------------------------------------- #
@FAST
@given(instances())
def test_dp_min_max_equals_brute_force(inst):
    costs, comm, p = inst
    b_star, expected = _brute_force(costs, comm, p)
    assert math.isclose(min_bottleneck(costs, p), b_star, rel_tol=1e-12, abs_tol=0.0)
    got = dp_min_max(costs, comm, p)
    assert got == expected
    assert bottleneck(costs, got) <= b_star * (1 + REL_TOL)


@FAST
@given(instances(), st.sampled_from(SLACKS))
def test_dp_slack_equals_brute_force(inst, slack):
    costs, comm, p = inst
    _, expected = _brute_force(costs, comm, p, slack=slack)
    assert dp_slack(costs, comm, p, slack) == expected


@FAST
@given(instances())
def test_slack_zero_is_min_max_and_slack_never_costs_more(inst):
    costs, comm, p = inst
    exact = dp_min_max(costs, comm, p)
    assert dp_slack(costs, comm, p, 0.0) == exact
    loose = dp_slack(costs, comm, p, 0.5)
    assert cut_cost(comm, loose) <= cut_cost(comm, exact) * (1 + REL_TOL)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(15, 40), st.integers(2, 7),
       st.sampled_from((0.0, 0.1, 0.3)), st.booleans())
def test_dps_equal_plain_dp_on_medium_n(seed, n, p, slack, integer_data):
    rng = np.random.default_rng(seed)
    if integer_data:  # many exact ties
        costs = rng.integers(0, 6, n).astype(float)
        comm = rng.integers(0, 4, n).astype(float)
    else:
        costs = rng.lognormal(0.0, 1.0, n)
        comm = rng.uniform(0.0, 1.0, n)
    b_star, expected = _plain_dp(costs.tolist(), comm.tolist(), p, slack)
    assert math.isclose(min_bottleneck(costs, p), b_star, rel_tol=1e-12)
    assert dp_slack(costs, comm, p, slack) == expected


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(12, 30), st.integers(2, 6),
       st.sampled_from((0.0, 0.2)))
def test_memory_dps_equal_plain_dp_on_medium_n(seed, n, p, slack):
    rng = np.random.default_rng(seed)
    costs = rng.integers(1, 6, n).astype(float)
    comm = rng.integers(0, 4, n).astype(float)
    pers = rng.integers(0, 5, n)
    act = rng.integers(0, 3, n)
    inflight = rng.integers(0, p + 1, p)
    # capacity between the tightest feasible one and 1.5x it
    probe = StageMemory(pers, act, inflight, 0.0)
    try:
        dp_min_max(costs, comm, p, memory=probe)
        need = 0.0
    except MemoryCapacityError as exc:
        need = exc.min_capacity_bytes
    mem = StageMemory(pers, act, inflight, need * rng.uniform(1.0, 1.5))
    b_star, expected = _plain_dp(costs.tolist(), comm.tolist(), p, slack, mem)
    assert math.isclose(min_bottleneck(costs, p, memory=mem), b_star, rel_tol=1e-12)
    assert dp_slack(costs, comm, p, slack, memory=mem) == expected


def _stages_needed(costs: np.ndarray, bound: float) -> float:
    """Independent greedy stage count for a bound (inf if a block exceeds it)."""
    count, acc = 1, 0.0
    for c in costs:
        if c > bound:
            return math.inf
        if acc + c > bound:
            count, acc = count + 1, 0.0
        acc += c
    return count


@pytest.mark.parametrize("seed", [0, 1])
def test_large_instance_is_optimal(seed):
    rng = np.random.default_rng(seed)
    n, p = 3000, 64
    costs = rng.lognormal(0.0, 0.7, n)
    comm = rng.uniform(0.0, 1.0, n)
    b_star = min_bottleneck(costs, p)
    assert _stages_needed(costs, b_star * (1 + 1e-12)) <= p
    assert _stages_needed(costs, b_star * (1 - 1e-12)) > p
    parts = dp_min_max(costs, comm, p)
    validate_partition(parts, n, p)
    assert bottleneck(costs, parts) <= b_star * (1 + REL_TOL)
    loose = dp_slack(costs, comm, p, 0.2)
    assert bottleneck(costs, loose) <= b_star * 1.2 * (1 + REL_TOL)
    assert cut_cost(comm, loose) < cut_cost(comm, parts)


# --------------------------------------------------------------------------- #
# Memory option
# --------------------------------------------------------------------------- #
@settings(max_examples=100, deadline=None)
@given(memory_instances(), st.sampled_from((0.0, 0.25)))
def test_memory_constrained_equals_brute_force(inst, slack):
    costs, comm, p, mem = inst
    n = len(costs)
    if not any(_fits(mem, parts) for parts in _all_partitions(n, p)):
        with pytest.raises(MemoryCapacityError) as info:
            dp_slack(costs, comm, p, slack, memory=mem)
        need = _brute_min_capacity(mem, n, p)
        assert math.isclose(info.value.min_capacity_bytes, need, rel_tol=1e-12)
        assert min_capacity_bytes(mem) == info.value.min_capacity_bytes
        assert repr(info.value.min_capacity_bytes) in str(info.value)
        assert need > mem.capacity_bytes
        return
    b_star, expected = _brute_force(costs, comm, p, slack=slack, mem=mem)
    assert math.isclose(min_bottleneck(costs, p, memory=mem), b_star, rel_tol=1e-12)
    assert dp_slack(costs, comm, p, slack, memory=mem) == expected


@settings(max_examples=60, deadline=None)
@given(memory_instances())
def test_reported_min_capacity_fits(inst):
    costs, comm, p, mem = inst
    n = len(costs)
    need = _brute_min_capacity(mem, n, p)
    assert math.isclose(min_capacity_bytes(mem), need, rel_tol=1e-12)
    tight = StageMemory(mem.persistent_bytes, mem.activation_bytes, mem.inflight, need)
    parts = dp_min_max(costs, comm, p, memory=tight)
    assert _fits(tight, parts)
    if need > 0:
        below = StageMemory(mem.persistent_bytes, mem.activation_bytes, mem.inflight,
                            need * (1 - 1e-6))
        with pytest.raises(MemoryCapacityError) as info:
            dp_min_max(costs, comm, p, memory=below)
        assert math.isclose(info.value.min_capacity_bytes, need, rel_tol=1e-12)


def test_memory_needs_exact_probe_not_greedy():
    # Stage 1 holds 100 microbatches, so block 2 (activation 1) cannot sit there;
    # a furthest-reach greedy gets stuck, the exact probe must not.
    mem = StageMemory([0, 0, 0, 0], [0, 0, 1, 0], [1, 100, 1], 10)
    assert dp_min_max([1, 1, 1, 1], [0, 0, 0, 0], 3, memory=mem) == [(0, 1), (1, 2), (2, 4)]
    assert min_bottleneck([1, 1, 1, 1], 3, memory=mem) == 2.0


def test_memory_can_force_a_worse_bottleneck():
    costs = [4, 1, 1, 4]
    mem = StageMemory([5, 1, 1, 5], [0, 0, 0, 0], [1, 1], 6)
    # only the middle cut keeps both stages at 6 bytes; at 5 bytes nothing fits
    assert dp_min_max(costs, [0] * 4, 2, memory=mem) == [(0, 2), (2, 4)]
    with pytest.raises(MemoryCapacityError, match="smallest capacity that fits is 6.0"):
        dp_min_max(costs, [0] * 4, 2, memory=StageMemory([5, 1, 1, 5], [0] * 4, [1, 1], 5))


# --------------------------------------------------------------------------- #
# Every strategy: valid partitions, scale invariance
# --------------------------------------------------------------------------- #
STRATEGIES = {
    "uniform": lambda c, m, p: uniform(c, m, p),
    "greedy": lambda c, m, p: greedy(c, m, p),
    "greedy_alpha0": lambda c, m, p: greedy(c, m, p, alpha=0.0),
    "greedy_alpha5": lambda c, m, p: greedy(c, m, p, alpha=5.0),
    "dp_min_max": lambda c, m, p: dp_min_max(c, m, p),
    "dp_slack": lambda c, m, p: dp_slack(c, m, p, 0.2),
}


@FAST
@given(instances(max_n=40), st.sampled_from(sorted(STRATEGIES)), st.booleans())
def test_every_strategy_returns_a_valid_partition(inst, name, as_array):
    costs, comm, p = inst
    if as_array:
        costs, comm = np.asarray(costs), np.asarray(comm)
    parts = STRATEGIES[name](costs, comm, p)
    validate_partition(parts, len(costs), p)
    assert all(type(s) is int and type(e) is int for s, e in parts)


@FAST
@given(instances(max_n=40), st.sampled_from(sorted(STRATEGIES)), st.sampled_from((1e-4, 1e4)))
def test_scale_invariance(inst, name, factor):
    costs, comm, p = inst
    base = STRATEGIES[name](costs, comm, p)
    scaled = STRATEGIES[name]([c * factor for c in costs], [m * factor for m in comm], p)
    assert scaled == base


@FAST
@given(memory_instances(), st.sampled_from((1e-4, 1e4)))
def test_memory_scale_invariance(inst, factor):
    costs, comm, p, mem = inst
    try:
        base = dp_min_max(costs, comm, p, memory=mem)
    except MemoryCapacityError:
        return
    scaled = dp_min_max([c * factor for c in costs], [m * factor for m in comm], p, memory=mem)
    assert scaled == base


@FAST
@given(st.lists(st.floats(0, 1e3, allow_subnormal=False), min_size=1, max_size=30),
       st.data())
def test_arbitrary_floats_stay_near_optimal(costs, data):
    n = len(costs)
    p = data.draw(st.integers(1, min(n, 8)))
    comm = data.draw(st.lists(st.floats(0, 1e3, allow_subnormal=False), min_size=n, max_size=n))
    if n <= 10:
        b_star, expected = _brute_force(costs, comm, p)
        got = dp_min_max(costs, comm, p)
        assert bottleneck(costs, got) <= b_star * (1 + 2 * REL_TOL)
        assert cut_cost(comm, got) <= cut_cost(comm, expected) * (1 + 2 * REL_TOL)
    for name in STRATEGIES:
        validate_partition(STRATEGIES[name](costs, comm, p), n, p)


# --------------------------------------------------------------------------- #
# Deterministic behaviour of the simple strategies and helpers
# --------------------------------------------------------------------------- #
def test_uniform_spreads_remainder_over_first_stages():
    assert uniform([1] * 10, [0] * 10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert uniform([5], [0], 1) == [(0, 1)]


def test_greedy_prefers_cheap_cut_when_alpha_large():
    costs = [1.0] * 6
    comm = [5.0, 5.0, 5.0, 0.0, 5.0, 5.0]
    assert greedy(costs, comm, 2, alpha=0.0) == [(0, 3), (3, 6)]
    assert greedy(costs, comm, 2, alpha=1.0) == [(0, 4), (4, 6)]


def _greedy_reference(costs, comm, p, alpha):
    """The documented greedy rule, scoring every allowed end with direct sums."""
    n, cuts, i = len(costs), [], 0
    for k in range(p - 1):
        target = sum(costs[i:]) / (p - k)
        scores = {j: abs(sum(costs[i:j]) - target) + alpha * comm[j - 1]
                  for j in range(i + 1, n - (p - k - 1) + 1)}
        best = min(scores.values())
        i = min(j for j, v in scores.items() if v <= best + REL_TOL * (target + best))
        cuts.append(i)
    return _parts(tuple(cuts), n)


@FAST
@given(instances(max_n=40), st.sampled_from((0.0, 0.3, 1.0, 5.0)))
def test_greedy_equals_reference(inst, alpha):
    costs, comm, p = inst
    assert greedy(costs, comm, p, alpha=alpha) == _greedy_reference(costs, comm, p, alpha)


@pytest.mark.parametrize("factor", [1.0, 0.1, 1e-4, 3.3, 1e4])
def test_greedy_ties_go_to_earliest_end_at_any_scale(factor):
    # ends after block 0 or 1 score |1-2| = |3-2| = 1: a tie, earliest wins
    assert greedy([1 * factor, 2 * factor, 1 * factor], [0.0] * 3, 2) == [(0, 1), (1, 3)]
    costs = [0.1 * factor] * 7 + [0.3 * factor] * 3
    comm = [0.2 * factor] * 10
    assert greedy(costs, comm, 4) == greedy([0.1] * 7 + [0.3] * 3, [0.2] * 10, 4)


def test_min_max_picks_cheapest_cut_among_optimal():
    costs = [1, 1, 1, 1, 1, 1]
    comm = [3, 3, 1, 3, 3, 0]
    # bottleneck 3 forces (0,3),(3,6) for p=2, whatever the comm
    assert dp_min_max(costs, comm, 2) == [(0, 3), (3, 6)]
    # slack 1/3 allows bottleneck 4: cuts after block 1 or 2 (comm 3 or 1)
    assert dp_slack(costs, comm, 2, 1 / 3) == [(0, 3), (3, 6)]
    comm2 = [3, 0.5, 1, 3, 3, 0]
    assert dp_slack(costs, comm2, 2, 1 / 3) == [(0, 2), (2, 6)]


def test_ties_go_to_lexicographically_smallest_cuts():
    assert dp_min_max([1, 1, 1], [0, 0, 0], 2) == [(0, 1), (1, 3)]
    assert dp_min_max([0, 0, 0, 0], [1, 1, 1, 1], 3) == [(0, 1), (1, 2), (2, 4)]


def test_helpers():
    parts = [(0, 2), (2, 3), (3, 5)]
    costs = [1.0, 2.0, 3.0, 4.0, 5.0]
    comm = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert stage_costs(costs, parts).tolist() == [3.0, 3.0, 9.0]
    assert bottleneck(costs, parts) == 9.0
    assert boundary_indices(parts) == [1, 2]
    assert cut_cost(comm, parts) == 50.0
    assert cut_cost(comm, [(0, 5)]) == 0.0


@pytest.mark.parametrize(
    ("parts", "n", "p", "match"),
    [
        ([(0, 2), (2, 5)], 5, 3, "2 stages, expected num_stages = 3"),
        ([(0, 2), (3, 5)], 5, 2, "starts at 3, expected 2"),
        ([(1, 2), (2, 5)], 5, 2, "starts at 1, expected 0"),
        ([(0, 2), (2, 2), (2, 5)], 5, 3, "empty"),
        ([(0, 2), (2, 4)], 5, 2, r"covers blocks \[0, 4\)"),
    ],
)
def test_validate_partition_rejects(parts, n, p, match):
    with pytest.raises(ValueError, match=match):
        validate_partition(parts, n, p)


# --------------------------------------------------------------------------- #
# Bad input
# --------------------------------------------------------------------------- #
ALL_FUNCS = [
    lambda c, m, p: uniform(c, m, p),
    lambda c, m, p: greedy(c, m, p),
    lambda c, m, p: dp_min_max(c, m, p),
    lambda c, m, p: dp_slack(c, m, p, 0.1),
]


@pytest.mark.parametrize("func", ALL_FUNCS)
@pytest.mark.parametrize(
    ("costs", "comm", "p", "match"),
    [
        ([1, 2, 3], [0, 0, 0], 0, "num_stages = 0"),
        ([1, 2, 3], [0, 0, 0], 4, "num_stages = 4"),
        ([1, float("nan"), 3], [0, 0, 0], 2, r"costs\[1\] = nan"),
        ([1, 2, float("inf")], [0, 0, 0], 2, r"costs\[2\] = inf"),
        ([1, -2, 3], [0, 0, 0], 2, r"costs\[1\] = -2.0"),
        ([1, 2, 3], [0, -1, 0], 2, r"comm\[1\] = -1.0"),
        ([1, 2, 3], [0, float("nan"), 0], 2, r"comm\[1\] = nan"),
        ([1, 2, 3], [0, 0], 2, r"len\(comm\) = 2 must equal len\(costs\) = 3"),
        ([], [], 1, "empty"),
        ([[1, 2], [3, 4]], [0, 0], 1, "1-D"),
    ],
)
def test_bad_input_raises_value_error(func, costs, comm, p, match):
    with pytest.raises(ValueError, match=match):
        func(costs, comm, p)


@pytest.mark.parametrize("func", ALL_FUNCS)
def test_bad_types_raise_type_error(func):
    with pytest.raises(TypeError, match="num_stages"):
        func([1, 2], [0, 0], 1.5)
    with pytest.raises(TypeError, match="num_stages"):
        func([1, 2], [0, 0], True)
    with pytest.raises(TypeError, match="costs"):
        func("12", [0, 0], 1)


def test_bad_factors():
    with pytest.raises(ValueError, match="slack = -0.1"):
        dp_slack([1, 2], [0, 0], 2, -0.1)
    with pytest.raises(ValueError, match="slack = nan"):
        dp_slack([1, 2], [0, 0], 2, float("nan"))
    with pytest.raises(ValueError, match="alpha = -1.0"):
        greedy([1, 2], [0, 0], 2, alpha=-1.0)


def test_bad_memory():
    with pytest.raises(ValueError, match=r"len\(persistent_bytes\) = 2 must equal"):
        StageMemory([1, 2], [1], [1], 10)
    with pytest.raises(ValueError, match=r"inflight\[0\] = -1.0"):
        StageMemory([1], [1], [-1], 10)
    with pytest.raises(ValueError, match="capacity_bytes = inf"):
        StageMemory([1], [1], [1], float("inf"))
    mem = StageMemory([1, 1, 1], [1, 1, 1], [1, 1], 100)
    with pytest.raises(ValueError, match=r"len\(memory.inflight\) = 2 must equal num_stages = 3"):
        dp_min_max([1, 1, 1], [0, 0, 0], 3, memory=mem)
    with pytest.raises(ValueError, match=r"len\(memory.persistent_bytes\) = 3 must equal"):
        dp_min_max([1, 1], [0, 0], 2, memory=mem)
    with pytest.raises(TypeError, match="StageMemory"):
        dp_min_max([1, 1], [0, 0], 2, memory={"capacity_bytes": 1})
    assert mem.inflight.flags.writeable is False
    with pytest.raises(ValueError, match=r"len\(memory.inflight\) = 2 is not allowed"):
        min_capacity_bytes(StageMemory([1], [1], [1, 1], 10))
    with pytest.raises(TypeError, match="StageMemory"):
        min_capacity_bytes(None)
