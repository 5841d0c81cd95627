"""The worker's HTTP API: where is my parcel, health, metrics.

``GET /parcels/{id}`` is answered by whichever worker owns the parcel's partition
(Faust's ``table_route`` forwards the request there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faust.web import Request, Response, View

from projections import core
from projections import fold as fold_
from projections.jsonform import PARCEL_ID_RE, event_to_json, format_time
from streams import api_keys

if TYPE_CHECKING:
    from streams.app import TrackboneApp


def register_views(owner: TrackboneApp) -> None:
    app = owner.app

    settings = owner.settings
    parcel_keys = () if settings.parcels_public else settings.api_keys

    class ParcelView(View):
        @app.table_route(table=owner.states, match_info="parcel_id")  # type: ignore[arg-type]
        async def get(self, request: Request, **kwargs: Any) -> Response:
            status = api_keys.denied(parcel_keys, request.headers)
            if status is not None:
                error = "API key required" if status == 401 else "API key not accepted"
                return self.json({"error": error}, status=status)
            return parcel_response(owner, self, kwargs["parcel_id"])

    class HealthView(View):
        async def get(self, request: Request) -> Response:
            # stream time: the newest event time seen; null before the first event
            seen = owner.stream_time
            body: dict[str, Any] = {"stream_time": format_time(seen) if seen else None}
            stall = owner.stall
            if stall is not None:
                return self.json({"status": "stalled", **stall, **body}, status=503)
            return self.json({"status": "ok", **body})

    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            owner.update_lag()
            body, content_type = owner.metrics.render()
            return self.bytes(body, content_type=content_type)

    app.page("/parcels/{parcel_id}")(ParcelView)
    app.page("/health")(HealthView)
    app.page("/metrics")(MetricsView)


def parcel_response(owner: TrackboneApp, view: View, parcel_id: str) -> Response:
    if PARCEL_ID_RE.fullmatch(parcel_id) is None:
        return view.json(
            {"error": "malformed parcel id: must be 1..64 characters of [A-Za-z0-9_-]"},
            status=400,
        )
    state = core.Stored.decode(owner.states.get(parcel_id.encode())).state
    if state is None or state.event_count == 0:
        return view.json({"error": f"unknown parcel {parcel_id}"}, status=404)
    body = fold_.state_to_json(state)
    body |= {k: v for k, v in owner.status_of(state).items() if k.startswith("eta_")}
    body["version"] = state.version
    body["timeline"] = [event_to_json(ev) for ev in state.timeline()]
    return view.json(body)
