"""The surge watcher: what the relay sees, fed to ``core.surge``, and its alerts.

- ``traffic``: accepted messages and delivery outcomes, classified and told to the watcher.
- ``watcher``: the watcher service.
"""
