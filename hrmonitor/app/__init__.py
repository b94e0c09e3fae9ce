"""The composition root: the only place that wires adapters and services together.

``build`` turns a Config into each part, ``oneshot`` runs the CLI's one-shot
commands (check, report, history, db upgrade), ``daemon`` owns the long-lived
process and its lifecycle. Import the submodule you need: the CLI's probes stay
light that way.
"""
