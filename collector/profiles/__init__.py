"""The Single Customer View: a consumer of the log that keeps one profile per person.

``builder`` follows the log through its one reader and applies each event: ``rules`` says
which identifiers it carries and what it adds, ``graph`` joins identifiers into profiles
(refusing what would join two people), ``store`` keeps it all in SQLite (``postgres`` in
PostgreSQL) with the reader's cursor (its queries in ``sql_builder``, ``sql_reads`` and
``sql_erase``; ``database`` opens the one a configuration names), ``views`` shows a profile, ``api`` serves Segment's
Profile API paths, ``service`` runs the builder inside the collector (one per host, pausing per ``yielding``), ``cli``
is ``intilery profiles`` and ``intilery profile show``.
"""
