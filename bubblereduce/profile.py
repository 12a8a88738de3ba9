"""Layer profiles: per-layer forward/backward seconds (with an I/W split), bytes, blocks, JSON.

Semantics (semantics.md §1): every number is for ONE microbatch. ``backward_s``
is the full backward of a layer (gradients for its input and its parameters),
measured as one call; ``input_grad_s`` (I) and ``weight_grad_s`` (W) are measured
separately, so ``I + W`` equals ``B`` only up to measurement noise and the small
work both halves repeat (e.g. a ReLU's backward feeds both).

Blocks group consecutive layers: a block's times and parameter bytes are sums,
its activation bytes are those of its last layer's output (what crosses a cut
after it).

Profiles are saved as JSON ``{"format_version": 1, "microbatch_sizes": [...],
"profiles": [...]}``; :func:`load_profiles` checks every field and raises
:class:`ProfileError` naming the file and the problem.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .io import atomic_write_text, to_jsonable

__all__ = [
    "FORMAT_VERSION",
    "LayerProfile",
    "ProfileMeta",
    "ModelProfile",
    "BlockProfile",
    "ProfileError",
    "profile_sequential",
    "profile_microbatch_sizes",
    "microbatch_size_for",
    "profile_for_size",
    "group_blocks",
    "save_profiles",
    "load_profiles",
]

FORMAT_VERSION = 1


class ProfileError(ValueError):
    """A profile file or profile list is malformed; the message names the file and the problem."""


def _is_number(x: object) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool | np.bool_)


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def _check_seconds(name: str, x: object) -> float:
    if not _is_number(x) or not math.isfinite(float(x)) or float(x) < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {x!r}")
    return float(x)


def _check_count(name: str, x: object, minimum: int) -> int:
    if not _is_int(x) or int(x) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {x!r}")
    return int(x)


@dataclass(frozen=True)
class LayerProfile:
    """One layer, one microbatch: seconds for forward / backward (I, W) and bytes.

    ``input_grad_s`` and ``weight_grad_s`` are both ``None`` (no split measured) or
    both set. Times are finite and ``>= 0`` seconds; bytes are integers ``>= 0``.
    """

    name: str
    forward_s: float
    backward_s: float
    act_bytes: int
    param_bytes: int
    input_grad_s: float | None = None
    weight_grad_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"LayerProfile.name must be str, got {type(self.name).__name__}")
        for f in ("forward_s", "backward_s"):
            object.__setattr__(self, f, _check_seconds(f"{self.name}.{f}", getattr(self, f)))
        for f in ("act_bytes", "param_bytes"):
            object.__setattr__(self, f, _check_count(f"{self.name}.{f}", getattr(self, f), 0))
        i, w = self.input_grad_s, self.weight_grad_s
        if (i is None) != (w is None):
            raise ValueError(
                f"{self.name}: input_grad_s and weight_grad_s must both be set or both None, "
                f"got {i!r} and {w!r}"
            )
        if i is not None:
            object.__setattr__(self, "input_grad_s", _check_seconds(f"{self.name}.input_grad_s", i))
            object.__setattr__(self, "weight_grad_s", _check_seconds(f"{self.name}.weight_grad_s", w))


@dataclass(frozen=True)
class ProfileMeta:
    """How a profile was measured: model name, device, dtype, microbatch size (samples),
    CPU threads, torch version, warm-up runs and timed repeats (the median is kept)."""

    model: str
    device: str
    dtype: str
    microbatch_size: int
    threads: int
    torch_version: str
    warmup: int
    repeats: int

    def __post_init__(self) -> None:
        for f in ("model", "device", "dtype", "torch_version"):
            if not isinstance(getattr(self, f), str):
                raise TypeError(f"ProfileMeta.{f} must be str, got {getattr(self, f)!r}")
        _check_count("microbatch_size", self.microbatch_size, 1)
        _check_count("threads", self.threads, 1)
        _check_count("warmup", self.warmup, 0)
        _check_count("repeats", self.repeats, 1)
        for f in ("microbatch_size", "threads", "warmup", "repeats"):
            object.__setattr__(self, f, int(getattr(self, f)))


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class ModelProfile:
    """A whole model's per-layer profile for one microbatch size, plus how it was measured.

    Array properties (float64 seconds, int64 bytes) are in layer order;
    ``input_grad_s`` / ``weight_grad_s`` are ``None`` when the backward was not split.
    """

    layers: tuple[LayerProfile, ...]
    meta: ProfileMeta

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("a ModelProfile needs at least one layer, got none")
        for k, layer in enumerate(layers):
            if not isinstance(layer, LayerProfile):
                raise TypeError(f"layers[{k}] must be a LayerProfile, got {type(layer).__name__}")
        if not isinstance(self.meta, ProfileMeta):
            raise TypeError(f"meta must be a ProfileMeta, got {type(self.meta).__name__}")
        split = {layer.input_grad_s is None for layer in layers}
        if len(split) != 1:
            raise ValueError("either every layer has an I/W split or none does")
        object.__setattr__(self, "layers", layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def names(self) -> tuple[str, ...]:
        """Layer names in order."""
        return tuple(layer.name for layer in self.layers)

    @property
    def has_split(self) -> bool:
        """True when I and W were measured for every layer."""
        return self.layers[0].input_grad_s is not None

    def _floats(self, attr: str) -> np.ndarray:
        return _readonly(np.array([getattr(x, attr) for x in self.layers], dtype=np.float64))

    @property
    def forward_s(self) -> np.ndarray:
        """Forward seconds per layer (float64, shape ``(n,)``)."""
        return self._floats("forward_s")

    @property
    def backward_s(self) -> np.ndarray:
        """Full backward (I + W measured together) seconds per layer."""
        return self._floats("backward_s")

    @property
    def input_grad_s(self) -> np.ndarray | None:
        """Input-gradient (I) seconds per layer, or ``None`` without a split."""
        return self._floats("input_grad_s") if self.has_split else None

    @property
    def weight_grad_s(self) -> np.ndarray | None:
        """Weight-gradient (W) seconds per layer (0 for layers without parameters), or ``None``."""
        return self._floats("weight_grad_s") if self.has_split else None

    @property
    def act_bytes(self) -> np.ndarray:
        """Output activation bytes per layer (int64)."""
        return _readonly(np.array([x.act_bytes for x in self.layers], dtype=np.int64))

    @property
    def param_bytes(self) -> np.ndarray:
        """Parameter bytes per layer (int64)."""
        return _readonly(np.array([x.param_bytes for x in self.layers], dtype=np.int64))


@dataclass(frozen=True, eq=False)
class BlockProfile:
    """Consecutive layers grouped into blocks (semantics §1).

    ``layer_ranges[i] = (start, end)`` is the half-open layer range of block i;
    ``forward_s``, ``backward_s``, ``input_grad_s``, ``weight_grad_s`` (float64
    seconds, the latter two ``None`` without a split) and ``param_bytes`` (int64)
    are sums over the block; ``act_bytes[i]`` is the output of block i's last layer.
    Arrays are read-only.
    """

    names: tuple[str, ...]
    layer_ranges: tuple[tuple[int, int], ...]
    forward_s: np.ndarray
    backward_s: np.ndarray
    input_grad_s: np.ndarray | None
    weight_grad_s: np.ndarray | None
    act_bytes: np.ndarray
    param_bytes: np.ndarray
    meta: ProfileMeta | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_blocks(self) -> int:
        """Number of blocks."""
        return len(self.names)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int,
                 setup: Callable[[], Any] | None = None) -> float:
    """Median wall seconds of ``fn(setup())`` over ``repeats`` runs after ``warmup`` runs."""
    times: list[float] = []
    for r in range(warmup + repeats):
        arg = setup() if setup is not None else None
        _sync(device)
        t0 = time.perf_counter()
        fn(arg) if setup is not None else fn()
        _sync(device)
        t1 = time.perf_counter()
        if r >= warmup:
            times.append(t1 - t0)
    return float(statistics.median(times))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def profile_sequential(
    model: nn.Sequential,
    sample_input: torch.Tensor,
    *,
    warmup: int = 2,
    repeats: int = 5,
    threads: int | None = None,
    device: str | torch.device = "cpu",
    split_backward: bool = True,
    progress: Callable[[str], None] | None = None,
    seed: int = 0,
    model_name: str | None = None,
) -> ModelProfile:
    """Measure each child layer of ``model`` for one microbatch ``sample_input`` (seconds, bytes).

    The real chain runs once (no grad) to get every layer's input; then, per
    layer, with the model in training mode and autograd on: forward seconds;
    full backward seconds (``torch.autograd.grad`` of the output against a seeded
    standard-normal upstream gradient of the output's shape, for the input and
    all parameters); and with ``split_backward`` the input-gradient (I, inputs
    only) and weight-gradient (W, parameters only, 0 for parameter-free layers)
    seconds, W timed on the graph I retained, as a zero-bubble runtime runs them.
    Each is the median of ``repeats`` timed runs after ``warmup`` untimed ones;
    CUDA is synchronised around every timed region. ``threads`` sets
    ``torch.set_num_threads`` for the measurement and restores the previous value.
    Integer inputs (token ids) have no input gradient: I = 0 and W = B there.
    The model is moved to ``device`` (``Module.to``, in place) and its training
    flag is restored afterwards. ``act_bytes`` = output numel × element size;
    ``param_bytes`` = sum of parameter bytes. ``progress`` gets one line per layer.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}")
    if len(model) == 0:
        raise ValueError("model has no layers to profile (empty nn.Sequential)")
    if not isinstance(sample_input, torch.Tensor):
        raise TypeError(f"sample_input must be a torch.Tensor, got {type(sample_input).__name__}")
    if sample_input.dim() < 1 or sample_input.shape[0] < 1:
        raise ValueError(
            f"sample_input needs a batch dimension of size >= 1, got shape {tuple(sample_input.shape)}"
        )
    warmup = _check_count("warmup", warmup, 0)
    repeats = _check_count("repeats", repeats, 1)
    if threads is not None:
        threads = _check_count("threads", threads, 1)
    _check_count("seed", seed, 0)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} requested but CUDA is not available; use 'cpu'")

    prev_threads = torch.get_num_threads()
    was_training = model.training
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        used_threads = torch.get_num_threads()
        model.to(dev)
        model.train(True)
        gen = torch.Generator().manual_seed(seed)
        x = sample_input.to(dev)
        inputs: list[torch.Tensor] = []
        with torch.no_grad():
            for layer in model:
                inputs.append(x.detach())
                x = layer(x)
                if not isinstance(x, torch.Tensor):
                    raise TypeError(
                        f"layer {len(inputs) - 1} returned {type(x).__name__}, expected a Tensor"
                    )
        names = [name for name, _ in model.named_children()]
        layers: list[LayerProfile] = []
        for k, (name, layer) in enumerate(zip(names, model, strict=True)):
            lp = _profile_layer(name, layer, inputs[k], dev, warmup, repeats, split_backward, gen)
            layers.append(lp)
            if progress is not None:
                msg = (f"profile {k + 1}/{len(names)} {name}: f={lp.forward_s * 1e3:.3f} ms "
                       f"b={lp.backward_s * 1e3:.3f} ms")
                if lp.input_grad_s is not None:
                    msg += f" (i={lp.input_grad_s * 1e3:.3f} w={lp.weight_grad_s * 1e3:.3f})"
                progress(msg)
    finally:
        model.train(was_training)
        torch.set_num_threads(prev_threads)

    params = [p for p in model.parameters() if p.is_floating_point()]
    dtype = params[0].dtype if params else sample_input.dtype
    meta = ProfileMeta(
        model=model_name if model_name is not None else type(model).__name__,
        device=str(dev),
        dtype=_dtype_name(dtype),
        microbatch_size=int(sample_input.shape[0]),
        threads=used_threads,
        torch_version=torch.__version__,
        warmup=warmup,
        repeats=repeats,
    )
    return ModelProfile(layers=tuple(layers), meta=meta)


def _profile_layer(name: str, layer: nn.Module, x_in: torch.Tensor, dev: torch.device,
                   warmup: int, repeats: int, split: bool, gen: torch.Generator) -> LayerProfile:
    needs_input_grad = x_in.is_floating_point() or x_in.is_complex()
    x = x_in.detach().requires_grad_(needs_input_grad)
    params = [p for p in layer.parameters() if p.requires_grad]
    param_bytes = sum(p.numel() * p.element_size() for p in layer.parameters())

    with torch.enable_grad():
        forward_s = _median_time(lambda: layer(x), dev, warmup, repeats)
        y = layer(x)
    act_bytes = y.numel() * y.element_size()
    wrt = ([x] if needs_input_grad else []) + params
    if not y.requires_grad or not wrt:
        zero = 0.0 if split else None
        return LayerProfile(name, forward_s, 0.0, act_bytes, param_bytes, zero, zero)
    grad_out = torch.randn(y.shape, generator=gen, dtype=torch.float32).to(dev, y.dtype)
    del y

    def fresh_output() -> torch.Tensor:
        with torch.enable_grad():
            return layer(x)

    backward_s = _median_time(
        lambda y: torch.autograd.grad(y, wrt, grad_out), dev, warmup, repeats, fresh_output
    )
    if not split:
        return LayerProfile(name, forward_s, backward_s, act_bytes, param_bytes)
    if not params:
        # the full backward IS the input gradient here
        return LayerProfile(name, forward_s, backward_s, act_bytes, param_bytes, backward_s, 0.0)
    if not needs_input_grad:
        return LayerProfile(name, forward_s, backward_s, act_bytes, param_bytes, 0.0, backward_s)

    i_times: list[float] = []
    w_times: list[float] = []
    for r in range(warmup + repeats):
        y = fresh_output()
        _sync(dev)
        t0 = time.perf_counter()
        torch.autograd.grad(y, [x], grad_out, retain_graph=True)
        _sync(dev)
        t1 = time.perf_counter()
        torch.autograd.grad(y, params, grad_out)
        _sync(dev)
        t2 = time.perf_counter()
        if r >= warmup:
            i_times.append(t1 - t0)
            w_times.append(t2 - t1)
    return LayerProfile(name, forward_s, backward_s, act_bytes, param_bytes,
                        float(statistics.median(i_times)), float(statistics.median(w_times)))


def microbatch_size_for(global_batch: int, microbatches: int) -> int:
    """Samples per microbatch when ``microbatches`` split a fixed ``global_batch`` (semantics §1).

    Raises ``ValueError`` unless ``global_batch`` is a positive multiple of
    ``microbatches``: more microbatches must not mean more (or less) total work.
    """
    global_batch = _check_count("global_batch", global_batch, 1)
    microbatches = _check_count("microbatches", microbatches, 1)
    if global_batch % microbatches:
        raise ValueError(
            f"global_batch ({global_batch}) must be divisible by the number of microbatches "
            f"({microbatches}) so that every microbatch has the same size"
        )
    return global_batch // microbatches


def profile_microbatch_sizes(
    model: nn.Sequential | Callable[[], nn.Sequential],
    input_fn: Callable[[int], torch.Tensor],
    sizes: Sequence[int],
    *,
    progress: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> list[ModelProfile]:
    """Profile one model at several microbatch sizes (samples); one :class:`ModelProfile` per size.

    ``model`` is an ``nn.Sequential`` or a zero-argument function building one
    (called once). ``input_fn(size)`` returns that microbatch's input tensor.
    ``sizes`` are distinct positive integers; the result follows their order.
    Other keyword arguments go to :func:`profile_sequential`; progress lines are
    prefixed with the size.
    """
    sizes = list(sizes)
    if not sizes:
        raise ValueError("sizes must list at least one microbatch size, got []")
    for s in sizes:
        _check_count("microbatch size", s, 1)
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"microbatch sizes must be distinct, got {sizes}")
    net = model if isinstance(model, nn.Module) else model()
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"model must be (or build) an nn.Sequential, got {type(net).__name__}")
    out: list[ModelProfile] = []
    for s in sizes:
        x = input_fn(s)
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] != s:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"input_fn({s}) must return a tensor with batch size {s}, got {shape}")

        def prefixed(line: str, s: int = s) -> None:
            if progress is not None:
                progress(f"[microbatch {s}] {line}")

        out.append(profile_sequential(net, x, progress=prefixed, **kwargs))
    return out


def profile_for_size(profiles: Sequence[ModelProfile], microbatch_size: int) -> ModelProfile:
    """The profile measured at ``microbatch_size`` samples; ``ValueError`` listing the sizes present."""
    for p in profiles:
        if p.meta.microbatch_size == microbatch_size:
            return p
    have = [p.meta.microbatch_size for p in profiles]
    raise ValueError(f"no profile for microbatch size {microbatch_size}; profiled sizes: {have}")


def group_blocks(
    profile: ModelProfile,
    block_n: int | None = None,
    boundaries: Sequence[int] | None = None,
) -> BlockProfile:
    """Group consecutive layers into blocks: ``block_n`` layers at a time, or at ``boundaries``.

    With ``block_n`` the last block holds the remaining ``n % block_n`` layers
    when ``block_n`` does not divide the layer count ``n`` (it is shorter, never
    merged). ``boundaries`` lists the layer indices where blocks 1, 2, ... start:
    strictly increasing integers in ``1..n-1`` (``[]`` = one block). Give at most
    one of the two; neither means one block per layer. Block seconds and
    parameter bytes are sums; ``act_bytes`` is the last layer's output bytes.
    """
    if not isinstance(profile, ModelProfile):
        raise TypeError(f"profile must be a ModelProfile, got {type(profile).__name__}")
    n = len(profile.layers)
    if block_n is not None and boundaries is not None:
        raise ValueError("give block_n or boundaries, not both")
    if boundaries is None:
        block_n = 1 if block_n is None else block_n
        if not _is_int(block_n) or not 1 <= block_n <= n:
            raise ValueError(f"block_n must be an integer in 1..{n} (the number of layers), "
                             f"got {block_n!r}")
        starts = list(range(0, n, int(block_n)))
    else:
        bounds = list(boundaries)
        for b in bounds:
            if not _is_int(b):
                raise ValueError(f"boundaries must be integers, got {b!r} in {bounds}")
        if any(not 1 <= b <= n - 1 for b in bounds) or any(
            b2 <= b1 for b1, b2 in zip(bounds, bounds[1:], strict=False)
        ):
            raise ValueError(
                f"boundaries must be strictly increasing layer indices in 1..{n - 1} "
                f"(where blocks 1, 2, ... start), got {bounds}"
            )
        starts = [0] + [int(b) for b in bounds]
    ranges = tuple(zip(starts, starts[1:] + [n], strict=True))
    layer_names = profile.names

    def sums(values: np.ndarray | None) -> np.ndarray | None:
        if values is None:
            return None
        return _readonly(np.array([values[a:b].sum() for a, b in ranges], dtype=values.dtype))

    names = tuple(
        layer_names[a] if b - a == 1 else f"{layer_names[a]}..{layer_names[b - 1]}"
        for a, b in ranges
    )
    act = profile.act_bytes
    return BlockProfile(
        names=names,
        layer_ranges=ranges,
        forward_s=sums(profile.forward_s),
        backward_s=sums(profile.backward_s),
        input_grad_s=sums(profile.input_grad_s),
        weight_grad_s=sums(profile.weight_grad_s),
        act_bytes=_readonly(np.array([act[b - 1] for _, b in ranges], dtype=np.int64)),
        param_bytes=sums(profile.param_bytes),
        meta=profile.meta,
    )


# ----------------------------------------------------------------------------- JSON
_LAYER_FIELDS = tuple(f.name for f in fields(LayerProfile))
_META_FIELDS = tuple(f.name for f in fields(ProfileMeta))


def _check_profile_list(profiles: Sequence[ModelProfile], where: str) -> list[ModelProfile]:
    profiles = list(profiles)
    if not profiles:
        raise ProfileError(f"{where}: the profile list is empty; at least one profile is needed")
    for k, p in enumerate(profiles):
        if not isinstance(p, ModelProfile):
            raise ProfileError(f"{where}: profiles[{k}] is a {type(p).__name__}, not a ModelProfile")
    sizes = [p.meta.microbatch_size for p in profiles]
    if len(set(sizes)) != len(sizes):
        raise ProfileError(f"{where}: microbatch sizes must be distinct, got {sizes}")
    names0 = profiles[0].names
    for k, p in enumerate(profiles[1:], start=1):
        if p.names != names0:
            raise ProfileError(
                f"{where}: profiles[{k}] has layers {list(p.names)} but profiles[0] has "
                f"{list(names0)}; all profiles in one file must describe the same model"
            )
    return profiles


def save_profiles(path: str | Path, profiles: Sequence[ModelProfile]) -> None:
    """Save profiles (one per microbatch size, same layers) to ``path`` as JSON, atomically.

    Format: ``{"format_version": 1, "microbatch_sizes": [...], "profiles": [{"meta":
    {...}, "layers": [{...}, ...]}, ...]}``; floats are written with ``repr`` so
    :func:`load_profiles` returns equal objects. Raises :class:`ProfileError` for an
    empty list, duplicate microbatch sizes or profiles of different models.
    """
    if isinstance(profiles, ModelProfile):
        profiles = [profiles]
    profiles = _check_profile_list(profiles, f"cannot save profiles to '{path}'")
    doc = {
        "format_version": FORMAT_VERSION,
        "microbatch_sizes": [p.meta.microbatch_size for p in profiles],
        "profiles": [
            {
                "meta": {f: getattr(p.meta, f) for f in _META_FIELDS},
                "layers": [{f: getattr(x, f) for f in _LAYER_FIELDS} for x in p.layers],
            }
            for p in profiles
        ],
    }
    atomic_write_text(path, json.dumps(to_jsonable(doc), indent=1, allow_nan=False) + "\n")


def _expect_keys(obj: object, keys: Sequence[str], where: str, fail: Callable[[str], None]) -> dict:
    if not isinstance(obj, dict):
        fail(f"{where} must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    extra = sorted(k for k in obj if k not in keys)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing field(s) {missing}")
        if extra:
            parts.append(f"unexpected field(s) {extra}")
        fail(f"{where}: {' and '.join(parts)}; expected exactly {list(keys)}")
    return obj  # type: ignore[return-value]


_LAYER_TYPES: dict[str, str] = {
    "name": "str", "forward_s": "seconds", "backward_s": "seconds", "act_bytes": "bytes",
    "param_bytes": "bytes", "input_grad_s": "seconds?", "weight_grad_s": "seconds?",
}
_META_TYPES: dict[str, str] = {
    "model": "str", "device": "str", "dtype": "str", "microbatch_size": "pos",
    "threads": "pos", "torch_version": "str", "warmup": "count", "repeats": "pos",
}


def _check_value(value: object, kind: str, where: str, fail: Callable[[str], None]) -> None:
    if kind.endswith("?"):
        if value is None:
            return
        kind = kind[:-1]
    if kind == "str":
        if not isinstance(value, str):
            fail(f"{where} must be a string, got {value!r}")
    elif kind == "seconds":
        if not _is_number(value):
            fail(f"{where} must be a number (seconds), got {value!r}")
        if not math.isfinite(value) or value < 0:  # type: ignore[arg-type]
            fail(f"{where} must be a finite number >= 0 (seconds), got {value!r}")
    else:
        minimum = 1 if kind == "pos" else 0
        if not _is_int(value):
            fail(f"{where} must be an integer, got {value!r}")
        if value < minimum:  # type: ignore[operator]
            fail(f"{where} must be >= {minimum}, got {value!r}")


def load_profiles(path: str | Path) -> list[ModelProfile]:
    """Load the profiles saved by :func:`save_profiles` from ``path``, checking every field.

    Raises :class:`ProfileError` (a ``ValueError``) naming the file and the problem:
    missing file, not JSON, wrong ``format_version``, missing or unexpected
    fields, wrong types, negative or non-finite numbers, a ``microbatch_sizes``
    list that disagrees with the profiles or repeats a size, or profiles of
    different models.
    """
    p = Path(path)

    def fail(msg: str) -> None:
        raise ProfileError(f"profile file '{path}': {msg}")

    if not p.exists():
        fail("does not exist")
    if not p.is_file():
        fail("is not a regular file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"profile file '{path}': cannot be read as UTF-8 text ({exc})") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"profile file '{path}': is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        fail(f"top level must be a JSON object, got {type(doc).__name__}")
    if "format_version" not in doc:
        fail("missing field 'format_version'")
    if doc["format_version"] != FORMAT_VERSION or isinstance(doc["format_version"], bool):
        fail(f"format_version is {doc['format_version']!r}; this code reads version {FORMAT_VERSION}")
    _expect_keys(doc, ("format_version", "microbatch_sizes", "profiles"), "top level", fail)
    raw_profiles = doc["profiles"]
    if not isinstance(raw_profiles, list) or not raw_profiles:
        fail(f"'profiles' must be a non-empty list, got {raw_profiles!r:.60}")
    sizes = doc["microbatch_sizes"]
    if not isinstance(sizes, list) or not all(_is_int(s) for s in sizes):
        fail(f"'microbatch_sizes' must be a list of integers, got {sizes!r:.60}")

    out: list[ModelProfile] = []
    for k, raw in enumerate(raw_profiles):
        where = f"profiles[{k}]"
        _expect_keys(raw, ("meta", "layers"), where, fail)
        meta_raw = _expect_keys(raw["meta"], _META_FIELDS, f"{where}.meta", fail)
        for f in _META_FIELDS:
            _check_value(meta_raw[f], _META_TYPES[f], f"{where}.meta.{f}", fail)
        layers_raw = raw["layers"]
        if not isinstance(layers_raw, list) or not layers_raw:
            fail(f"{where}.layers must be a non-empty list")
        layers = []
        for j, lr in enumerate(layers_raw):
            lw = f"{where}.layers[{j}]"
            _expect_keys(lr, _LAYER_FIELDS, lw, fail)
            for f in _LAYER_FIELDS:
                _check_value(lr[f], _LAYER_TYPES[f], f"{lw}.{f}", fail)
            try:
                layers.append(LayerProfile(**lr))
            except (TypeError, ValueError) as exc:
                raise ProfileError(f"profile file '{path}': {lw}: {exc}") from exc
        try:
            out.append(ModelProfile(layers=tuple(layers), meta=ProfileMeta(**meta_raw)))
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"profile file '{path}': {where}: {exc}") from exc
    actual = [m.meta.microbatch_size for m in out]
    if sizes != actual:
        fail(f"'microbatch_sizes' is {sizes} but the profiles have microbatch sizes {actual}")
    _check_profile_list(out, f"profile file '{path}'")
    return out
