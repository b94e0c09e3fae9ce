"""Fuzz: mutated configs and rule files exit 2 with one line per problem, never a traceback.

Each config mutation is invalid by construction (an unknown key, a wrong type,
a zero or negative duration, a huge number, a bad IP or network, a dropped
required key, invalid TOML, non-UTF-8 bytes, deep nesting), so the real CLI
(``hrmonitor config check``, through click's runner on the entry point's group)
must refuse it: exit 2, every line ``hrmonitor: FILE: ...``. Rule files are
mutated the same way; a mutation a rule file may legitimately accept (a free
text field given another type) may pass, but nothing may raise.
"""

from __future__ import annotations

import json
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrmonitor.cli import main

pytestmark = pytest.mark.fuzz

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / "config.example.toml").read_text()
RULE_FILES = {kind: (REPO / "rules" / f"{kind}.toml").read_text() for kind in (
    "dnsbl", "routing", "feedback", "bounce",
)}  # fmt: skip
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_DURATION = re.compile(r"^\d+(?:\.\d+)?(?:ms|s|m|h|d|w)$")
Path_ = tuple[str | int, ...]


# --- a small TOML writer (inline tables) for mutated data ---------------------------------


def dump_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(dump_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {dump_value(v)}" for k, v in value.items()) + "}"


def dump(data: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(key)} = {dump_value(value)}\n" for key, value in data.items())


# --- walking and changing nested data -----------------------------------------------------


def leaves(data: Any, path: Path_ = ()) -> list[tuple[Path_, Any]]:
    found: list[tuple[Path_, Any]] = []
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        if isinstance(value, dict) or (
            isinstance(value, list) and value and isinstance(value[0], dict)
        ):
            found.extend(leaves(value, (*path, key)))
        else:
            found.append(((*path, key), value))
    return found


def tables(data: Any, path: Path_ = ()) -> list[Path_]:
    found = [path] if isinstance(data, dict) else []
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        if isinstance(value, dict | list):
            found.extend(tables(value, (*path, key)))
    return found


def get(data: Any, path: Path_) -> Any:
    for key in path:
        data = data[key]
    return data


def put(data: Any, path: Path_, value: Any) -> None:
    get(data, path[:-1])[path[-1]] = value


def wrong_for(value: Any) -> list[Any]:
    """Values of a type no key that holds ``value`` accepts."""
    table = {"wrong": 1}
    if isinstance(value, bool):
        return ["yes", 1, table]
    if isinstance(value, int | float):
        return ["many", True, table]
    if isinstance(value, str):
        return [True, [[1]], table]
    if isinstance(value, list):
        return ["x", 7, table]
    return ["x", 7]


# --- config mutations ---------------------------------------------------------------------


@st.composite
def mutated_config(draw: st.DrawFn) -> bytes:
    data = tomllib.loads(EXAMPLE)
    kind = draw(
        st.sampled_from(
            ["unknown", "type", "duration", "huge", "ip", "network", "drop", "toml", "utf8", "deep"]
        )
    )
    all_leaves = leaves(data)
    if kind == "unknown":
        where = draw(st.sampled_from([p for p in tables(data) if isinstance(get(data, p), dict)]))
        get(data, where)["bogus_key"] = draw(st.sampled_from([1, "x", [1], {"a": 1}]))
    elif kind == "type":
        where, value = draw(st.sampled_from(all_leaves))
        put(data, where, draw(st.sampled_from(wrong_for(value))))
    elif kind == "duration":
        durations = [p for p, v in all_leaves if isinstance(v, str) and _DURATION.match(v)]
        durations += [
            (*p, i) for p, v in all_leaves if isinstance(v, list)
            for i, x in enumerate(v) if isinstance(x, str) and _DURATION.match(x)
        ]  # fmt: skip
        bad = ["0s", "0ms", "-5m", "0d", "99999999999999999999d", "10000000d"]
        put(data, draw(st.sampled_from(durations)), draw(st.sampled_from(bad)))
    elif kind == "huge":
        numbers = [
            p for p, v in all_leaves if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        huge = [2**63 - 1, 2**63, 10**30, -(2**63), 1e300, float("inf"), float("nan")]
        put(data, draw(st.sampled_from(numbers)), draw(st.sampled_from(huge)))
    elif kind == "ip":
        ips: list[Path_] = [
            ("pools", name, key, i)
            for name, pool in data["pools"].items()
            for key in ("ips", "standby")
            for i in range(len(pool.get(key, [])))
        ]
        ips += [("dns", "nameservers", i) for i in range(len(data["dns"]["nameservers"]))]
        bad = ["203.0.113.300", "::g", "not-an-ip", "", "127.0.0.1/32", "1.2.3"]
        put(data, draw(st.sampled_from(ips)), draw(st.sampled_from(bad)))
    elif kind == "network":
        networks = [("routing", "trusted_filters", 0)] + [
            ("tenants", t, "networks", i) for t, tenant in enumerate(data["tenants"])
            for i in range(len(tenant["networks"]))
        ]  # fmt: skip
        bad = ["10.0.0.0/33", "10.0.0.1/xx", "2001:db8::/129", "", "everyone"]
        put(data, draw(st.sampled_from(networks)), draw(st.sampled_from(bad)))
    elif kind == "drop":
        required = [("pools",), ("tenants", 0, "name"), ("pools", "normal"), ("pools", "high-risk")]
        required += [("pools", name, "risk") for name in data["pools"]]
        required += [("pools", "normal", "warmup", 0, "daily_cap")]
        where = draw(st.sampled_from(required))
        del get(data, where[:-1])[where[-1]]
    text = dump(data)
    if kind == "toml":
        broken = draw(st.sampled_from(["[dns]\n[dns]\n", "x = \n", "= 1\n", "[[[\n", 'a = "\n']))
        return (EXAMPLE + "\n" + broken).encode()
    if kind == "utf8":
        raw = EXAMPLE.encode()
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + raw[at:]
    if kind == "deep":
        depth = draw(st.integers(300, 3000))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a = ", "}")]))
        return (EXAMPLE + f"\nx = {opener * depth}1{closer * depth}\n").encode()
    return text.encode()


def run_cli(*args: str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr.splitlines(), result.stdout


@FUZZ
@given(mutated_config())
def test_a_mutated_example_config_exits_2_one_line_per_problem(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.toml"
        path.write_bytes(content)
        code, lines, stdout = run_cli("config", "check", "--config", str(path))
    assert code == 2, stdout
    assert lines
    for line in lines:
        assert line.startswith(f"hrmonitor: {path}: "), line
        assert len(line.split(": ")) >= 3  # file: key: problem (or file: problem)


# --- rule file mutations --------------------------------------------------------------------


@st.composite
def mutated_rule_file(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    """(kind, content, surely invalid)."""
    kind = draw(st.sampled_from(sorted(RULE_FILES)))
    source = RULE_FILES[kind]
    data = tomllib.loads(source)
    mutation = draw(st.sampled_from(["unknown", "type", "drop", "toml", "utf8", "deep"]))
    if mutation == "unknown":
        data["bogus_key"] = draw(st.sampled_from([1, "x", {"a": 1}]))
    elif mutation == "type":
        where, value = draw(st.sampled_from(leaves(data)))
        put(data, where, draw(st.sampled_from(wrong_for(value))))
    elif mutation == "drop":
        where = draw(st.sampled_from(leaves(data)))[0]
        del get(data, where[:-1])[where[-1]]
    if mutation == "toml":
        return kind, (source + "\n[[[\n").encode(), True
    if mutation == "utf8":
        raw = source.encode()
        at = draw(st.integers(0, len(raw)))
        return kind, raw[:at] + b"\xff" + raw[at:], True
    if mutation == "deep":
        depth = draw(st.integers(300, 3000))
        return kind, (source + f"\nx = {'[' * depth}1{']' * depth}\n").encode(), True
    return kind, dump(data).encode(), mutation == "unknown"


@FUZZ
@given(mutated_rule_file())
def test_a_mutated_rule_file_never_raises_and_bad_ones_exit_2(
    case: tuple[str, bytes, bool],
) -> None:
    kind, content, invalid = case
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"my-{kind}.toml"
        path.write_bytes(content)
        code, lines, _ = run_cli("rules", "check", str(path))
    assert code in (0, 2)
    if invalid:
        assert code == 2
    if code == 2:
        assert lines
        for line in lines:
            assert line.startswith(str(path)), line
