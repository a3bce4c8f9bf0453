"""The suppression list shared by collectors on NATS (``--store nats``), in a key-value bucket.

Collectors on several hosts share no data directory, so the suppression list
lives in a JetStream key-value bucket (``INTILERY_PRIVACY``, key ``suppressed``, as many
replicas as the stream) as ``{"hashes": [...]}``, with the salt every collector hashes with
(key ``salt``: the first collector's); a change is a compare-and-set on its
revision, and each collector copies a newer revision into its local list (``suppression.py``)
within ``PULL_EVERY`` seconds. The local file stays what ingest reads.

The shared salt is kept beside the local list (``regulations/salt.shared``, mode 0600, written
before any list hashed with it), so a restarted collector checks messages at once, before it has
read the bucket, and goes on with the last list it read while the bucket cannot be read
(``service.Privacy`` says so in ``/readyz`` and the log). Ingest never waits for NATS: a
collector that has never read the salt and holds a list (only after an upgrade) answers 503 to
the messages it cannot check, never 500. Erasing the stream itself is ``nats_eraser.py``'s.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson

from collector.errors import Unavailable
from collector.log.jetstream import API_TIMEOUT, StreamSettings, connect
from collector.privacy.regulations import write_whole

BUCKET, KEY, SALT = "INTILERY_PRIVACY", "suppressed", "salt"
SHARED_SALT_FILE = "salt.shared"  # regulations/salt.shared: the bucket's salt, as last read
PULL_EVERY = 1.0  # seconds between looks at the bucket
REMOTE_TIMEOUT = 10.0  # seconds a change of the shared list may take before the request fails
CHANGE_TRIES = 20  # compare-and-set attempts when other collectors change the list at the same time


class SharedList:
    """The suppression list in the bucket (see the module's docstring)."""

    def __init__(self, config) -> None:
        self.config = config
        self.settings = StreamSettings.from_config(config)
        self.nc = None
        self.kv = None
        self.revision = 0

    async def _bucket(self):
        import nats.js.errors
        from nats.js.api import KeyValueConfig

        if self.kv is None:
            if self.nc is None:
                self.nc = await connect(self.config, "intilery-privacy-list")
            js = self.nc.jetstream(timeout=API_TIMEOUT)
            try:
                self.kv = await js.key_value(BUCKET)
            except nats.js.errors.BucketNotFoundError:
                replicas = self.settings.replicas or (await js.stream_info(self.settings.name)).config.num_replicas
                self.kv = await js.create_key_value(KeyValueConfig(bucket=BUCKET, history=1, replicas=replicas))
        return self.kv

    async def fetch(self) -> set[str] | None:
        """The bucket's hashes when its revision is newer than the last seen, else None."""
        import nats.js.errors

        kv = await self._bucket()
        try:
            entry = await kv.get(KEY)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.revision == self.revision:
            return None
        self.revision = entry.revision
        return set(orjson.loads(entry.value)["hashes"])

    async def change(self, add: set[str], remove: set[str]) -> set[str]:
        """Add and remove hashes (compare-and-set, retried); the bucket's hashes after."""
        import nats.js.errors

        kv = await self._bucket()
        for _ in range(CHANGE_TRIES):
            try:
                entry = await kv.get(KEY)
                hashes, last = set(orjson.loads(entry.value)["hashes"]), entry.revision
            except nats.js.errors.KeyNotFoundError:
                hashes, last = set(), None
            new = (hashes | add) - remove
            value = orjson.dumps({"hashes": sorted(new)})
            try:
                self.revision = await (kv.create(KEY, value) if last is None else kv.update(KEY, value, last=last))
                return new
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another collector changed it meanwhile: read it again
        raise RuntimeError("the shared suppression list kept changing under this change")

    async def salt(self, local: bytes) -> bytes:
        """The salt every collector hashes with (key ``salt``): the first collector's, kept."""
        import nats.js.errors

        kv = await self._bucket()
        try:
            return bytes.fromhex((await kv.get(SALT)).value.decode())
        except nats.js.errors.KeyNotFoundError:
            pass
        try:
            await kv.create(SALT, local.hex().encode())
            return local
        except nats.js.errors.KeyWrongLastSequenceError:  # another collector put its salt first
            return bytes.fromhex((await kv.get(SALT)).value.decode())

    def known_salt(self, directory: Path) -> bytes:
        """The shared salt for hashing now: the one kept in ``directory``; read from the bucket (and
        kept) only from a thread with no event loop (a request's thread, the job, the CLI). On the
        event loop (ingest) with none kept yet: ``Unavailable``, a 503, since ingest never waits."""
        kept = kept_salt(directory)
        if kept is not None:
            return kept
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            salt = self.salt_now(os.urandom(32))  # the bucket's salt when it has one; else this one becomes it
            keep_salt(directory, salt)
            return salt
        raise Unavailable("privacy_unavailable", "the shared suppression list has not been read yet; retry",
                          retry_after=5)  # fmt: skip

    def salt_now(self, local: bytes) -> bytes:
        """``salt`` from a thread with no event loop."""

        async def once() -> bytes:
            try:
                return await retried(lambda: self.salt(local), self)
            finally:
                await self.close()

        return asyncio.run(once())

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()
            self.nc, self.kv = None, None

    def change_now(self, add: set[str], remove: set[str]) -> set[str]:
        """``change`` from a thread with no event loop (a request's thread, the job, the CLI)."""

        async def once() -> set[str]:
            try:
                return await asyncio.wait_for(self.change(add, remove), REMOTE_TIMEOUT)
            finally:
                await self.close()

        return asyncio.run(once())


RETRY_PAUSE = 0.2  # seconds between tries of a call to the bucket that failed


async def retried(call, shared: SharedList):
    """``call()`` tried again (on a new connection) until it works or ``REMOTE_TIMEOUT`` has passed: the
    bucket created by two collectors at once, or a server busy for a moment, is not a failure yet."""
    deadline = asyncio.get_running_loop().time() + REMOTE_TIMEOUT
    while True:
        left = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(call(), max(left, RETRY_PAUSE))
        except Exception:
            if asyncio.get_running_loop().time() + RETRY_PAUSE >= deadline:
                raise
            await shared.close()
            await asyncio.sleep(RETRY_PAUSE)


def kept_salt(directory: Path) -> bytes | None:
    """The shared salt this data directory last read from the bucket, or None."""
    try:
        salt = (Path(directory) / SHARED_SALT_FILE).read_bytes()
    except FileNotFoundError:
        return None
    return salt if len(salt) == 32 else None


def keep_salt(directory: Path, salt: bytes) -> None:
    """Keep the bucket's salt (mode 0600), unless it is kept already."""
    if kept_salt(directory) == salt:
        return
    os.makedirs(directory, exist_ok=True)
    write_whole(Path(directory) / SHARED_SALT_FILE, salt, 0o600)
