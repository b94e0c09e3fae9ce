"""I/O adapters: each turns the outside world into core values."""
