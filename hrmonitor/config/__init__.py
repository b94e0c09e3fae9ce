"""Configuration: TOML -> a frozen, validated ``Config``; errors name file and key.

- ``loading``: ``Config``, ``load_config`` and the whole-file checks.
- ``sections``: each section's model and value checks.
"""
