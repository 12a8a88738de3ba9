"""Shared scaffolding for the end-to-end script tests: a tiny saved profile and CLI arguments."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import nn

from bubblereduce import models
from bubblereduce.profile import profile_microbatch_sizes, save_profiles

TINY_WIDTHS = [16, 48, 24, 64, 16, 40, 8, 32, 16]  # 8 MLP layers
GLOBAL_BATCH = 16
MICROBATCHES = [4, 8]
BANDWIDTHS = [0.001, 1.0]

# knobs every tiny run of the main demo and of balance.py shares
BASE_ARGS: dict[str, str] = {
    "mlp_widths": ",".join(map(str, TINY_WIDTHS)),
    "global_batch": str(GLOBAL_BATCH),
    "microbatches": ",".join(map(str, MICROBATCHES)),
    "bandwidths_GBps": ",".join(map(str, BANDWIDTHS)),
    "representative_microbatches": "4",
    "representative_bandwidth_GBps": str(BANDWIDTHS[0]),
    "num_stages": "2",
    "block_n": "2",
    "multi_stage_block_n": "1",
}


def save_tiny_profile(model: nn.Module, path: Path) -> Path:
    """Profile ``model`` (input width ``TINY_WIDTHS[0]``) once per microbatch size of a tiny run
    (1 repeat, 1 thread: fast, not accurate) and save it to ``path``."""
    sizes = [GLOBAL_BATCH // m for m in MICROBATCHES]
    profiles = profile_microbatch_sizes(
        model, lambda b: models.mlp_input(b, TINY_WIDTHS[0], seed=0), sizes, warmup=0, repeats=1, threads=1
    )
    save_profiles(path, profiles)
    return path


def cli_args(base: Mapping[str, str], profile: Path | None, out_dir: Path, extra: Sequence[str]) -> list[str]:
    """``--key=value`` arguments: ``base``, then ``profile_path`` and ``out_dir``, then ``extra`` items win."""
    args = dict(base)
    args["out_dir"] = str(out_dir)
    if profile is not None:
        args["profile_path"] = str(profile)
    for item in extra:
        key, value = item[2:].split("=", 1)
        args[key] = value
    return [f"--{k}={v}" for k, v in args.items()]


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts (header keys, string values)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


__all__: list[str] = ["TINY_WIDTHS", "GLOBAL_BATCH", "MICROBATCHES", "BANDWIDTHS", "BASE_ARGS",
                      "save_tiny_profile", "cli_args", "read_rows"]
