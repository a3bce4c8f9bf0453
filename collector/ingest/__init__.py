"""Ingest: the HTTP edge and the per-event path, from a request to a durable line in the log.

``edge`` (write key, origin, rate limits, CORS), ``body`` (reading and inflating), ``validate``,
``limits``, ``pipeline`` (the per-event path: validate, enrich, serialise), ``enrich/`` (ip, geo,
user agent), ``commit`` (duplicates, append, wait for durability), ``deadletters`` (what
``rejected/`` keeps, scrubbed per the source's IP mode), ``firstparty`` (the ``itl_aid`` cookie),
``access`` (the access token that reads stored data).
"""
