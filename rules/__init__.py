"""The shipped rule files, installed as package data ``hrmonitor.rules``.

``hrmonitor.config.files`` finds them through ``importlib.resources``; the
files a config names are layered after them.
"""
