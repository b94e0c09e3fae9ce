"""``python -m hrmonitor``."""

from hrmonitor.cli import entry

entry()
