"""``--key=value`` overrides of a script's config block (nanoGPT style, without ``exec``).

A script keeps its knobs as module-level constants, collects them in a dict and
calls ``resolve_config(defaults, sys.argv[1:])``. Each override must name an
existing key; its text is converted to the type of the default:

=============  ===============================================================
default        accepted text
=============  ===============================================================
``bool``       ``True``/``False``/``true``/``false``/``1``/``0``
``int``        an integer (``3``; ``3.5`` is rejected)
``float``      any float (``1`` becomes ``1.0``; ``nan`` is rejected)
``str``        anything, as is
``None``       JSON (``3``, ``[1,2]``, ``null``), ``None``, else the text as a string
list/tuple     ``1,2,4`` or JSON ``[1, 2, 4]``; elements take the type of the
               default's elements
``dict``       a JSON object
=============  ===============================================================

``run_main(main)`` turns ``ValueError`` (including :class:`ConfigError`) into one
line ``error: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "print_flush",
    "script_knobs","ConfigError", "resolve_config", "format_config", "config_help", "run_main"]

_TRUE = {"True", "true", "1"}
_FALSE = {"False", "false", "0"}


class ConfigError(ValueError):
    """A bad ``--key=value`` override: unknown key, malformed argument or wrong type."""


def _type_name(default: Any) -> str:
    if isinstance(default, list | tuple):
        elem = _element_type(default)
        return f"{type(default).__name__} of {elem.__name__}" if elem else type(default).__name__
    return "None (JSON or string)" if default is None else type(default).__name__


def _element_type(default: Sequence[Any]) -> type | None:
    """The scalar type list elements are coerced to (``None``: parse JSON-ish)."""
    types = {type(v) for v in default}
    if not types:
        return None
    if types == {int, float}:
        return float
    if len(types) == 1 and next(iter(types)) in (bool, int, float, str):
        return next(iter(types))
    return None


def _parse_jsonish(text: str) -> Any:
    if text == "None":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_scalar(text: str, kind: type, key: str, shown: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"config key {key!r}: {shown!r} is not {expected}")

    if kind is bool:
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise bad("a bool (allowed: True, False, true, false, 1, 0)")
    if kind is int:
        try:
            return int(text.strip())
        except ValueError:
            raise bad("an int (e.g. 3)") from None
    if kind is float:
        try:
            value = float(text.strip())
        except ValueError:
            raise bad("a float (e.g. 0.5 or 1e-3)") from None
        if math.isnan(value):
            raise bad("a float other than nan")
        return value
    if kind is str:
        return text
    raise AssertionError(kind)  # pragma: no cover - _element_type only returns the above


def _coerce_element(value: Any, kind: type | None, key: str, text: str) -> Any:
    if kind is None:
        return _parse_jsonish(value) if isinstance(value, str) else value
    if isinstance(value, str):
        return _parse_scalar(value, kind, key, value)
    # JSON-decoded element
    ok = (
        (kind is bool and isinstance(value, bool))
        or (kind is int and isinstance(value, int) and not isinstance(value, bool))
        or (kind is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (kind is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(
            f"config key {key!r}: element {value!r} of {text!r} is not a {kind.__name__}"
        )
    return float(value) if kind is float else value


def _coerce(key: str, text: str, default: Any) -> Any:
    if isinstance(default, bool):
        return _parse_scalar(text, bool, key, text)
    if isinstance(default, int):
        return _parse_scalar(text, int, key, text)
    if isinstance(default, float):
        return _parse_scalar(text, float, key, text)
    if isinstance(default, str):
        return text
    if default is None:
        return _parse_jsonish(text)
    if isinstance(default, list | tuple):
        elem = _element_type(default)
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                items = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"config key {key!r}: {text!r} is not a valid JSON list ({exc.msg})"
                ) from None
            if not isinstance(items, list):  # pragma: no cover - '[' always decodes to a list
                raise ConfigError(f"config key {key!r}: {text!r} is not a list")
        else:
            items = [] if stripped == "" else [part.strip() for part in stripped.split(",")]
            if any(part == "" for part in items):
                raise ConfigError(f"config key {key!r}: {text!r} has an empty list element")
        values = [_coerce_element(v, elem, key, text) for v in items]
        return type(default)(values)
    if isinstance(default, dict):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: {text!r} is not a JSON object")
        return value
    raise ConfigError(
        f"config key {key!r} has a default of unsupported type {type(default).__name__}; "
        "supported: bool, int, float, str, None, list, tuple, dict"
    )


def config_help(defaults: Mapping[str, Any]) -> str:
    """Help text: every knob with its default and type, one per line."""
    width = max((len(k) for k in defaults), default=0)
    lines = ["options (override with --key=value):"]
    for key, value in defaults.items():
        lines.append(f"  --{key.ljust(width)}  default {value!r}  ({_type_name(value)})")
    return "\n".join(lines)


def format_config(config: Mapping[str, Any]) -> str:
    """The resolved config as ``key = value`` lines under a ``config:`` heading, for printing."""
    width = max((len(k) for k in config), default=0)
    return "\n".join(["config:"] + [f"  {k.ljust(width)} = {v!r}" for k, v in config.items()])


def resolve_config(defaults: Mapping[str, Any], argv: Sequence[str]) -> dict[str, Any]:
    """Apply ``--key=value`` overrides in ``argv`` (no program name) to a copy of ``defaults``.

    Values are converted to the type of the default (see the module docstring).
    ``-h``/``--help`` prints :func:`config_help` and raises ``SystemExit(0)``.
    Raises :class:`ConfigError` for an argument not of the form ``--key=value``,
    an unknown key (the message lists the valid keys), a key given twice, or a
    value of the wrong type (the message names the key, the value and the
    expected type). ``defaults`` is not modified.
    """
    if isinstance(argv, str):
        raise TypeError("argv must be a sequence of strings (e.g. sys.argv[1:]), not one string")
    for key in defaults:
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"config key {key!r} must be a Python identifier")
    config = copy.deepcopy(dict(defaults))
    seen: set[str] = set()
    for arg in argv:
        if arg in ("-h", "--help"):
            print(config_help(defaults))
            raise SystemExit(0)
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(
                f"argument {arg!r} is not of the form --key=value (e.g. --num_stages=4); "
                "use --help to list the keys"
            )
        key, text = arg[2:].split("=", 1)
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown config key {key!r}{hint}; valid keys: {', '.join(defaults)}"
            )
        if key in seen:
            raise ConfigError(f"config key {key!r} is given more than once")
        seen.add(key)
        config[key] = _coerce(key, text, defaults[key])
    return config


def run_main(main: Callable[[], int | None]) -> int:
    """Run a script's ``main()`` and return its exit status for ``raise SystemExit(...)``.

    ``ValueError`` (``ConfigError``, ``ProfileError``, bad input found by the
    library) prints one line ``error: <message>`` to stderr and returns 2;
    Ctrl-C prints ``interrupted`` and returns 130; otherwise returns ``main()``'s
    integer result (``None`` counts as 0). Other exceptions propagate with their
    traceback: they are bugs, not bad input.
    """
    try:
        status = main()
    except ValueError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


_KNOB_TYPES = (type(None), bool, int, float, str, list, tuple)


def script_knobs(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The config block of a script: its module-level constants, in definition order.

    Takes the script's ``globals()`` and keeps public names bound to plain values
    (None, bool, int, float, str, list, tuple); modules, functions, classes,
    UPPER_CASE names (imported constants) and names starting with ``_`` are left out.
    """
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and not k.isupper() and isinstance(v, _KNOB_TYPES)}


def print_flush(line: str) -> None:
    """Print one progress line and flush, so it shows at once even when output is piped."""
    print(line, flush=True)
