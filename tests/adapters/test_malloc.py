"""glibc's mmap threshold fixed at start-up: a large buffer freed is given back at once.

Run in a separate process (the setting is the process's). Without it, freeing a
1 MB buffer raises glibc's threshold to 1 MB, so the next 900 KB buffer comes
from the heap and stays resident after it is freed: about 0.9 MB more for the
daemon's first large message (benchmarks/hostile_memory.py, from a baseline
warmed with small messages).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hrmonitor.adapters.malloc import fix_mmap_threshold

SCRIPT = """
import json, os, sys
from pathlib import Path
from hrmonitor.adapters.malloc import fix_mmap_threshold

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else False
first = os.urandom(1_000_000)  # mapped (over 128 KiB), then unmapped
del first
before = rss()
second = os.urandom(900_000)
del second
print(json.dumps({"fixed": fixed, "held": rss() - before}))
"""


def run(mode: str, **env: str) -> tuple[bool, int]:
    """(whether the threshold was fixed, bytes still resident after the second buffer)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        capture_output=True, text=True, check=True, env={**inherited, **env},
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    result = json.loads(done.stdout)
    return bool(result["fixed"]), int(result["held"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux")
def test_a_large_buffer_freed_after_another_is_given_back_to_the_kernel() -> None:
    fixed, held = run("fix")
    assert fixed
    assert held < 100_000  # mapped, and unmapped when freed
    # glibc's dynamic threshold, unfixed: the second buffer came from the heap and most
    # of it stayed (774 KB).
    assert run("leave")[1] > 500_000


def test_an_operators_own_threshold_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("fix", MALLOC_MMAP_THRESHOLD_="262144")[0] is False
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=262144")
    assert fix_mmap_threshold() is False
