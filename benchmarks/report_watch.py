"""CPU of ``hrmonitor report --watch`` as a postmaster leaves it running in a terminal.

Builds a store with a realistic population (SQLite in a temporary directory, or
``--database URL``): two pools of six IPs each (normal: four active, two
standby; high-risk: three active, one warming, one retired, one standby), 40
zones in the config and its catalogue, ``--sweeps`` sweeps of answers for every
IP on every zone (the answers history a daemon leaves), three open listings, a
provider suspension, 20 alerts (critical and high among them) and a heartbeat
from a "daemon" (fresh zone health). Then it starts the console script as a
user would, ``hrmonitor report --watch --every S --config FILE``, on a pseudo
terminal of ``--size`` (so rich's live display runs, not the pipe path), and
samples the process's CPU time (utime + stime from ``/proc/PID/stat``) over
``--seconds`` after a warm-up; the figure is CPU time / wall time, in % of one
core.

    .venv/bin/python benchmarks/report_watch.py                  # 2 s refresh, 60 s
    .venv/bin/python benchmarks/report_watch.py --source DIR     # another checkout

``--source DIR`` puts DIR first on the child's PYTHONPATH, so the same console
script runs another checkout's code (a worktree of the commit before a change):
that is how the before/after figures in benchmarks/README.md were taken.
Loopback only; no DNS is queried (report reads the store).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrmonitor.adapters.store import open_store
from hrmonitor.config.loading import load_config
from tests.fixtures.report_population import NORMAL, populate, write_config


class Sender:
    """A daemon's traffic while the report watches: one send recorded every ``every`` s,
    so ``sent_today`` changes and each refresh has something new to draw."""

    def __init__(self, config_path: Path, every: float) -> None:
        self._store = open_store(load_config(config_path).database.url)
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self._every):
            self._store.record_sent(NORMAL[n % 4], datetime.now(UTC))
            n += 1

    def __enter__(self) -> Sender:
        if self._every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._every > 0:
            self._thread.join()
        self._store.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    config: Path,
    every: float,
    seconds: float,
    warmup: float,
    size: str,
    source: str | None,
    profile: str | None = None,
) -> float:
    columns, rows = (int(x) for x in size.split("x"))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
    env.pop("NO_COLOR", None)
    if source:
        env["PYTHONPATH"] = source + os.pathsep + env.get("PYTHONPATH", "")
    script = Path(sys.executable).with_name("hrmonitor")
    command = [str(script), "report", "--watch", "--every", str(every), "--config", str(config)]
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    received = [0]

    def drain() -> None:  # a terminal reads what it is sent
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            received[0] += len(chunk)

    threading.Thread(target=drain, daemon=True).start()
    try:
        time.sleep(warmup)  # start-up and imports are not the steady state
        if process.poll() is not None:
            raise SystemExit(f"report --watch exited with {process.returncode}")
        cpu0, wall0 = _cpu_seconds(process.pid), time.monotonic()
        if profile:  # py-spy (pip install py-spy) samples the same window
            spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw"]
            spy += ["-o", profile, "--pid", str(process.pid), "--duration", str(int(seconds))]
            subprocess.run(spy, check=True, capture_output=True)
        else:
            time.sleep(seconds)
        cpu1, wall1 = _cpu_seconds(process.pid), time.monotonic()
    finally:
        process.terminate()
        process.wait(timeout=30)
        os.close(master)
    if received[0] == 0:
        raise SystemExit("report --watch wrote nothing to its terminal")
    return 100 * (cpu1 - cpu0) / (wall1 - wall0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=float, default=2.0, help="refresh, seconds")
    parser.add_argument("--seconds", type=float, default=60.0, help="sampling time")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before sampling")
    parser.add_argument("--size", default="120x40", help="terminal COLUMNSxROWS")
    parser.add_argument("--sweeps", type=int, default=24, help="sweeps of answers stored")
    parser.add_argument("--database", help="a database URL instead of a temporary SQLite file")
    parser.add_argument("--source", help="run this checkout's hrmonitor (PYTHONPATH)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--send-every", type=float, default=1.0, help="a send recorded every S s (0: none)"
    )
    parser.add_argument("--profile", help="py-spy raw (collapsed) stacks of the sampled window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        config = write_config(Path(directory), args.database)
        populate(config, args.sweeps)
        with Sender(config, args.send_every):
            figures = [
                measure(
                    config,
                    args.every,
                    args.seconds,
                    args.warmup,
                    args.size,
                    args.source,
                    args.profile,
                )
                for _ in range(args.rounds)
            ]
    label = args.source or "this checkout"
    print(
        f"report --watch --every {args.every:g} at {args.size}, {label}: CPU "
        + ", ".join(f"{f:.1f} %" for f in figures)
        + f" of one core over {args.seconds:g} s"
        + (f", a send every {args.send_every:g} s" if args.send_every > 0 else ", no writes")
    )


if __name__ == "__main__":
    main()
