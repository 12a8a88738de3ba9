"""Tests for bubblereduce.config: --key=value parsing, every error, run_main."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubblereduce.config import ConfigError, config_help, format_config, resolve_config, run_main

DEFAULTS = {
    "num_stages": 4,
    "slack": 0.1,
    "verbose": False,
    "out_dir": "figs",
    "profile_path": None,
    "microbatches": [1, 2, 4],
    "bandwidths_GBps": (1.0, 10.0),
    "schedules": ["gpipe", "1f1b"],
    "mixed": [1, 2.5],
    "empty": [],
    "extra": {"a": 1},
}


def test_no_overrides_returns_equal_copy() -> None:
    cfg = resolve_config(DEFAULTS, [])
    assert cfg == DEFAULTS
    cfg["microbatches"].append(8)
    assert DEFAULTS["microbatches"] == [1, 2, 4], "defaults must not be modified"


@pytest.mark.parametrize(
    ("arg", "key", "expected"),
    [
        ("--num_stages=3", "num_stages", 3),
        ("--num_stages=-2", "num_stages", -2),
        ("--slack=1", "slack", 1.0),
        ("--slack=1e-3", "slack", 1e-3),
        ("--slack=inf", "slack", math.inf),
        ("--verbose=True", "verbose", True),
        ("--verbose=true", "verbose", True),
        ("--verbose=1", "verbose", True),
        ("--verbose=False", "verbose", False),
        ("--verbose=false", "verbose", False),
        ("--verbose=0", "verbose", False),
        ("--out_dir=a=b", "out_dir", "a=b"),
        ("--out_dir=", "out_dir", ""),
        ("--profile_path=figs/profile.json", "profile_path", "figs/profile.json"),
        ("--profile_path=None", "profile_path", None),
        ("--profile_path=null", "profile_path", None),
        ("--profile_path=3", "profile_path", 3),
        ("--profile_path=[1,2]", "profile_path", [1, 2]),
        ("--microbatches=1,2,8", "microbatches", [1, 2, 8]),
        ("--microbatches=[16, 32]", "microbatches", [16, 32]),
        ("--microbatches=5", "microbatches", [5]),
        ("--microbatches=", "microbatches", []),
        ("--bandwidths_GBps=1,100", "bandwidths_GBps", (1.0, 100.0)),
        ("--bandwidths_GBps=[2, 0.5]", "bandwidths_GBps", (2.0, 0.5)),
        ("--schedules=zbv, zb-h1", "schedules", ["zbv", "zb-h1"]),
        ("--schedules=[\"gpipe\"]", "schedules", ["gpipe"]),
        ("--mixed=3,4", "mixed", [3.0, 4.0]),
        ("--empty=1,x", "empty", [1, "x"]),
        ("--extra={\"b\": 2}", "extra", {"b": 2}),
    ],
)
def test_coercion(arg: str, key: str, expected: object) -> None:
    cfg = resolve_config(DEFAULTS, [arg])
    assert cfg[key] == expected
    assert type(cfg[key]) is type(expected)
    if isinstance(expected, list | tuple):
        assert [type(v) for v in cfg[key]] == [type(v) for v in expected]
    # every other key keeps its default
    assert {k: v for k, v in cfg.items() if k != key} == {k: v for k, v in DEFAULTS.items() if k != key}


@pytest.mark.parametrize(
    ("arg", "fragments"),
    [
        ("--num_stages=3.5", ["'num_stages'", "'3.5'", "int"]),
        ("--num_stages=four", ["'num_stages'", "'four'", "int"]),
        ("--num_stages=", ["'num_stages'", "int"]),
        ("--slack=abc", ["'slack'", "'abc'", "float"]),
        ("--slack=nan", ["'slack'", "nan"]),
        ("--verbose=yes", ["'verbose'", "'yes'", "bool", "true"]),
        ("--microbatches=1,2.5", ["'microbatches'", "'2.5'", "int"]),
        ("--microbatches=[1, 2.5]", ["'microbatches'", "2.5", "int"]),
        ("--microbatches=[1,", ["'microbatches'", "JSON"]),
        ("--microbatches=1,,2", ["'microbatches'", "empty"]),
        ("--microbatches=[true]", ["'microbatches'", "True", "int"]),
        ("--schedules=[1]", ["'schedules'", "1", "str"]),
        ("--extra=[1]", ["'extra'", "JSON object"]),
        ("--num_stage=3", ["unknown", "'num_stage'", "did you mean 'num_stages'", "valid keys",
                           "num_stages, slack"]),
        ("--bogus=1", ["unknown", "'bogus'", "valid keys: num_stages"]),
        ("num_stages=3", ["--key=value"]),
        ("--num_stages", ["--key=value"]),
        ("-x", ["--key=value"]),
    ],
)
def test_errors_name_key_value_and_type(arg: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(DEFAULTS, [arg])
    for frag in fragments:
        assert frag in str(info.value), (frag, str(info.value))


def test_duplicate_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="more than once"):
        resolve_config(DEFAULTS, ["--num_stages=2", "--num_stages=3"])


def test_unsupported_default_type() -> None:
    with pytest.raises(ConfigError, match="unsupported type set"):
        resolve_config({"s": {1}}, ["--s=1"])


def test_argv_as_string_is_rejected() -> None:
    with pytest.raises(TypeError, match="sequence of strings"):
        resolve_config(DEFAULTS, "--num_stages=3")  # type: ignore[arg-type]


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_knobs_and_exits_zero(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        resolve_config(DEFAULTS, ["--num_stages=2", flag])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.strip() == config_help(DEFAULTS)
    for key, value in DEFAULTS.items():
        assert f"--{key}" in out and repr(value) in out


def test_format_config_lists_every_key() -> None:
    text = format_config(DEFAULTS)
    lines = text.splitlines()
    assert lines[0] == "config:" and len(lines) == len(DEFAULTS) + 1
    assert any(line.split() == ["num_stages", "=", "4"] for line in lines)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=-10**12, max_value=10**12))
def test_int_round_trip(n: int) -> None:
    assert resolve_config({"k": 0}, [f"--k={n}"])["k"] == n


@settings(max_examples=60, deadline=None)
@given(st.floats(allow_nan=False))
def test_float_round_trip(x: float) -> None:
    assert resolve_config({"k": 0.0}, [f"--k={x!r}"])["k"] == x


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-1000, max_value=1000), max_size=8))
def test_int_list_round_trip(xs: list[int]) -> None:
    text = ",".join(str(x) for x in xs)
    assert resolve_config({"k": [1]}, [f"--k={text}"])["k"] == xs
    assert resolve_config({"k": (1,)}, [f"--k={xs}"])["k"] == tuple(xs)


def test_run_main_reports_value_errors_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def bad() -> None:
        resolve_config(DEFAULTS, ["--num_stages=x"])

    assert run_main(bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config key 'num_stages'") and err.count("\n") == 1

    def multiline() -> None:
        raise ValueError("first\nsecond")

    assert run_main(multiline) == 2
    assert capsys.readouterr().err == "error: first second\n"


def test_run_main_status_and_bugs_propagate(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(lambda: None) == 0
    assert run_main(lambda: 3) == 3

    def interrupted() -> None:
        raise KeyboardInterrupt

    assert run_main(interrupted) == 130
    assert "interrupted" in capsys.readouterr().err

    def bug() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        run_main(bug)


def test_script_knobs_keeps_plain_lowercase_constants_only():
    import math as some_module

    from bubblereduce.config import script_knobs

    ns = {"num_stages": 4, "alpha": 1.5, "name": "x", "flag": True, "none": None, "widths": [1, 2],
          "pair": (1, 2), "SCHEDULES": ("a",), "_private": 1, "mod": some_module, "fn": script_knobs,
          "cls": int}
    assert script_knobs(ns) == {"num_stages": 4, "alpha": 1.5, "name": "x", "flag": True, "none": None,
                                "widths": [1, 2], "pair": (1, 2)}
