"""A small GeoIP2-City-shaped database for tests and benchmarks (needs ``mmdb-writer``, ``netaddr``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Networks of the test geo database: documentation ranges, so nothing real is implied.
GEO_NETWORKS: dict[str, dict[str, Any]] = {
    "203.0.113.0/24": {
        "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
        "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
        "city": {"names": {"en": "London"}},
        "location": {"latitude": 51.5142, "longitude": -0.0931, "time_zone": "Europe/London"},
    },
    "198.51.100.0/24": {
        "country": {"iso_code": "FR", "names": {"en": "France"}},
        "subdivisions": [{"iso_code": "IDF", "names": {"en": "Île-de-France"}}],
        "city": {"names": {"en": "Paris"}},
        "location": {"latitude": 48.8566, "longitude": 2.3522, "time_zone": "Europe/Paris"},
    },
    "2001:db8::/32": {
        "country": {"iso_code": "DE", "names": {"en": "Germany"}},
        "city": {"names": {"en": "Berlin"}},
        "location": {"latitude": 52.52, "longitude": 13.405, "time_zone": "Europe/Berlin"},
    },
}


def build_geo_db(path: Path, networks: dict[str, dict[str, Any]] = GEO_NETWORKS) -> Path:
    """Write a GeoIP2-City-shaped .mmdb (IPv6 tree, IPv4 mapped) with mmdb-writer."""
    from mmdb_writer import MmdbF64, MMDBWriter
    from netaddr import IPSet

    def typed(value: Any) -> Any:
        if isinstance(value, float):
            return MmdbF64(value)
        if isinstance(value, dict):
            return {k: typed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [typed(v) for v in value]
        return value

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City", languages=["en"])
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), typed(record))
    writer.to_db_file(str(path))
    return path
