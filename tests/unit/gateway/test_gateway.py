"""The route table and the edge configurations rendered from it (nginx, Kong, the Ingress)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from medcloud.app import create_app
from medcloud.bootstrap import ALL_CONTEXTS
from medcloud.config import Settings
from medcloud.gateway import ingress, kong, nginx
from medcloud.gateway.routes import Caller, Route, RouteTable, _check_apart, route_table

ROOT = Path(__file__).resolve().parents[3]
OPS = {"/health", "/ready", "/metrics"}


@pytest.fixture(scope="module")
def table() -> RouteTable:
    return route_table(Settings())


def served(path: str, table: RouteTable) -> Route:
    """The route a proxy picks for `path`: an exact literal first, then the first pattern."""
    for route in table.routes:
        if route.literal and "$" not in route.path and route.path == path:
            return route
    return next(route for route in table.routes if re.fullmatch(route.pattern, path))


def test_every_route_of_the_whole_app_is_in_the_table(table: RouteTable, tmp_path: Path) -> None:
    app = create_app(Settings(var_dir=tmp_path / "var"), workers=False)
    in_app = {
        (path, method.upper())
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if path not in OPS
    }
    in_table = {(route.path, method) for route in table.routes for method in route.methods}
    assert in_app <= in_table
    assert set(table.contexts) == set(ALL_CONTEXTS)


def test_every_path_reaches_the_context_that_serves_it(table: RouteTable) -> None:
    for route in table.routes:
        assert served(route.sample, table).context == route.context, route.path


def test_a_literal_path_beats_another_contexts_pattern(table: RouteTable) -> None:
    stream = served("/api/v1/alerts/stream", table)
    assert (stream.context, stream.stream) == ("notifications", True)
    assert served("/api/v1/alerts/some-alert", table).context == "analytics"


def test_two_contexts_whose_patterns_overlap_cannot_run_apart() -> None:
    mine = Route("devices", "/api/v1/things/{thing_id}", frozenset({"GET"}), Caller.USER)
    theirs = Route("ingest", "/api/v1/things/{other}", frozenset({"POST"}), Caller.USER)
    with pytest.raises(ValueError, match="also matches"):
        _check_apart([mine, theirs])
    _check_apart([mine, Route("ingest", "/api/v1/things/x/y", frozenset({"GET"}), Caller.USER)])


def test_only_calls_that_cannot_write_twice_are_retried(table: RouteTable) -> None:
    assert served("/api/v1/devices/x/data", table).idempotent is False
    assert served("/api/v1/alerts", table).caller is Caller.USER
    conf = nginx.render(table, nginx.compose_upstreams(table.contexts))
    # nginx retries a request another replica received only with `non_idempotent`.
    assert "non_idempotent" not in conf
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in conf


def test_firmware_images_get_their_own_body_limit(table: RouteTable) -> None:
    firmware = served("/api/v1/device-models/m/firmware/1.0.0/content", table)
    limit = table.body_limit(firmware)
    assert limit is not None and limit > table.max_body_bytes
    assert table.body_limit(served("/api/v1/devices/x/data", table)) is None
    conf = nginx.render(table, nginx.compose_upstreams(table.contexts))
    assert f"client_max_body_size {limit};" in conf
    assert f"client_max_body_size {table.max_body_bytes};" in conf


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing: run `make tools`")
        pytest.skip("nginx is missing: run `make tools`")
    return found


def test_nginx_accepts_the_rendered_configuration(
    table: RouteTable, nginx_binary: str, tmp_path: Path
) -> None:
    upstreams = {context: ["127.0.0.1:18001", "127.0.0.1:18002"] for context in table.contexts}
    runtime = tmp_path / "nginx"
    runtime.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx.render(table, upstreams, listen="127.0.0.1:18000", runtime_dir=runtime))
    checked = subprocess.run(
        [nginx_binary, "-t", "-c", str(conf), "-p", str(runtime), "-e", str(runtime / "err.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_kong_checks_peoples_tokens_and_limits_as_medcloud_does(table: RouteTable) -> None:
    settings = Settings()
    urls = {context: f"http://{context}:8000" for context in table.contexts}
    document: dict[str, Any] = yaml.safe_load(
        kong.render(table, settings, urls, jwt_public_key="-----BEGIN PUBLIC KEY-----\n...")
    )
    # One Kong route per path and caller: a path may be public for one method, not another.
    routes = {
        (route["paths"][0].removeprefix("~"), tuple(route["methods"])): route
        for service in document["services"]
        for route in service["routes"]
    }
    assert len(document["services"]) == len(table.contexts)
    for route in table.routes:
        entry = routes[route.pattern, tuple(sorted(route.methods))]
        plugins = {plugin["name"]: plugin["config"] for plugin in entry["plugins"]}
        assert ("jwt" in plugins) is (route.caller is Caller.USER), route.path
        assert plugins["rate-limiting"]["minute"] > 0
    people = next(r for r in table.routes if r.caller is Caller.USER)
    entry = routes[people.pattern, tuple(sorted(people.methods))]
    limits = {p["name"]: p["config"] for p in entry["plugins"]}["rate-limiting"]
    assert (limits["minute"], limits["hour"]) == (100, 1000)
    size = next(p for p in document["plugins"] if p["name"] == "request-size-limiting")
    assert size["config"]["allowed_payload_size"] == settings.max_body_bytes // 2**20 == 10
    assert document["consumers"][0]["jwt_secrets"][0]["key"] == settings.jwt_issuer


@pytest.mark.parametrize(
    ("committed", "command"),
    [
        ("deploy/gateway/nginx.conf", "nginx-config"),
        ("deploy/gateway/kong.yml", "kong-config"),
        ("deploy/k8s/base/ingress.yaml", "ingress"),
    ],
)
def test_the_committed_configuration_is_what_the_route_table_renders(
    table: RouteTable, committed: str, command: str
) -> None:
    renders = {
        "nginx-config": lambda: nginx.render(table, nginx.compose_upstreams(table.contexts)),
        "kong-config": lambda: kong.render(
            table, Settings(), {context: f"http://{context}:8000" for context in table.contexts}
        ),
        "ingress": lambda: ingress.render(table),
    }
    assert (ROOT / committed).read_text() == renders[command](), (
        f"{committed} is stale: medcloud gateway {command} -o {committed}"
    )
