"""The process model: how a collector runs.

``serving`` (``run_server``, the banner, ``serve``), ``runtime`` (the event loop, signals, malloc's
arenas, dying with a parent), ``workers`` (the supervisor of ``--workers N``), ``hostwriter`` (one
store, duplicate filter and group commit for every worker), ``demo``, ``snippet``, ``assets`` (the
tag and the OpenAPI document, package data under ``collector/static/``).
"""
