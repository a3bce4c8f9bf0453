"""Using the data (DESIGN.md, "Using the data").

One sub-package each, reading ``profiles/`` and ``log/`` through their public functions only:
``audiences/`` (people selected by conditions on their profile and events), ``outbox/`` (everything
that leaves the platform: one durable table of deliveries), ``destinations/`` (events filtered,
consented, mapped and sent as Standard Webhooks, through the outbox), ``journeys/`` (one person
followed through waits, conditions and actions, durably and exactly once; its sends through the
outbox); to come: ``email/`` (sending, through the outbox), ``content/`` (dynamic content chosen per person).
"""
