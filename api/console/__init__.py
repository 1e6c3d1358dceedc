"""The investigator's console: a static single-page app served at ``/console``.

The page is plain HTML, CSS and JavaScript with Cytoscape.js vendored as one file
(``static/cytoscape.min.js``, MIT): no Node build step. It calls the same ``/v1`` routes as any
client, with the API key the investigator typed, so the roles and the audit trail are the API's.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)

# The page holds no data, only code; still, a stale app.js after an upgrade would call routes
# the new API no longer has, so the browser revalidates each time (an ETag makes that cheap).
_NO_STALE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
# The page runs only its own scripts: a note or a masked identifier that smuggled in markup
# could not load anything from elsewhere or post the key out.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@router.get("/console")
async def console_page() -> FileResponse:
    """The console's single page (the app routes by URL fragment: ``#/queue``, ``#/ring/<id>``…)."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html",
        headers={**_NO_STALE, "Content-Security-Policy": _CSP, "Referrer-Policy": "no-referrer"},
    )


@router.get("/console/")
async def console_slash() -> RedirectResponse:
    """``/console/`` is the same page; relative asset paths expect ``/console``."""
    return RedirectResponse("/console", status_code=308)


class _StaticFiles(StaticFiles):
    """Static files that the browser revalidates (see ``_NO_STALE``)."""

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        """The file, with revalidation headers."""
        response = super().file_response(*args, **kwargs)
        response.headers.update(_NO_STALE)
        return response


def mount_console(app: FastAPI) -> None:
    """Serve the console page at ``/console`` and its files under ``/console/static``."""
    app.include_router(router)
    app.mount("/console/static", _StaticFiles(directory=STATIC_DIR), name="console-static")
