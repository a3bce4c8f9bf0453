"""Geo location from a MaxMind-format (GeoIP2/GeoLite2 City) database, memory-mapped."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import maxminddb

log = logging.getLogger("intilery.geo")


def _name(record: dict, key: str) -> str | None:
    names = (record.get(key) or {}).get("names") or {}
    return names.get("en")


class Geo:
    """``locate(ip)`` returns ``context.location`` or None when the address is not in the database.

    The cache of addresses hands out one location object per place (``_place``, as large):
    the addresses of a city share one dict instead of each holding its own copy (about 450
    bytes an address). Callers never change a location (it is shared already)."""

    def __init__(self, path: Path, cache_size: int = 10_000) -> None:
        self._reader = maxminddb.open_database(str(path), maxminddb.MODE_MMAP_EXT)
        self.locate = lru_cache(maxsize=cache_size)(self._locate)
        self._place = lru_cache(maxsize=cache_size)(dict)  # (key, value) pairs -> the shared dict
        log.info("geo database loaded", extra={"path": str(path), "type": self._reader.metadata().database_type})

    def _locate(self, ip: str) -> dict[str, Any] | None:
        try:
            record = self._reader.get(ip)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        subdivisions = record.get("subdivisions") or [{}]
        location = record.get("location") or {}
        found = {
            "country": _name(record, "country"),
            "countryCode": (record.get("country") or {}).get("iso_code"),
            "region": (subdivisions[0].get("names") or {}).get("en"),
            "city": _name(record, "city"),
            "latitude": location.get("latitude"),
            "longitude": location.get("longitude"),
            "timezone": location.get("time_zone"),
        }
        place = tuple((k, v) for k, v in found.items() if v is not None)
        return self._place(place) if place else None

    def close(self) -> None:
        self._reader.close()
