"""Log stores. A store takes already-serialised NDJSON lines and answers only once they are durable.

Two implementations share one interface: ``files.FileStore`` (the embedded default) and
``nats.NatsStore`` (a JetStream stream, for several collectors)::

    await store.start()
    done = store.append(lines, partition="dt=…/hr=…", log="events", ids=[messageId, …], source="web")
    await done                       # raises errors.Unavailable (also raised by append itself)
    ready, reason = await store.ready()
    await store.close()

``log="rejected"`` appends dead letters (partitioned by day); ``ids`` and ``source`` matter to
stores that address messages one by one.
"""
