"""The log: where events are kept, and the one way to read them back.

A store takes already-serialised NDJSON lines and answers only once they are durable.

Two implementations share one interface: ``files.FileStore`` (the embedded default) and
``nats.NatsStore`` (a JetStream stream, for several collectors)::

    await store.start()
    done = store.append(lines, partition="dt=…/hr=…", log="events", ids=[messageId, …], source="web")
    await done                       # raises errors.Unavailable (also raised by append itself)
    ready, reason = await store.ready()
    ids = await store.recent_ids(window, limit)   # seeds the collector's duplicate filter
    await store.close()

``log="rejected"`` appends dead letters (partitioned by day); ``ids`` and ``source`` matter to
stores that address messages one by one.

Modules: ``layout`` (names, partitions), ``segments`` (files on disk, the instance lock,
compression, crash recovery), ``files`` (the file store) with ``segment_log`` (its open
segments), ``recovery`` (what a crash left, at start), ``housekeeping`` (``rejected/``'s
retention), ``readiness`` (its probe) and ``seeding`` (the duplicate filter's seed), ``reader`` (the one reader) and
``stream_reader`` (the same over the NATS stream), ``rewrite`` (the one safe rewrite of a
segment), ``deadletters`` (what ``rejected/`` keeps), ``jetstream`` (the JetStream stream:
settings, creation, connection), ``nats`` (the NATS store, which publishes), ``stores``
(``make_store``: the store a configuration names), ``archive`` (``intilery archive``: the
stream into files), ``tail`` (``intilery tail``). Nothing here imports the HTTP side.
"""
