"""What the engage subsystems' routes share (``destinations/routes.py``, ``journeys/routes.py``):
the access token, their tables in the profile database behind one thread, their definitions."""

from __future__ import annotations

from typing import Callable

from collector.engage import definitions as engage
from collector.engage.definitions import DefinitionError
from collector.engage.destinations.sender import Database
from collector.ingest import access
from collector.profiles.database import db_target


class EngageAPI:
    """``opener(target)``: the subsystem's store on the profile database; ``load(folder)``: its
    definitions (DefinitionError on a mistake)."""

    def __init__(self, config, opener: Callable, load: Callable) -> None:
        self.config, self.opener, self.load = config, opener, load
        self.tokens = access.Token(config)
        self.db: Database | None = None

    async def store(self) -> Database:
        if self.db is None:
            db = Database(None)
            db.outbox = await db(self.opener, db_target(self.config))
            self.db = db
        return self.db

    async def close(self) -> None:
        if self.db is not None:
            await self.db(self.db.outbox.close)
            self.db.close()

    def definitions(self) -> tuple[dict, list[str]]:
        """The definitions in the folder now, and the mistakes that kept them from loading."""
        try:
            return self.load(engage.folder(self.config)), []
        except DefinitionError as exc:
            return {}, exc.problems
