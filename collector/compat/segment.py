"""Segment's analytics.js (``@segment/analytics-next``) pointed at the collector.

    GET /v1/projects/{writeKey}/settings

analytics.js loaded with ``cdnURL`` set to the collector asks for its source's settings here
before it sends anything. The answer enables one destination, its "Segment.io" integration,
with ``apiHost`` at this collector (host as the request reached it, plus ``/v1``; behind a
trusted proxy, its X-Forwarded-Host) and the request's protocol (or the proxy's
X-Forwarded-Proto), so its calls land on ``/v1/t``, ``/v1/p``, ... (or ``/v1/b`` when batching);
no other integration, no remote plugins or middleware to load from a CDN, and its own
performance metrics off (they would go to Segment). An unknown write key is a 404.
"""

from __future__ import annotations

from aiohttp import web

from collector.compat.common import BY_HOST, answer, collector_host, error, source_of
from collector.config import Config
from collector.ingest.edge import Gate
from collector.errors import CollectorError



def settings(key: str, protocol: str, host: str) -> dict:
    """The settings document of the source with write key ``key``, the collector at ``protocol://host``."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": key,
                "apiHost": host + "/v1",
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": False,
            }
        },
        "plan": {"track": {"__default": {"enabled": True, "integrations": {}}}},
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def handlers(config: Config, gate: Gate) -> dict:
    """The handler of each of Segment's routes in the table (``collector.api``), by name."""

    async def segment_settings(request: web.Request) -> web.Response:
        try:
            key = request.match_info["writeKey"]
            source_of(gate, key)
        except CollectorError as exc:
            return error(exc)
        return answer(settings(key, *collector_host(request, config)), headers=BY_HOST)

    return {"segment_settings": segment_settings}
