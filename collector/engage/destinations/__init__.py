"""Destinations: every event, filtered, consented, mapped, and delivered as a Standard Webhook
(docs/destinations.md). ``definitions.py`` reads ``engage/destinations/*.yaml``, ``consumer.py``
fills the outbox from the log, ``sender.py`` sends it (``webhooks.py``: one request), ``service.py``
runs both, ``cli.py`` is ``intilery destinations``, ``routes.py`` is ``/v1/destinations``."""
