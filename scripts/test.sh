#!/usr/bin/env sh
# The whole test suite from a fresh clone: venv, install, lint, types, layering, tests.
# Usage: sh scripts/test.sh [pytest args...]
set -eu
cd "$(dirname "$0")/.."

# Real peers the tests talk to (Debian packages). Installed when we may (root);
# elsewhere the tests that need them skip with the reason, except in CI, where they fail.
need=""
command -v rbldnsd >/dev/null 2>&1 || [ -x /usr/sbin/rbldnsd ] || need="$need rbldnsd"
command -v swaks >/dev/null 2>&1 || need="$need swaks"
[ -x /usr/sbin/smtp-sink ] || [ -x /usr/lib/postfix/sbin/smtp-sink ] || need="$need postfix"
command -v rspamd >/dev/null 2>&1 || need="$need rspamd"
[ -x /usr/sbin/logrotate ] || need="$need logrotate"
command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd"
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need="$need iproute2"
command -v prometheus-alertmanager >/dev/null 2>&1 || need="$need prometheus-alertmanager"
if [ -n "$need" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages:$need"
    # shellcheck disable=SC2086  # one word per package
    sh scripts/install-peers.sh $need
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
# Two workers (pytest-xdist; PYTEST_WORKERS to change): most of the suite waits on the
# daemons and peers it started, so two processes cut it from about 10 to about 6 minutes
# on a 2-core machine. Every test's peers bind free ports and its store is its own file
# or schema, so the workers' tests never share anything.
.venv/bin/pytest -n "${PYTEST_WORKERS:-2}" "$@"
