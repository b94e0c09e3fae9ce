"""Reading one rule file (TOML) with the error every rule file reports the same way.

Rule files are data the operator writes; a file that is missing, unreadable
or not TOML is a RuleError naming the file, like every other problem in it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from hrmonitor.errors import RuleError


def read_rule_file(path: str | Path) -> dict[str, Any]:
    file = str(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise RuleError(file, "", "cannot read: no such file") from None
    except OSError as exc:
        raise RuleError(file, "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RuleError(file, "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(file, "", f"not valid TOML: {exc}") from None
