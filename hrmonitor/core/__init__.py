"""Pure decision logic: standard library only, no I/O, no clock reads."""
