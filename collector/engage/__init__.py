"""Using the data (not built yet; see DESIGN.md, "Using the data").

What will live here, one sub-package each, reading ``profiles/`` and ``log/`` through their public
functions only: ``audiences/`` (people selected by conditions on their profile and events),
``destinations/`` (where an audience or an event is sent), ``journeys/`` (steps over time),
``email/`` (sending, with an outbox), ``content/`` (dynamic content chosen per person).
"""
