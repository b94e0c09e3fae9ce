"""Root conftest: loads every fixture module under tests/fixtures/ as a plugin.

A helper module there is picked up by being there; no list to keep in sync.
Fixture modules import each other, so the whole package is marked for
assertion rewriting first (otherwise pytest warns that a module was imported
before it could be rewritten, and warnings are errors here).
"""

from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.fixtures")

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "tests" / "fixtures").glob("[!_]*.py")
)
