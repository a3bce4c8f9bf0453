"""Drop-in compatibility with other vendors' browser SDKs: the configuration each fetches at start.

Segment's analytics.js (``@segment/analytics-next``) and RudderStack's JavaScript SDK v3
(``@rudderstack/analytics-js``) ask their vendor's CDN or control plane for a source's settings
before they send anything. ``segment.py`` and ``rudderstack.py`` answer those requests for the
collector's own sources, pointing each SDK's delivery at this collector; the events themselves
arrive on the ingest API (``collector.app``), as from any Segment-spec client.
"""

from __future__ import annotations

from aiohttp import web

from collector import api
from collector.compat import rudderstack, segment
from collector.config import Config
from collector.ingest.edge import Gate

def mount(app: web.Application, config: Config, gate: Gate, ingest) -> None:
    """Route both SDKs' configuration requests on ``app`` (their routes are in ``collector.api``'s
    table); ``ingest(request, kind)`` takes their events."""
    handlers = {**segment.handlers(config, gate), **rudderstack.handlers(gate, ingest)}
    api.mount(app.router, "compat", lambda route: handlers[route.name])
