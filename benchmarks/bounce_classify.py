"""Bounce classification throughput: hrmonitor vs flufl.bounce on the same corpus, one run.

As processes (``--process``, what a user runs): ``hrmonitor bounce --json
FILE...`` (the venv's console script) beside a Python process that runs
flufl.bounce's ``all_failures`` on the same files and prints one JSON line per
file, over the Sisimai development corpus and tests/data/bounces; rounds
alternate after one untimed run of each (which caches their bytecode, as an
installed copy has it); the best wall-clock time of each counts, and the best
CPU time (user + system, which load on a shared machine moves less). Start-up
is part of it.

In-process (the default), both start from the raw bytes of every message in
tests/data/bounces and tests/data/sisimai-dev and produce their answer:
hrmonitor's ``classify_message`` (kind, recipients, status, reason) and
flufl.bounce's ``all_failures`` after ``email.message_from_bytes`` (the
parse is part of its work: it takes a parsed Message). The rules file is
loaded once, outside the timing, as the daemon does. Rounds alternate between
the two so load on a shared machine hits both alike; the best round counts,
in wall-clock time and in this process's CPU time (steadier under load).

    .venv/bin/python benchmarks/bounce_classify.py [--rounds 7] [--repeat 5]
    .venv/bin/python benchmarks/bounce_classify.py --process [--rounds 5]
"""

from __future__ import annotations

import argparse
import email
import gc
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from flufl.bounce import all_failures

from hrmonitor.adapters.rule_files import load_bounce_patterns
from hrmonitor.config.files import RuleKind, shipped_rules
from hrmonitor.core.bounce.classify import classify_message

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
CORPORA = (DATA / "bounces", DATA / "sisimai-dev")
FLUFL_PROCESS = """
import email, json, sys
from flufl.bounce import all_failures
for path in sys.argv[1:]:
    with open(path, "rb") as fp:
        message = email.message_from_binary_file(fp)
    try:
        temporary, permanent = all_failures(message)
    except Exception as error:  # a peer's crash on one file is its answer for that file
        temporary, permanent = set(), {repr(error)}
    print(json.dumps({"file": path, "temporary": sorted(map(repr, temporary)),
                      "permanent": sorted(map(repr, permanent))}))
"""


def _files() -> list[Path]:
    return [
        path
        for corpus in CORPORA
        for path in sorted(corpus.rglob("*"))
        if path.suffix in (".txt", ".eml")
    ]


def _messages() -> list[bytes]:
    return [path.read_bytes() for path in _files()]


# The children run as an installed copy does: with their modules' bytecode cached.
# (A checkout installed editable has none until a first run writes it, and this
# machine's environment sets PYTHONDONTWRITEBYTECODE, under which hrmonitor's own
# modules were compiled from source on every run while flufl.bounce's came from
# the bytecode pip wrote at install.)
CHILD_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def _process_seconds(argv: list[str]) -> tuple[float, float]:
    """Wall-clock seconds from spawn to exit, and the child's CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=CHILD_ENV)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _processes(rounds: int) -> None:
    files = [str(path) for path in _files()]
    console_script = str(Path(sys.executable).with_name("hrmonitor"))
    runs = {
        "hrmonitor bounce --json": [console_script, "bounce", "--json", *files],
        "flufl.bounce process": [sys.executable, "-c", FLUFL_PROCESS, *files],
    }
    for argv in runs.values():  # untimed: writes bytecode, warms the page cache
        _process_seconds(argv)
    wall = dict.fromkeys(runs, float("inf"))
    cpu = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, argv in runs.items():
            seconds, cpu_seconds = _process_seconds(argv)
            wall[name] = min(wall[name], seconds)
            cpu[name] = min(cpu[name], cpu_seconds)
    print(f"corpus: {len(files)} files, as processes, best of {rounds}")
    for name in runs:
        print(
            f"{name:25s} {wall[name]:6.2f} s  {len(files) / wall[name]:7.0f} files/s"
            f"  CPU {cpu[name]:5.2f} s"
        )
    ours, theirs = "hrmonitor bounce --json", "flufl.bounce process"
    print(
        f"speed ratio hrmonitor / flufl.bounce: {wall[theirs] / wall[ours]:.2f} wall, "
        f"{cpu[theirs] / cpu[ours]:.2f} CPU"
    )


def _rate(
    work: Callable[[bytes], object], messages: list[bytes], repeat: int
) -> tuple[float, float]:
    """Messages per wall-clock second and per CPU second of this process."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        for raw in messages:
            work(raw)
    count = repeat * len(messages)
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5, help="passes over the corpus per round")
    parser.add_argument("--process", action="store_true", help="time both as processes")
    args = parser.parse_args()
    if args.process:
        _processes(args.rounds)
        return
    messages = _messages()
    patterns = load_bounce_patterns(shipped_rules(RuleKind.BOUNCE))

    def ours(raw: bytes) -> object:
        return classify_message(raw, patterns=patterns)

    def theirs(raw: bytes) -> object:
        return all_failures(email.message_from_bytes(raw))

    peers = {"hrmonitor": ours, "flufl.bounce": theirs}
    wall = dict.fromkeys(peers, 0.0)
    cpu = dict.fromkeys(peers, 0.0)
    for _ in range(args.rounds):
        for name, work in peers.items():
            wall_rate, cpu_rate = _rate(work, messages, args.repeat)
            wall[name] = max(wall[name], wall_rate)
            cpu[name] = max(cpu[name], cpu_rate)
    size = sum(len(raw) for raw in messages)
    print(f"corpus: {len(messages)} messages, {size / 1024:.0f} KiB")
    print(f"{'':13s} {'msg/s wall':>11s} {'msg/CPU-s':>10s}")
    for name in peers:
        print(f"{name:13s} {wall[name]:11.0f} {cpu[name]:10.0f}")
    print(
        f"ratio hrmonitor / flufl.bounce: {wall['hrmonitor'] / wall['flufl.bounce']:.2f} wall, "
        f"{cpu['hrmonitor'] / cpu['flufl.bounce']:.2f} CPU"
    )


if __name__ == "__main__":
    main()
