"""A GPT-style decoder from plain torch modules, as an ``nn.Sequential`` of profiled layers.

The children of :func:`build_gpt`'s model are the layers the profiler and the
partitioners see, in order::

    embed                      token ids (B, T) int64 -> token + position embedding (B, T, H)
    block0 .. block{L-1}       pre-LayerNorm transformer blocks, each x + attn(ln(x)), x + mlp(ln(x))
      (split_sublayers=True:   attn0, mlp0, attn1, mlp1, ... : each residual sub-block is a layer)
    head                       final LayerNorm + LM head -> logits (B, T, vocab)

The logits are "loss-ready": :func:`gpt_loss` turns them and the token ids into
the next-token cross-entropy. Weights are random (normal, std 0.02, as GPT-2),
drawn from an explicit ``torch.Generator``; nothing is downloaded. On the meta
device (shape-only, for counting FLOPs and bytes of large configurations)
attention runs as one fused kernel (the CPU flash-attention op's meta kernel), so
the counts match what a fused-attention runtime such as FlashAttention moves and
stores, not the T x T score matrix of a naive implementation.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GPT_DTYPES",
    "GPTConfig",
    "GPT_PRESETS",
    "gpt_config",
    "build_gpt",
    "gpt_input",
    "gpt_loss",
    "gpt_layer_kinds",
    "gpt_param_count",
]

GPT_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT-style decoder.

    ``vocab_size`` tokens, ``hidden`` model width, ``heads`` attention heads
    (``hidden % heads == 0``), ``seq_len`` tokens per sample, ``layers``
    transformer blocks, MLP width ``mlp_ratio * hidden`` (an integer),
    ``split_sublayers``: profile attention and MLP sub-blocks as separate layers,
    ``dtype``: one of :data:`GPT_DTYPES` (parameters and activations), ``name``:
    a label used in profiles.
    """

    vocab_size: int
    hidden: int
    heads: int
    seq_len: int
    layers: int
    mlp_ratio: float = 4.0
    split_sublayers: bool = False
    dtype: str = "float32"
    name: str = "gpt"

    def __post_init__(self) -> None:
        for f, lo in (("vocab_size", 1), ("hidden", 1), ("heads", 1), ("seq_len", 1), ("layers", 1)):
            _check_int(f, getattr(self, f), lo)
        if self.hidden % self.heads:
            raise ValueError(
                f"hidden ({self.hidden}) must be divisible by heads ({self.heads}); "
                f"allowed heads: divisors of {self.hidden}"
            )
        r = self.mlp_ratio
        if isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r) or r <= 0:
            raise ValueError(f"mlp_ratio must be a finite number > 0, got {r!r}")
        if abs(r * self.hidden - round(r * self.hidden)) > 1e-9 * r * self.hidden:
            raise ValueError(
                f"mlp_ratio * hidden must be an integer MLP width, got {r!r} * {self.hidden}"
            )
        if not isinstance(self.split_sublayers, bool):
            raise ValueError(f"split_sublayers must be True or False, got {self.split_sublayers!r}")
        if self.dtype not in GPT_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(GPT_DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")

    @property
    def mlp_hidden(self) -> int:
        """MLP inner width (features)."""
        return int(round(self.mlp_ratio * self.hidden))

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype of parameters and activations."""
        return GPT_DTYPES[self.dtype]

    @property
    def num_profiled_layers(self) -> int:
        """Children of the built ``nn.Sequential``: embed + blocks (x2 when split) + head."""
        return 2 + self.layers * (2 if self.split_sublayers else 1)


GPT_PRESETS: dict[str, GPTConfig] = {
    # small enough to profile on two CPU cores in seconds
    "tiny": GPTConfig(vocab_size=2048, hidden=128, heads=4, seq_len=64, layers=8, name="gpt-tiny"),
    # GPT-3 Small: Brown et al. 2020, "Language Models are Few-Shot Learners", Table 2.1
    # (n_layers 12, d_model 768, n_heads 12, n_ctx 2048); GPT-2 BPE vocabulary of 50257.
    "gpt-125m": GPTConfig(vocab_size=50257, hidden=768, heads=12, seq_len=2048, layers=12,
                          name="gpt-125m"),
    # LLaMA-7B widths: Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language
    # Models", Table 2 (dim 4096, 32 heads, 32 layers), vocab 32000, context 2048. Our block
    # uses a 4x GELU MLP (2*4096*16384 weights) instead of SwiGLU 11008 (3*4096*11008):
    # within 1 % of the same parameter count, ~6.7e9 in total.
    "7b": GPTConfig(vocab_size=32000, hidden=4096, heads=32, seq_len=2048, layers=32,
                    dtype="bfloat16", name="gpt-7b"),
    # Chinchilla 70B: Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models",
    # Table 4 (80 layers, d_model 8192, 64 heads, 4x feed-forward), vocab 32000, context 2048.
    # Counted with this plain block: ~6.5e10 parameters.
    "70b": GPTConfig(vocab_size=32000, hidden=8192, heads=64, seq_len=2048, layers=80,
                     dtype="bfloat16", name="gpt-70b"),
    # GPT-3 175B: Brown et al. 2020, Table 2.1 (96 layers, d_model 12288, 96 heads, n_ctx 2048).
    "175b": GPTConfig(vocab_size=50257, hidden=12288, heads=96, seq_len=2048, layers=96,
                      dtype="bfloat16", name="gpt-175b"),
}


def gpt_config(preset: str = "tiny", **overrides: object) -> GPTConfig:
    """The preset ``preset`` (a key of :data:`GPT_PRESETS`) with fields replaced by ``overrides``.

    ``None`` values in ``overrides`` keep the preset's value (convenient for
    command-line knobs). Unknown presets or fields raise ``ValueError`` listing
    the allowed ones.
    """
    if preset not in GPT_PRESETS:
        raise ValueError(f"unknown GPT preset {preset!r}; known presets: {', '.join(GPT_PRESETS)}")
    fields = set(GPTConfig.__dataclass_fields__)
    bad = sorted(k for k in overrides if k not in fields)
    if bad:
        raise ValueError(f"unknown GPTConfig field(s) {bad}; allowed: {sorted(fields)}")
    return replace(GPT_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})


# ----------------------------------------------------------------------------- modules


class Embedding(nn.Module):
    """Token + learned position embedding: int64 ids (B, T) -> (B, T, hidden)."""

    def __init__(self, cfg: GPTConfig, device: torch.device) -> None:
        super().__init__()
        kw = {"device": device, "dtype": cfg.torch_dtype}
        # `_weight` skips nn.Embedding's default init: build_gpt initialises from its generator
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.hidden,
                                   _weight=torch.empty(cfg.vocab_size, cfg.hidden, **kw))
        self.positions = nn.Embedding(cfg.seq_len, cfg.hidden,
                                      _weight=torch.empty(cfg.seq_len, cfg.hidden, **kw))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.shape[1] > self.positions.num_embeddings:
            raise ValueError(
                f"token ids must have shape (batch, T <= {self.positions.num_embeddings}), "
                f"got {tuple(ids.shape)}"
            )
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.tokens(ids) + self.positions(pos)


class Attention(nn.Module):
    """Residual causal self-attention sub-block: ``x + proj(attn(qkv(ln(x))))``."""

    def __init__(self, cfg: GPTConfig, device: torch.device) -> None:
        super().__init__()
        kw = {"device": device, "dtype": cfg.torch_dtype}
        self.heads = cfg.heads
        self.ln = nn.LayerNorm(cfg.hidden, **kw)
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden, **kw)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(self.ln(x)).split(h, dim=2)
        q, k, v = (z.view(b, t, self.heads, h // self.heads).transpose(1, 2) for z in (q, k, v))
        if x.device.type == "meta":
            # meta tensors would take SDPA's unfused math path (T x T scores); count the
            # fused kernel real runtimes use instead (same FLOPs, fused bytes and storage)
            y = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True)[0]
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return x + self.proj(y.transpose(1, 2).reshape(b, t, h))


class MLP(nn.Module):
    """Residual MLP sub-block: ``x + fc2(gelu(fc1(ln(x))))``."""

    def __init__(self, cfg: GPTConfig, device: torch.device) -> None:
        super().__init__()
        kw = {"device": device, "dtype": cfg.torch_dtype}
        self.ln = nn.LayerNorm(cfg.hidden, **kw)
        self.fc1 = nn.Linear(cfg.hidden, cfg.mlp_hidden, **kw)
        self.fc2 = nn.Linear(cfg.mlp_hidden, cfg.hidden, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.gelu(self.fc1(self.ln(x))))


class Block(nn.Module):
    """One pre-LayerNorm transformer block: attention sub-block then MLP sub-block."""

    def __init__(self, cfg: GPTConfig, device: torch.device) -> None:
        super().__init__()
        self.attn = Attention(cfg, device)
        self.mlp = MLP(cfg, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class Head(nn.Module):
    """Final LayerNorm + LM head (no bias): (B, T, hidden) -> logits (B, T, vocab)."""

    def __init__(self, cfg: GPTConfig, device: torch.device) -> None:
        super().__init__()
        kw = {"device": device, "dtype": cfg.torch_dtype}
        self.ln = nn.LayerNorm(cfg.hidden, **kw)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.ln(x))


def _init_weights(model: nn.Module, gen: torch.Generator) -> None:
    """GPT-2 initialisation from ``gen``: normal(0, 0.02) weights, zero biases, unit LayerNorms."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                w = torch.empty(module.weight.shape, dtype=torch.float32)
                w.normal_(0.0, 0.02, generator=gen)
                module.weight.copy_(w)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()


def build_gpt(cfg: GPTConfig, seed: int = 0, device: str | torch.device = "cpu") -> nn.Sequential:
    """Build the GPT decoder of ``cfg`` as an ``nn.Sequential`` of profiled layers (see module doc).

    Children: ``embed``, then ``block{k}`` (or ``attn{k}``, ``mlp{k}`` with
    ``split_sublayers``), then ``head``. On ``device="meta"`` no memory is
    allocated and no weights are drawn (for FLOP/byte counting of any size);
    otherwise weights are GPT-2-style random values from a generator seeded with
    ``seed``, so ``(cfg, seed)`` gives identical weights on CPU, whatever the
    global RNG state.
    """
    if not isinstance(cfg, GPTConfig):
        raise TypeError(f"cfg must be a GPTConfig, got {type(cfg).__name__}")
    _check_int("seed", seed, 0)
    dev = torch.device(device)
    meta = torch.device("meta")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["embed"] = Embedding(cfg, meta)
    for k in range(cfg.layers):
        if cfg.split_sublayers:
            layers[f"attn{k}"] = Attention(cfg, meta)
            layers[f"mlp{k}"] = MLP(cfg, meta)
        else:
            layers[f"block{k}"] = Block(cfg, meta)
    layers["head"] = Head(cfg, meta)
    model = nn.Sequential(layers)
    if dev.type != "meta":
        # built on meta first: nothing touches the global RNG; values come from `gen`
        model = model.to_empty(device=dev)
        _init_weights(model, torch.Generator().manual_seed(seed))
    return model


def gpt_input(cfg: GPTConfig, batch_size: int, seed: int = 0,
              device: str | torch.device = "cpu") -> torch.Tensor:
    """Uniform random token ids, int64 of shape ``(batch_size, cfg.seq_len)``, drawn with ``seed``.

    On ``device="meta"`` a shape-only tensor is returned.
    """
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, 0)
    dev = torch.device(device)
    if dev.type == "meta":
        return torch.empty(batch_size, cfg.seq_len, dtype=torch.int64, device=dev)
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (batch_size, cfg.seq_len), generator=gen).to(dev)


def gpt_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per token) of ``logits`` (B, T, V) against ``ids`` (B, T)."""
    if logits.dim() != 3 or ids.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (B, T, V) and ids (B, T), got {tuple(logits.shape)} and {tuple(ids.shape)}"
        )
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())


def gpt_layer_kinds(cfg: GPTConfig) -> list[str]:
    """Kind of each profiled layer of :func:`build_gpt`: ``"embed"``, ``"block"`` or
    ``"attn"``/``"mlp"`` (split), ``"head"``; the practitioner baselines use it."""
    body = ["attn", "mlp"] * cfg.layers if cfg.split_sublayers else ["block"] * cfg.layers
    return ["embed", *body, "head"]


def gpt_param_count(cfg: GPTConfig) -> int:
    """Parameters of :func:`build_gpt`'s model (closed form; embeddings and head untied)."""
    h, f, v = cfg.hidden, cfg.mlp_hidden, cfg.vocab_size
    attn = 2 * h + (h * 3 * h + 3 * h) + (h * h + h)
    mlp = 2 * h + (h * f + f) + (f * h + h)
    return v * h + cfg.seq_len * h + cfg.layers * (attn + mlp) + 2 * h + h * v
