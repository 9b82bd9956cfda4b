"""The report's downloads: the PDF of the report (as `stripe-reports report --pdf` writes it)
and a CSV of each widget (as `stripe-reports widget --format csv` prints it)."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.client_config import client_config
from engine.report_print import RenderError, print_report
from reports.widgets import (
    UnknownWidget,
    get_widget,
    render_csv,
    resolve_compare,
    resolve_period,
    run_widgets,
)

ClientOf = Callable[[Request], Awaitable[str]]


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def _pdf_bytes(client_id: str, start: date, end: date, paper: str, compare: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="stripe-reports-pdf-") as folder:
        return print_report(client_id, start, end, Path(folder) / "report.pdf",
                            paper, compare).read_bytes()


def export_routes(client_of: ClientOf) -> list[Route]:
    """The routes, given the app's check of a URL's client (400/404 before anything runs)."""

    async def report_pdf(request: Request) -> Response:
        client_id = await client_of(request)
        q = request.query_params
        paper = q.get("paper") or "A4"
        if paper not in ("A4", "Letter"):
            return JSONResponse({"error": "paper is A4 or Letter"}, status_code=400)
        try:  # the period is checked here, so a bad one is a 400 and not a failed print
            period = resolve_period(q.get("start"), q.get("end"), datetime.now(UTC),
                                    client_config(client_id).timezone)
            compare = resolve_compare(q.get("compare"))
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        try:
            body = await run_in_threadpool(_pdf_bytes, client_id, period.start, period.end,
                                           paper, compare)
        except RenderError as error:
            return JSONResponse({"error": str(error)}, status_code=503)
        name = f"{client_id}-{period.start}-{period.end}.pdf"
        return Response(body, media_type="application/pdf", headers=_attachment(name))

    async def widget_csv(request: Request) -> Response:
        client_id = await client_of(request)
        q = request.query_params
        state = request.app.state.reports
        try:
            widget = get_widget(request.path_params["widget"])
            result = await run_in_threadpool(
                lambda: run_widgets(client_id, [widget], q.get("start"), q.get("end"),
                                    q.get("currency"), warehouse=state.warehouse,
                                    store=state.store)[0])
        except UnknownWidget as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        name = f"{client_id}-{result.widget}-{result.start}-{result.end}.csv"
        return Response(render_csv(result), media_type="text/csv; charset=utf-8",
                        headers=_attachment(name))

    return [
        Route("/clients/{client_id}/report.pdf", report_pdf),
        Route("/clients/{client_id}/widgets/{widget}.csv", widget_csv),
    ]
