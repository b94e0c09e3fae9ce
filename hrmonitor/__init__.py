"""hrmonitor: keeps an outbound mail service's IP reputation safe."""

__version__ = "0.1.0"
