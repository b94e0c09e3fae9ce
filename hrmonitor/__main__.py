"""``python -m hrmonitor``."""

from hrmonitor.cli import main

main()
