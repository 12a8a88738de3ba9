"""Tests for bubblereduce.profile: measurement on a tiny model, blocks, JSON save/load errors."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bubblereduce.models import build_mlp, mlp_input
from bubblereduce.profile import (
    FORMAT_VERSION,
    LayerProfile,
    ModelProfile,
    ProfileError,
    ProfileMeta,
    group_blocks,
    load_profiles,
    microbatch_size_for,
    profile_for_size,
    profile_microbatch_sizes,
    profile_sequential,
    save_profiles,
)

WIDTHS = (8, 16, 4, 12)


def _meta(size: int = 4) -> ProfileMeta:
    return ProfileMeta(model="m", device="cpu", dtype="float32", microbatch_size=size, threads=1,
                       torch_version="x", warmup=0, repeats=1)


def _profile(f: list[float], b: list[float], act: list[int], par: list[int] | None = None,
             i: list[float] | None = None, w: list[float] | None = None, size: int = 4) -> ModelProfile:
    n = len(f)
    par = par or [10 * k for k in range(n)]
    layers = tuple(
        LayerProfile(f"l{k}", f[k], b[k], act[k], par[k],
                     None if i is None else i[k], None if w is None else w[k])
        for k in range(n)
    )
    return ModelProfile(layers=layers, meta=_meta(size))


# ----------------------------------------------------------------------------- measurement
def test_profile_tiny_mlp_fields(record_property: Any) -> None:
    model = build_mlp(WIDTHS, seed=0)
    model.eval()
    lines: list[str] = []
    before = torch.get_num_threads()
    prof = profile_sequential(model, mlp_input(5, WIDTHS[0], seed=0), warmup=1, repeats=3,
                              threads=1, progress=lines.append, model_name="tiny")
    assert torch.get_num_threads() == before, "thread count must be restored"
    assert not model.training, "training flag must be restored"
    assert prof.names == ("fc0", "fc1", "fc2")
    assert prof.meta == ProfileMeta(model="tiny", device="cpu", dtype="float32", microbatch_size=5,
                                    threads=1, torch_version=torch.__version__, warmup=1, repeats=3)
    assert prof.act_bytes.tolist() == [5 * w * 4 for w in WIDTHS[1:]]
    assert prof.param_bytes.tolist() == [(a * b + b) * 4 for a, b in zip(WIDTHS, WIDTHS[1:], strict=False)]
    for arr in (prof.forward_s, prof.backward_s, prof.input_grad_s, prof.weight_grad_s):
        assert arr is not None and arr.dtype == np.float64 and arr.shape == (3,)
        assert bool(np.all(arr > 0)) and bool(np.all(arr < 1.0)), arr
    assert len(lines) == 3 and lines[0].startswith("profile 1/3 fc0: f=")
    ratio = (prof.input_grad_s + prof.weight_grad_s) / prof.backward_s
    record_property("i_plus_w_over_b", ratio.tolist())  # timing noise: recorded, not asserted
    assert bool(np.all(np.isfinite(ratio)))


class _RecordGrad(torch.autograd.Function):
    """Identity whose backward records the upstream gradient it receives."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, log: list) -> torch.Tensor:
        ctx.log = log
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        ctx.log.append(grad.detach().clone())
        return grad, None


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _RecordGrad.apply(x * 2.0, self.log)


def test_backward_uses_seeded_gradient_of_output_shape_not_sum() -> None:
    rec, rec_free = _Recorder(), _Recorder()
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 6), rec), rec_free)
    prof = profile_sequential(model, torch.ones(4, 3), warmup=1, repeats=2, seed=5)
    # layer 0 (has parameters): 3 full backward + 3 I + 3 W runs see the upstream gradient;
    # layer 1 (parameter-free): only the 3 full backward runs (I is that same backward)
    assert len(rec.log) == 9 and len(rec_free.log) == 3
    for g in rec.log + rec_free.log:
        assert g.shape == (4, 6)
        assert not torch.equal(g, torch.ones_like(g)), "must not be y.sum().backward()"
    assert all(torch.equal(g, rec.log[0]) for g in rec.log), "same seeded gradient every run"
    assert all(torch.equal(g, rec_free.log[0]) for g in rec_free.log)
    first = rec.log[0]
    rec.log.clear()
    profile_sequential(model, torch.ones(4, 3), warmup=0, repeats=1, seed=5)
    assert torch.equal(rec.log[0], first), "seeded: reproducible"
    rec.log.clear()
    profile_sequential(model, torch.ones(4, 3), warmup=0, repeats=1, seed=6)
    assert not torch.equal(rec.log[0], first), "the seed matters"
    assert prof.layers[1].weight_grad_s == 0.0
    assert prof.layers[1].input_grad_s == prof.layers[1].backward_s
    assert prof.layers[0].weight_grad_s > 0 and prof.layers[0].input_grad_s > 0


def test_integer_input_layer_has_no_input_gradient() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    prof = profile_sequential(model, torch.tensor([[1, 2, 3], [4, 5, 6]]), warmup=0, repeats=1)
    emb = prof.layers[0]
    assert emb.input_grad_s == 0.0 and emb.weight_grad_s == emb.backward_s > 0
    assert emb.act_bytes == 2 * 3 * 4 * 4
    assert prof.meta.dtype == "float32" and prof.meta.microbatch_size == 2


def test_unsplit_profile() -> None:
    prof = profile_sequential(build_mlp(WIDTHS), mlp_input(2, 8), warmup=0, repeats=1,
                              split_backward=False)
    assert not prof.has_split
    assert prof.input_grad_s is None and prof.weight_grad_s is None
    blocks = group_blocks(prof, block_n=2)
    assert blocks.input_grad_s is None and blocks.weight_grad_s is None


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((nn.Linear(2, 2), torch.ones(1, 2)), {}, TypeError, "nn.Sequential"),
        ((nn.Sequential(), torch.ones(1, 2)), {}, ValueError, "no layers"),
        ((nn.Sequential(nn.Linear(2, 2)), [1.0, 2.0]), {}, TypeError, "torch.Tensor"),
        ((nn.Sequential(nn.Linear(2, 2)), torch.ones(0, 2)), {}, ValueError, "batch dimension"),
        ((nn.Sequential(nn.Linear(2, 2)), torch.ones(1, 2)), {"repeats": 0}, ValueError,
         "repeats must be an integer >= 1, got 0"),
        ((nn.Sequential(nn.Linear(2, 2)), torch.ones(1, 2)), {"warmup": -1}, ValueError, "warmup"),
        ((nn.Sequential(nn.Linear(2, 2)), torch.ones(1, 2)), {"threads": 0}, ValueError, "threads"),
    ],
)
def test_profile_sequential_errors(args: tuple, kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        profile_sequential(*args, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_unavailable_error() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        profile_sequential(nn.Sequential(nn.Linear(2, 2)), torch.ones(1, 2), device="cuda")


def test_profile_microbatch_sizes() -> None:
    lines: list[str] = []
    profs = profile_microbatch_sizes(lambda: build_mlp(WIDTHS), lambda s: mlp_input(s, 8),
                                     [4, 2], warmup=0, repeats=1, progress=lines.append)
    assert [p.meta.microbatch_size for p in profs] == [4, 2]
    assert profs[0].act_bytes.tolist() == (2 * profs[1].act_bytes).tolist()
    assert lines[0].startswith("[microbatch 4] profile 1/3")
    assert profile_for_size(profs, 2) is profs[1]
    with pytest.raises(ValueError, match=r"no profile for microbatch size 3; profiled sizes: \[4, 2\]"):
        profile_for_size(profs, 3)
    with pytest.raises(ValueError, match="distinct"):
        profile_microbatch_sizes(build_mlp(WIDTHS), lambda s: mlp_input(s, 8), [2, 2])
    with pytest.raises(ValueError, match="at least one"):
        profile_microbatch_sizes(build_mlp(WIDTHS), lambda s: mlp_input(s, 8), [])
    with pytest.raises(ValueError, match=r"input_fn\(2\) must return a tensor with batch size 2"):
        profile_microbatch_sizes(build_mlp(WIDTHS), lambda s: mlp_input(3, 8), [2])


def test_microbatch_size_for() -> None:
    assert microbatch_size_for(64, 8) == 8
    assert microbatch_size_for(64, 64) == 1
    with pytest.raises(ValueError, match=r"global_batch \(64\) must be divisible .* \(3\)"):
        microbatch_size_for(64, 3)
    with pytest.raises(ValueError, match="microbatches"):
        microbatch_size_for(64, 0)


# ----------------------------------------------------------------------------- blocks
def test_group_blocks_known_values() -> None:
    prof = _profile([1, 2, 3, 4, 5], [10, 20, 30, 40, 50], [100, 200, 300, 400, 500],
                    i=[6, 12, 18, 24, 30], w=[4, 8, 12, 16, 20])
    blocks = group_blocks(prof, block_n=2)
    assert blocks.layer_ranges == ((0, 2), (2, 4), (4, 5)), "last block shorter"
    assert blocks.names == ("l0..l1", "l2..l3", "l4")
    assert blocks.forward_s.tolist() == [3, 7, 5]
    assert blocks.backward_s.tolist() == [30, 70, 50]
    assert blocks.input_grad_s.tolist() == [18, 42, 30]
    assert blocks.weight_grad_s.tolist() == [12, 28, 20]
    assert blocks.act_bytes.tolist() == [200, 400, 500]
    assert blocks.param_bytes.tolist() == [10, 50, 40]
    assert blocks.act_bytes.dtype == np.int64 and blocks.forward_s.dtype == np.float64
    assert len(blocks) == blocks.num_blocks == 3 and blocks.meta == prof.meta
    with pytest.raises(ValueError):
        blocks.forward_s[0] = 0.0  # read-only

    by_bounds = group_blocks(prof, boundaries=[1, 4])
    assert by_bounds.layer_ranges == ((0, 1), (1, 4), (4, 5))
    assert by_bounds.act_bytes.tolist() == [100, 400, 500]
    assert group_blocks(prof).layer_ranges == tuple((k, k + 1) for k in range(5))
    assert group_blocks(prof, boundaries=[]).layer_ranges == ((0, 5),)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block_n": 0}, r"block_n must be an integer in 1\.\.5"),
        ({"block_n": 6}, r"in 1\.\.5"),
        ({"block_n": 2.0}, "block_n"),
        ({"boundaries": [0, 2]}, r"strictly increasing layer indices in 1\.\.4.*\[0, 2\]"),
        ({"boundaries": [2, 5]}, r"in 1\.\.4"),
        ({"boundaries": [3, 2]}, "strictly increasing"),
        ({"boundaries": [2, 2]}, "strictly increasing"),
        ({"boundaries": [1.5]}, "integers"),
        ({"block_n": 2, "boundaries": [2]}, "not both"),
    ],
)
def test_group_blocks_errors(kwargs: dict, match: str) -> None:
    prof = _profile([1.0] * 5, [1.0] * 5, [1] * 5)
    with pytest.raises(ValueError, match=match):
        group_blocks(prof, **kwargs)


@st.composite
def _profiles_and_bounds(draw: st.DrawFn) -> tuple[ModelProfile, list[int]]:
    n = draw(st.integers(1, 12))
    times = st.floats(0, 1e3, allow_nan=False)
    f = draw(st.lists(times, min_size=n, max_size=n))
    i = draw(st.lists(times, min_size=n, max_size=n))
    w = draw(st.lists(times, min_size=n, max_size=n))
    act = draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n))
    par = draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n))
    bounds = sorted(draw(st.sets(st.integers(1, max(1, n - 1)), max_size=n - 1))) if n > 1 else []
    b = [x + y for x, y in zip(i, w, strict=True)]
    return _profile(f, b, act, par, i, w), bounds


@settings(max_examples=80, deadline=None)
@given(_profiles_and_bounds(), st.integers(1, 12))
def test_block_sums_match_layers(data: tuple[ModelProfile, list[int]], block_n: int) -> None:
    prof, bounds = data
    n = len(prof)
    variants = [group_blocks(prof, boundaries=bounds)]
    if block_n <= n:
        variants.append(group_blocks(prof, block_n=block_n))
    for blocks in variants:
        ranges = blocks.layer_ranges
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a < b for a, b in ranges)
        assert all(r1[1] == r2[0] for r1, r2 in zip(ranges, ranges[1:], strict=False))
        for k, (a, b) in enumerate(ranges):
            # oracle: plain Python sums over the layer objects
            assert blocks.forward_s[k] == pytest.approx(sum(x.forward_s for x in prof.layers[a:b]),
                                                        rel=1e-12, abs=0)
            assert blocks.backward_s[k] == pytest.approx(
                sum(x.backward_s for x in prof.layers[a:b]), rel=1e-12, abs=0)
            assert blocks.input_grad_s[k] == pytest.approx(
                sum(x.input_grad_s for x in prof.layers[a:b]), rel=1e-12, abs=0)
            assert int(blocks.param_bytes[k]) == sum(x.param_bytes for x in prof.layers[a:b])
            assert int(blocks.act_bytes[k]) == prof.layers[b - 1].act_bytes
        assert math.isclose(blocks.weight_grad_s.sum(), prof.weight_grad_s.sum(), rel_tol=1e-9)


# ----------------------------------------------------------------------------- JSON
def _two_profiles() -> list[ModelProfile]:
    a = _profile([0.1, 1 / 3], [0.2 + 0.1, 2e-7], [12, 34], i=[0.1, 1e-300], w=[0.2, 0.0], size=8)
    b = _profile([0.05, 1 / 7], [0.15, 1e-7], [6, 17], i=[0.05, 0.0], w=[0.1, 0.0], size=4)
    return [a, b]


def test_json_round_trip_exact(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    profs = _two_profiles()
    save_profiles(path, profs)
    assert load_profiles(path) == profs
    doc = json.loads(path.read_text())
    assert doc["format_version"] == FORMAT_VERSION == 1
    assert doc["microbatch_sizes"] == [8, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]
    text = path.read_text()
    save_profiles(path, profs)
    assert path.read_text() == text, "byte-identical on re-save"
    save_profiles(path, profs[0])  # a single profile is accepted too
    assert load_profiles(path) == [profs[0]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False, allow_subnormal=True), min_size=1, max_size=6))
def test_json_float_round_trip_property(tmp_path_factory: pytest.TempPathFactory,
                                        xs: list[float]) -> None:
    prof = _profile(xs, [2 * x for x in xs], list(range(len(xs))))
    path = tmp_path_factory.mktemp("prof") / "p.json"
    save_profiles(path, [prof])
    (back,) = load_profiles(path)
    assert back.forward_s.tolist() == xs and back == prof


def test_real_profile_round_trip(tmp_path: Path) -> None:
    prof = profile_sequential(build_mlp(WIDTHS), mlp_input(3, 8), warmup=0, repeats=1)
    save_profiles(tmp_path / "p.json", [prof])
    assert load_profiles(tmp_path / "p.json") == [prof]


def _valid_doc(tmp_path: Path) -> dict:
    save_profiles(tmp_path / "ok.json", _two_profiles())
    return json.loads((tmp_path / "ok.json").read_text())


def _mutations() -> list[tuple[str, Any, str]]:
    """(id, mutate(doc) -> doc, expected message fragment)."""

    def setp(path: list, value: Any) -> Any:
        def f(doc: dict) -> dict:
            node = doc
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            return doc
        return f

    def delp(path: list) -> Any:
        def f(doc: dict) -> dict:
            node = doc
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
            return doc
        return f

    L0 = ["profiles", 0, "layers", 0]
    M0 = ["profiles", 0, "meta"]
    return [
        ("version", setp(["format_version"], 2), "format_version is 2; this code reads version 1"),
        ("version-missing", delp(["format_version"]), "missing field 'format_version'"),
        ("top-extra", setp(["extra"], 1), "unexpected field(s) ['extra']"),
        ("top-missing", delp(["profiles"]), "missing field(s) ['profiles']"),
        ("top-list", lambda d: [d], "top level must be a JSON object"),
        ("profiles-empty", setp(["profiles"], []), "'profiles' must be a non-empty list"),
        ("layer-missing", delp(L0 + ["act_bytes"]),
         "profiles[0].layers[0]: missing field(s) ['act_bytes']"),
        ("layer-extra", setp(L0 + ["flops"], 3), "profiles[0].layers[0]: unexpected field(s) ['flops']"),
        ("meta-missing", delp(M0 + ["threads"]), "profiles[0].meta: missing field(s) ['threads']"),
        ("f-string", setp(L0 + ["forward_s"], "0.1"),
         "profiles[0].layers[0].forward_s must be a number"),
        ("f-negative", setp(L0 + ["forward_s"], -1.0), "forward_s must be a finite number >= 0"),
        ("f-bool", setp(L0 + ["forward_s"], True), "forward_s must be a number"),
        ("w-negative", setp(L0 + ["weight_grad_s"], -1e-9), "weight_grad_s must be a finite"),
        ("act-float", setp(L0 + ["act_bytes"], 1.5), "act_bytes must be an integer"),
        ("act-negative", setp(L0 + ["act_bytes"], -1), "act_bytes must be >= 0"),
        ("name-int", setp(L0 + ["name"], 3), "name must be a string"),
        ("threads-zero", setp(M0 + ["threads"], 0), "meta.threads must be >= 1"),
        ("mb-string", setp(M0 + ["microbatch_size"], "8"), "microbatch_size must be an integer"),
        ("half-split", setp(L0 + ["input_grad_s"], None), "both be set or both None"),
        ("layers-empty", setp(["profiles", 0, "layers"], []), "layers must be a non-empty list"),
        ("sizes-mismatch", setp(["microbatch_sizes"], [8, 2]),
         "'microbatch_sizes' is [8, 2] but the profiles have microbatch sizes [8, 4]"),
        ("sizes-type", setp(["microbatch_sizes"], "8,4"), "'microbatch_sizes' must be a list"),
        ("sizes-duplicate", lambda d: (setp(["microbatch_sizes"], [8, 8])(d),
                                       setp(["profiles", 1, "meta", "microbatch_size"], 8)(d))[1],
         "microbatch sizes must be distinct, got [8, 8]"),
        ("different-models", setp(["profiles", 1, "layers", 0, "name"], "other"),
         "all profiles in one file must describe the same model"),
    ]


@pytest.mark.parametrize(("mutate", "fragment"), [m[1:] for m in _mutations()],
                         ids=[m[0] for m in _mutations()])
def test_malformed_files(tmp_path: Path, mutate: Any, fragment: str) -> None:
    doc = mutate(copy.deepcopy(_valid_doc(tmp_path)))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ProfileError) as info:
        load_profiles(bad)
    msg = str(info.value)
    assert str(bad) in msg and fragment in msg, msg


def test_nan_in_file(tmp_path: Path) -> None:
    doc = _valid_doc(tmp_path)
    text = json.dumps(doc).replace('"forward_s": 0.1', '"forward_s": NaN', 1)
    assert "NaN" in text
    (tmp_path / "nan.json").write_text(text)
    with pytest.raises(ProfileError, match="forward_s must be a finite number >= 0"):
        load_profiles(tmp_path / "nan.json")


def test_missing_not_json_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"profile file '.*nope.json': does not exist"):
        load_profiles(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ProfileError, match=r"x.json': is not valid JSON"):
        load_profiles(tmp_path / "x.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProfileError, match="UTF-8"):
        load_profiles(tmp_path / "bin.json")
    with pytest.raises(ProfileError, match="not a regular file"):
        load_profiles(tmp_path)
    assert issubclass(ProfileError, ValueError)


def test_save_errors(tmp_path: Path) -> None:
    a, b = _two_profiles()
    with pytest.raises(ProfileError, match="empty"):
        save_profiles(tmp_path / "p.json", [])
    with pytest.raises(ProfileError, match="distinct"):
        save_profiles(tmp_path / "p.json", [a, a])
    with pytest.raises(ProfileError, match="not a ModelProfile"):
        save_profiles(tmp_path / "p.json", [a, "b"])  # type: ignore[list-item]
    assert not (tmp_path / "p.json").exists()


def test_dataclass_validation() -> None:
    with pytest.raises(ValueError, match=r"l0.forward_s must be a finite number of seconds >= 0, got nan"):
        LayerProfile("l0", float("nan"), 0.0, 0, 0)
    with pytest.raises(ValueError, match="act_bytes must be an integer >= 0"):
        LayerProfile("l0", 0.0, 0.0, -5, 0)
    with pytest.raises(ValueError, match="at least one layer"):
        ModelProfile(layers=(), meta=_meta())
    with pytest.raises(ValueError, match="every layer"):
        ModelProfile(layers=(LayerProfile("a", 1, 1, 1, 1, 0.5, 0.5), LayerProfile("b", 1, 1, 1, 1)),
                     meta=_meta())
    with pytest.raises(ValueError, match="repeats"):
        ProfileMeta("m", "cpu", "float32", 1, 1, "x", 0, 0)
