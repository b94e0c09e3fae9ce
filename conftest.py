"""Root conftest: loads every fixture module under tests/fixtures/ as a plugin.

A helper module there is picked up by being there; no list to keep in sync.
"""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "tests" / "fixtures").glob("[!_]*.py")
)
