"""Tracking plans: the JSON Schema of each event a source sends, checked at the door and drafted
from the data.

Modules: ``plan`` (a plan file loaded and compiled once: ``Plan.violations(message)``),
``enforce`` (the plans of every source, their reload on SIGHUP, the ingest stage that flags or
rejects), ``infer`` (``intilery plan infer``: a plan drafted from stored events), ``check``
(``intilery plan check``: stored events against a plan), ``cli`` (the ``intilery plan``
subcommand). The stored events are read through the log's one reader.
"""
