"""Log stores. A store takes already-serialised NDJSON lines and answers only once they are durable.

The interface every store implements (see ``files.FileStore``)::

    await store.start()
    await store.append(partition, data, count)   # raises errors.Unavailable
    await store.append_rejected(day, data, count)
    ready, reason = await store.ready()
    await store.close()
"""
