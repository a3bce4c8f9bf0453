"""Journeys (issue 32; DESIGN.md, "Using the data"): one person (and one cart, or one booking)
followed through an entry, waits, conditions and actions, durably and exactly once::

    definitions.py   engage/journeys/<key>.yaml parsed into a program of steps, and checked
    channels.py      what ``send`` sends through: a destination now (the outbox), email by name later
    store.py         runs, timers and versions in the profile database (beside the outbox)
    runner.py        the consumer of the log and the timer loop: every change one transaction
    service.py       ``intilery journeys run`` and the process beside the collector
    routes.py, cli.py   ``/v1/journeys``, ``intilery journeys``

docs/journeys.md says what a definition may say and what is guaranteed.
"""
