"""The browser's side of a dashboard session: tokens in cookies, and the CSRF check.

The API's own access and refresh tokens are kept in HttpOnly, SameSite=Strict cookies (Secure
over https), so no script on the page can read them and no other site can send them. Every form
post must also carry the per-session CSRF token, which is kept in a cookie of its own and
echoed in a hidden field; a cross-site form cannot read the cookie to echo it.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from medcloud.platform.security import ACCESS_COOKIE
from medcloud.web.client import Tokens

REFRESH_COOKIE = "medcloud_refresh"
CSRF_COOKIE = "medcloud_csrf"
CSRF_FIELD = "csrf"


def tokens_of(request: Request) -> Tokens | None:
    """The session the browser holds, if any."""
    access = request.cookies.get(ACCESS_COOKIE)
    if not access:
        return None
    return Tokens(access, request.cookies.get(REFRESH_COOKIE))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(
        name, value, httponly=True, samesite="strict", secure=_secure(request), path="/"
    )


def keep_tokens(response: Response, request: Request, tokens: Tokens) -> None:
    """Hand the browser a (new) session."""
    _set(response, request, ACCESS_COOKIE, tokens.access)
    if tokens.refresh:
        _set(response, request, REFRESH_COOKIE, tokens.refresh)


def forget_tokens(response: Response, request: Request) -> None:
    """Make the browser drop its session."""
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(
            name, httponly=True, samesite="strict", secure=_secure(request), path="/"
        )


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (kept by `keep_csrf`)."""
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "csrf", None)
    if not token:
        token = secrets.token_urlsafe(32)
        request.state.csrf = token
    return str(token)


def keep_csrf(response: Response, request: Request, *, fresh: bool = False) -> None:
    """Store the CSRF token the page was rendered with, or a new one on signing in."""
    token = secrets.token_urlsafe(32) if fresh else csrf_token(request)
    _set(response, request, CSRF_COOKIE, token)


def csrf_ok(request: Request, submitted: object) -> bool:
    """Whether a form post carries the session's CSRF token."""
    expected = request.cookies.get(CSRF_COOKIE)
    if not expected or not isinstance(submitted, str) or not submitted:
        return False
    return secrets.compare_digest(expected.encode(), submitted.encode())


def local_path(target: object, default: str = "/") -> str:
    """`target` if it is a path on this site, else `default`: never an open redirect."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return default
    return target
