"""Bounce classification throughput: hrmonitor vs flufl.bounce on the same corpus, one run.

Both start from the raw bytes of every message in tests/data/bounces (the
flufl.bounce 6.0.0 test messages plus our own) and produce their answer:
hrmonitor's ``classify_message`` (kind, recipients, status, reason) and
flufl.bounce's ``all_failures`` after ``email.message_from_bytes`` (the
parse is part of its work: it takes a parsed Message). The rules file is
loaded once, outside the timing, as the daemon does. Rounds alternate between
the two so load on a shared machine hits both alike; the best round counts,
in wall-clock time and in this process's CPU time (steadier under load).

    .venv/bin/python benchmarks/bounce_classify.py [--rounds 7] [--repeat 5]
"""

from __future__ import annotations

import argparse
import email
import gc
import time
from collections.abc import Callable
from pathlib import Path

from flufl.bounce import all_failures

from hrmonitor.adapters.rule_files import SHIPPED_RULES, load_bounce_patterns
from hrmonitor.core.bounce.classify import classify_message

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "bounces"


def _messages() -> list[bytes]:
    return [
        path.read_bytes() for path in sorted(CORPUS.rglob("*")) if path.suffix in (".txt", ".eml")
    ]


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
    args = parser.parse_args()
    messages = _messages()
    patterns = load_bounce_patterns(SHIPPED_RULES)

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
