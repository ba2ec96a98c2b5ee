"""What every page of the dashboard shares: templates, the API as the signed-in user, and
the `page` wrapper that signs the browser in first and answers the API's refusals."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from medcloud.web import session
from medcloud.web.client import Api, ApiRefused, Tokens

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def humane(name: object) -> str:
    """`heart_rate_high` as people read it."""
    return str(name or "").replace("_", " ")


templates.env.filters["humane"] = humane

WARD_PAGE = 100
"""Patients shown on the ward overview at most (one page of the patient list)."""

# Pages set their own policy (the edge's is for API answers): scripts and styles from this
# site only, nothing framed, forms posted here only.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

Handler = Callable[[Request, Api], Awaitable[Response]]


def client_of(request: Request) -> tuple[str, int] | None:
    return (request.client.host, request.client.port) if request.client else None


def api_for(request: Request, tokens: Tokens | None, *, may_renew: bool = True) -> Api:
    """The API as the browser's user, from the client's own address (for audit and throttling)."""
    return Api(request.app, tokens, client=client_of(request), may_renew=may_renew)


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    """Render a template with what every page needs (the CSRF token, the signed-in user)."""
    response = templates.TemplateResponse(
        request,
        name,
        {"csrf": session.csrf_token(request), "user": None, **context},
        status_code=status,
    )
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    session.keep_csrf(response, request)
    return response


def to_sign_in(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/sign-in?next={quote(target)}"
    response: Response
    if request.headers.get("hx-request"):
        # A fragment refresh must move the whole page, not put the sign-in form in its place.
        response = Response(status_code=204, headers={"HX-Redirect": location})
    else:
        response = RedirectResponse(location, status_code=303)
    session.forget_tokens(response, request)
    return response


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Run a page as the signed-in user: sign-in first, the API's refusals as the answer."""

    async def endpoint(request: Request) -> Response:
        tokens = session.tokens_of(request)
        if tokens is None:
            return to_sign_in(request)
        if request.method == "POST":
            form = await request.form()
            if not session.csrf_ok(request, form.get(session.CSRF_FIELD)):
                return render(
                    request,
                    "error.html",
                    status=403,
                    title="Form expired",
                    detail="This form could not be checked. Reload the page and try again.",
                )
        api = api_for(request, tokens)
        try:
            response = await handler(request, api)
        except ApiRefused as refused:
            if refused.status == 401:
                return to_sign_in(request)
            response = render(
                request,
                "error.html",
                status=refused.status,
                title=refused.title,
                detail=refused.detail,
                user=getattr(request.state, "user", None),
            )
        if api.renewed is not None:
            session.keep_tokens(response, request, api.renewed)
        return response

    return endpoint


async def me(request: Request, api: Api) -> dict[str, Any]:
    user: dict[str, Any] = await api.get("/api/v1/users/me")
    request.state.user = user
    return user


def parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
