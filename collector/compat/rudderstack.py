"""RudderStack's JavaScript SDK v3 (``@rudderstack/analytics-js``) pointed at the collector.

    GET  /sourceConfig/              ?writeKey=K, or HTTP Basic with K as the user name
    POST /beacon/v1/batch?writeKey=K the SDK's beacon transport (``useBeacon: true``)

The SDK loaded with ``configUrl`` and its data plane URL at the collector asks for its source's
configuration first: the answer is the source, enabled, with no destinations (the SDK loads no
device-mode integration) and the SDK's own error reports and metrics off. Its events then come to
``/v1/<type>`` (XHR, with Basic auth) or, by beacon, to ``/beacon/v1/batch`` with the key in the
query: the same ingest as ``/v1/batch``. An unknown or missing write key is a 404 / 401.
"""

from __future__ import annotations

from aiohttp import web

from collector.compat.common import PUBLIC, answer, error, source_of
from collector.ingest.edge import CORS_HEADERS, Gate, header_key
from collector.errors import CollectorError, Unauthorized
from collector.api import sentence



def source_config(source, key: str) -> dict:
    """The source configuration document the SDK reads (the fields it uses; no destinations)."""
    return {
        "isHosted": False,
        "source": {
            "id": source.name,
            "name": source.name,
            "writeKey": key,
            "enabled": True,
            "workspaceId": "intilery",
            "config": {"statsCollection": {"errorReports": {"enabled": False}, "metrics": {"enabled": False}}},
            "destinations": [],
        },
    }


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={**CORS_HEADERS, "Access-Control-Allow-Origin": PUBLIC["Access-Control-Allow-Origin"]})


def handlers(gate: Gate, ingest) -> dict:
    """The handler of each of RudderStack's routes in the table (``collector.api``), by name."""

    async def rudderstack_config(request: web.Request) -> web.Response:
        try:
            key = request.query.get("writeKey") or header_key(request)
            if not key:
                raise Unauthorized("missing_write_key", sentence("missing_write_key"))
            source = source_of(gate, key)
        except CollectorError as exc:
            return error(exc)
        return answer(source_config(source, key))

    async def rudderstack_beacon(request: web.Request) -> web.Response:
        return await ingest(request, None)

    return {"rudderstack_config": rudderstack_config, "rudderstack_beacon": rudderstack_beacon, "preflight": preflight}
