"""What the tests and the benchmarks both use, so that neither imports the other: a collector
in a subprocess (``processes``), a small geo database (``geo``). Not part of the collector (not
packaged: ``pyproject.toml`` packages ``collector*`` only), and it imports nothing of it.
"""
