"""The loops that drive the core with the adapters."""
