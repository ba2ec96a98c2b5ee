"""The dashboard's session helpers: cookies, the CSRF check, and where a form may send you."""

from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from medcloud.platform.security import ACCESS_COOKIE
from medcloud.web import session
from medcloud.web.client import ApiRefused, Tokens


def request(cookies: dict[str, str] | None = None, scheme: str = "http") -> Request:
    header = "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": scheme,
            "path": "/",
            "query_string": b"",
            "headers": [(b"cookie", header.encode())] if header else [],
            "server": ("medcloud.test", 443 if scheme == "https" else 80),
        }
    )


def set_cookies(response: Response) -> list[str]:
    return [v.decode() for k, v in response.raw_headers if k == b"set-cookie"]


def test_tokens_are_kept_http_only_and_strict_and_secure_over_https() -> None:
    response = Response()

    session.keep_tokens(response, request(scheme="https"), Tokens("access", "refresh"))

    [access, refresh] = set_cookies(response)
    assert access.startswith(f"{ACCESS_COOKIE}=access;")
    assert refresh.startswith(f"{session.REFRESH_COOKIE}=refresh;")
    for cookie in (access, refresh):
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Secure" in cookie


def test_tokens_are_not_marked_secure_over_plain_http() -> None:
    response = Response()

    session.keep_tokens(response, request(), Tokens("access", None))

    [access] = set_cookies(response)
    assert "Secure" not in access


def test_forgetting_the_session_expires_both_cookies() -> None:
    response = Response()

    session.forget_tokens(response, request())

    assert all("Max-Age=0" in cookie for cookie in set_cookies(response))


def test_no_access_cookie_means_no_session() -> None:
    assert session.tokens_of(request({session.REFRESH_COOKIE: "r"})) is None
    assert session.tokens_of(request({ACCESS_COOKIE: "a"})) == Tokens("a", None)


@pytest.mark.parametrize("submitted", [None, "", "other-token", 42])
def test_a_post_without_the_sessions_csrf_token_is_refused(submitted: object) -> None:
    assert not session.csrf_ok(request({session.CSRF_COOKIE: "the-token"}), submitted)


def test_a_post_is_refused_when_the_browser_holds_no_csrf_token() -> None:
    assert not session.csrf_ok(request(), "anything")


def test_a_post_with_the_sessions_csrf_token_is_accepted() -> None:
    assert session.csrf_ok(request({session.CSRF_COOKIE: "the-token"}), "the-token")


def test_a_fresh_csrf_token_replaces_the_one_held_before_signing_in() -> None:
    response = Response()

    session.keep_csrf(response, request({session.CSRF_COOKIE: "fixed-by-someone"}), fresh=True)

    [cookie] = set_cookies(response)
    assert "fixed-by-someone" not in cookie


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/patients/1", "/patients/1"),
        ("/alarms?state=active", "/alarms?state=active"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_a_form_only_ever_sends_you_to_a_page_of_this_site(target: object, expected: str) -> None:
    assert session.local_path(target) == expected


def test_an_api_refusal_keeps_the_problems_title_and_status() -> None:
    refused = ApiRefused.of(
        httpx.Response(404, json={"title": "Not found", "detail": "no such patient"})
    )

    assert (refused.status, refused.title, refused.detail) == (404, "Not found", "no such patient")
    assert ApiRefused.of(httpx.Response(502, text="<html>")).status == 502
