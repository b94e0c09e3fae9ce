"""Packages: hrmonitor's own (found), plus ``hrmonitor.rules``, the top-level rules/ directory.

pyproject.toml's ``packages.find`` cannot add a package that lives outside the
``hrmonitor/`` tree; ``package-dir`` there maps ``hrmonitor.rules`` to ``rules/``.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["hrmonitor", "hrmonitor.*"], exclude=["*.__pycache__"]),
        "hrmonitor.rules",
    ]
)
