"""Outputs: atomic files, staged output folders, CSV, JSON, environment info, Chrome traces.

Every writer here goes through a temporary file in the destination's directory
followed by ``os.replace``, so an interrupted run never leaves a half-written
file that looks complete (style.md, Outputs). ``StagedOutput`` extends that to a
whole output folder: files are written into a hidden staging directory beside
``out_dir`` and moved in only when the ``with`` block succeeds.

Nothing written here carries a timestamp or a host name: the same inputs give
byte-identical files.
"""

from __future__ import annotations

import csv
import io as _stdlib_io
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "write_csv",
    "write_json",
    "to_jsonable",
    "format_cell",
    "environment_info",
    "write_run_record",
    "chrome_trace",
    "check_writable_dir",
    "StagedOutput",
]

PathLike = str | os.PathLike[str]


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + ``os.replace``).

    The parent directory must exist. On any error the temporary file is removed
    and ``path`` is left as it was (absent or holding its previous content).
    The file is flushed and fsync'ed before the rename.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        raise ValueError(f"cannot write '{target}': directory '{parent}' does not exist")
    fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the result ordinary permissions
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, encoded as ``encoding`` (UTF-8), no newline translation."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    atomic_write_bytes(path, text.encode(encoding))


def format_cell(value: Any) -> str:
    """Text of one CSV cell: floats with ``repr`` (shortest exact round trip), ``None`` as ``""``.

    Python and numpy floats both go through ``repr(float(x))`` so ``float(cell)``
    gives back the same number; bools are ``True``/``False``; ints and strings as is.
    """
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return repr(float(value))
    if isinstance(value, str):
        return value
    raise TypeError(
        f"CSV cell must be str, int, float, bool or None, got {type(value).__name__}: {value!r}"
    )


def write_csv(path: PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV file atomically: one header line, then ``rows`` in the order given.

    Cells are formatted by :func:`format_cell` (floats round-trip exactly); lines
    end with ``\\n``. Every row must have as many cells as the header, else
    ``ValueError`` naming the row.
    """
    header = [str(h) for h in header]
    if not header:
        raise ValueError("CSV header must not be empty")
    if len(set(header)) != len(header):
        raise ValueError(f"CSV header has duplicate columns: {header}")
    buf = _stdlib_io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for k, row in enumerate(rows):
        row = list(row)
        if len(row) != len(header):
            raise ValueError(
                f"CSV row {k} has {len(row)} cells but the header has {len(header)}: {row!r}"
            )
        writer.writerow([format_cell(v) for v in row])
    atomic_write_text(path, buf.getvalue())


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and ``Path`` objects into plain JSON types.

    Dict keys must be strings. Non-finite floats raise ``ValueError`` (strict JSON
    has no NaN or Infinity).
    """
    if obj is None or isinstance(obj, str | bool):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        x = float(obj)
        if not math.isfinite(x):
            raise ValueError(f"cannot write non-finite float {x!r} to JSON")
        return x
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"JSON object keys must be str, got {type(k).__name__}: {k!r}")
            out[k] = to_jsonable(v)
        return out
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    raise TypeError(f"cannot write {type(obj).__name__} to JSON: {obj!r}")


def write_json(path: PathLike, obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON atomically (keys in insertion order, trailing newline).

    numpy values, tuples and paths are converted by :func:`to_jsonable`; NaN and
    infinity raise ``ValueError`` naming the file.
    """
    try:
        plain = to_jsonable(obj)
    except ValueError as exc:
        raise ValueError(f"cannot write '{path}': {exc}") from exc
    text = json.dumps(plain, indent=indent, allow_nan=False, ensure_ascii=False)
    atomic_write_text(path, text + "\n")


def write_run_record(folder: str | Path, *, config: Mapping[str, Any], summary: str,
                     profiles: Sequence[Any] = ()) -> list[str]:
    """Write what makes a run reproducible and quotable next to its results.

    Writes ``profile.json`` (when ``profiles`` is non-empty: ``ModelProfile`` objects,
    reloadable with ``--profile_path``), ``config.json`` (the resolved config),
    ``env.json`` (:func:`environment_info`) and ``summary.txt`` into ``folder``;
    returns the file names written, in that order.
    """
    from .profile import save_profiles  # profile imports this module

    folder = Path(folder)
    names = []
    if profiles:
        save_profiles(folder / "profile.json", list(profiles))
        names.append("profile.json")
    write_json(folder / "config.json", dict(config))
    write_json(folder / "env.json", environment_info())
    atomic_write_text(folder / "summary.txt", summary if summary.endswith("\n") else summary + "\n")
    return names + ["config.json", "env.json", "summary.txt"]


def environment_info() -> dict[str, Any]:
    """Versions and machine facts that explain a measurement, without host name or time.

    Keys: ``python``, ``platform``, ``machine``, ``cpu_count``, ``torch``,
    ``torch_threads``, ``cuda_available``, ``numpy``, ``matplotlib`` (``None`` when
    not importable). Deterministic for a given machine and software.
    """
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda_available"] = bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is a hard requirement
        info.update(torch=None, torch_threads=None, cuda_available=False)
    try:
        # importlib.metadata avoids importing matplotlib (and its backends) here
        from importlib.metadata import PackageNotFoundError, version

        info["matplotlib"] = version("matplotlib")
    except PackageNotFoundError:  # pragma: no cover
        info["matplotlib"] = None
    return info


def chrome_trace(
    result: Any, stage_names: Sequence[str] | None = None, *, process_name: str = "pipeline"
) -> dict[str, Any]:
    """Chrome-trace dict (``{"traceEvents": [...]}``) of a simulated run; opens in Perfetto.

    ``result`` is a ``SimResult`` (or any object with ``events`` of
    ``(device, kind, stage, microbatch, start_s, end_s)``, optional ``transfers`` of
    ``(src_device, dst_device, kind, stage, microbatch, start_s, end_s)`` and
    ``num_devices``). Each action becomes a complete event (``"ph": "X"``) named
    like ``"1F0"`` (stage, kind, microbatch) with ``ts``/``dur`` in microseconds on
    ``tid`` = device; each directed link gets its own ``tid`` after the devices.
    Threads are named by ``"thread_name"`` metadata events. ``stage_names[s]``, when
    given, is added to the event's ``args``.
    """
    events_in = list(result.events)
    transfers_in = list(getattr(result, "transfers", ()) or ())
    num_devices = getattr(result, "num_devices", None)
    if num_devices is None:
        num_devices = 1 + max((int(e[0]) for e in events_in), default=-1)
    num_devices = int(num_devices)
    if stage_names is not None:
        stage_names = [str(s) for s in stage_names]

    def stage_args(stage: int) -> dict[str, Any]:
        if stage_names is None:
            return {}
        if not 0 <= stage < len(stage_names):
            raise ValueError(
                f"stage {stage} has no name: stage_names has {len(stage_names)} entries"
            )
        return {"stage_name": stage_names[stage]}

    pid = 0
    trace: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": process_name}}
    ]
    for d in range(num_devices):
        trace.append(
            {"name": "thread_name", "ph": "M", "pid": pid, "tid": d, "args": {"name": f"device {d}"}}
        )
        trace.append(
            {"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": d, "args": {"sort_index": d}}
        )
    for ev in events_in:
        device, kind, stage, mb, start_s, end_s = ev
        trace.append(
            {
                "name": f"{int(stage)}{kind}{int(mb)}",
                "cat": str(kind),
                "ph": "X",
                "pid": pid,
                "tid": int(device),
                "ts": float(start_s) * 1e6,
                "dur": (float(end_s) - float(start_s)) * 1e6,
                "args": {"stage": int(stage), "microbatch": int(mb), **stage_args(int(stage))},
            }
        )
    links = sorted({(int(t[0]), int(t[1])) for t in transfers_in})
    link_tid = {link: num_devices + k for k, link in enumerate(links)}
    for (src, dst), tid in link_tid.items():
        trace.append(
            {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
             "args": {"name": f"link {src}->{dst}"}}
        )
        trace.append(
            {"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
             "args": {"sort_index": tid}}
        )
    for tr in transfers_in:
        src, dst, kind, stage, mb, start_s, end_s = tr
        trace.append(
            {
                "name": f"send {int(stage)}{kind}{int(mb)}",
                "cat": "transfer",
                "ph": "X",
                "pid": pid,
                "tid": link_tid[(int(src), int(dst))],
                "ts": float(start_s) * 1e6,
                "dur": (float(end_s) - float(start_s)) * 1e6,
                "args": {"src_device": int(src), "dst_device": int(dst), "kind": str(kind),
                         "stage": int(stage), "microbatch": int(mb)},
            }
        )
    return {"traceEvents": trace, "displayTimeUnit": "ms"}


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def check_writable_dir(out_dir: PathLike) -> Path:
    """Check early that ``out_dir`` can be created or written; return its absolute path.

    ``out_dir`` may exist (must then be a writable directory) or not (its nearest
    existing ancestor must be a writable directory). Raises
    ``ValueError: out_dir 'x' is not writable: <reason>`` otherwise. Creates nothing.
    """
    out = Path(out_dir).absolute()
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"out_dir '{out_dir}' is not writable: it exists and is not a directory")
        base = out
    else:
        base = _nearest_existing(out.parent)
        if not base.is_dir():
            raise ValueError(
                f"out_dir '{out_dir}' is not writable: '{base}' exists and is not a directory"
            )
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"out_dir '{out_dir}' is not writable: no write permission on '{base}'")
    return out


class StagedOutput:
    """Context manager staging a whole output folder: all files appear in ``out_dir`` or none.

    ``with StagedOutput(out_dir) as tmp:`` yields a fresh hidden directory beside
    ``out_dir`` (``Path``); write every output file into it. When the block ends
    without an exception, ``out_dir`` is created if missing and each staged file
    (subfolders kept) is moved in with ``os.replace`` (atomic per file; files of
    earlier runs with other names are left alone). On an exception nothing is
    moved and the staging directory is removed. Writability of ``out_dir`` is
    checked on entry (``ValueError`` naming it).
    """

    def __init__(self, out_dir: PathLike) -> None:
        self.out_dir = Path(out_dir)
        self._tmp: Path | None = None
        self.moved: list[Path] = []

    def __enter__(self) -> Path:
        out = check_writable_dir(self.out_dir)
        # stage next to out_dir (same filesystem, so os.replace is a rename)
        base = out.parent if out.parent.is_dir() else _nearest_existing(out.parent)
        try:
            self._tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{out.name}.staging-"))
        except OSError as exc:
            raise ValueError(f"out_dir '{self.out_dir}' is not writable: {exc}") from exc
        return self._tmp

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tmp = self._tmp
        self._tmp = None
        if tmp is None:
            return
        try:
            if exc_type is None:
                self.moved = self._commit(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _commit(self, tmp: Path) -> list[Path]:
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        moved: list[Path] = []
        for src in sorted(p for p in tmp.rglob("*") if p.is_file()):
            dst = out / src.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            moved.append(dst)
        return moved
