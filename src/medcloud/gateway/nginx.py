"""nginx in front of the split services, its configuration rendered from the route table.

What stays in medcloud's own middleware, in every service, so that embedded and split behave
alike: token verification, the policy, rate limits (shared through Redis), security headers and
metrics. What nginx adds: one address for every service, body-size limits before a byte reaches
Python, a request id for requests that come without one, passive health checks and retries.

Retries go only where they cannot write twice. nginx never sends a POST or PATCH to a second
replica once the first has received it (`proxy_next_upstream` without `non_idempotent`); it may
when the first refused the connection, which no replica has seen.

Upstream health is passive (open-source nginx has no active checks): a replica that fails
`MAX_FAILS` times is left out for `FAIL_TIMEOUT`. Readiness (/ready) is the orchestrator's to
act on, Kubernetes' probes or `medcloud split`'s start-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from medcloud import __version__
from medcloud.gateway import documents
from medcloud.gateway.routes import Route, RouteTable

MAX_FAILS = 3
FAIL_TIMEOUT = "10s"
STREAM_TIMEOUT = "1h"
"""How long a server-sent event stream may stay open through the proxy."""

_GATEWAY_HEADER = f"add_header X-Gateway medcloud-nginx/{__version__} always;"
# What nginx answers itself, in the same problem+json shape as every medcloud service.
_PROBLEMS = {
    "not_found": (404, "Not Found", "no medcloud service serves this path"),
    "too_large": (413, "Content Too Large", "the request body is larger than this path accepts"),
    "unavailable": (503, "Service Unavailable", "no replica of the service answered; try again"),
}


def _problem(status: int, title: str, detail: str) -> str:
    return f'{{"type":"about:blank","title":"{title}","status":{status},"detail":"{detail}"}}'


def upstream_name(context: str) -> str:
    """The nginx upstream of one context's service."""
    return f"medcloud_{context}"


def compose_upstreams(contexts: Sequence[str], port: int = 8000) -> dict[str, list[str]]:
    """Each context's service by its Compose (or Kubernetes Service) name."""
    return {context: [f"{context}:{port}"] for context in contexts}


def render(
    table: RouteTable,
    upstreams: Mapping[str, Sequence[str]],
    *,
    listen: str = "8080",
    runtime_dir: Path | None = None,
) -> str:
    """Return a whole nginx.conf.

    `upstreams` gives each context's replicas (`host:port`). With `runtime_dir` nginx keeps its
    pid, logs and buffers there, so an unprivileged process runs it from any directory;
    without it, the paths suit the nginx container image (logs to its standard streams).
    """
    missing = [context for context in table.contexts if not upstreams.get(context)]
    if missing:
        raise ValueError(f"no upstream for {', '.join(missing)}")
    lines = [
        *documents.header("nginx-config").splitlines(),
        "worker_processes auto;",
        *_process_paths(runtime_dir),
        "events {",
        "    worker_connections 4096;",
        "}",
        "http {",
        *_indent(_http_settings(table, runtime_dir)),
        *_indent(_upstream_blocks(table, upstreams)),
        "    server {",
        f"        listen {listen};",
        *_indent(_locations(table), 2),
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _process_paths(runtime_dir: Path | None) -> list[str]:
    if runtime_dir is None:
        return ["pid /tmp/nginx.pid;", "error_log /dev/stderr warn;"]
    return [f"pid {runtime_dir / 'nginx.pid'};", f"error_log {runtime_dir / 'error.log'} warn;"]


def _http_settings(table: RouteTable, runtime_dir: Path | None) -> list[str]:
    # The nginx image's own writable place; a runtime directory keeps everything in it.
    temp = Path("/tmp") if runtime_dir is None else runtime_dir  # noqa: S108
    access = "/dev/stdout" if runtime_dir is None else runtime_dir / "access.log"
    return [
        "server_tokens off;",
        *(
            f"{kind}_temp_path {temp / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
        # Paths without their query strings: a query may name a patient.
        'log_format medcloud escape=json \'{"time":"$time_iso8601","request_id":'
        '"$medcloud_request_id","method":"$request_method","path":"$uri",'
        '"status":$status,"upstream":"$upstream_addr","duration_s":$request_time}\';',
        f"access_log {access} medcloud;",
        f"client_max_body_size {table.max_body_bytes};",
        # A caller's own request id is kept when it is one medcloud would log; any other is
        # replaced by nginx's, so every service logs the same id for one request.
        "map $http_x_request_id $medcloud_request_id {",
        "    default $request_id;",
        '    "~^[A-Za-z0-9._:-]{1,128}$" $http_x_request_id;',
        "}",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $host;",
        "proxy_set_header X-Request-ID $medcloud_request_id;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_connect_timeout 2s;",
        "proxy_read_timeout 60s;",
        "proxy_next_upstream error timeout http_502 http_503 http_504;",
        "proxy_next_upstream_tries 2;",
        "proxy_next_upstream_timeout 10s;",
        _GATEWAY_HEADER,
    ]


def _upstream_blocks(table: RouteTable, upstreams: Mapping[str, Sequence[str]]) -> list[str]:
    lines: list[str] = []
    for context in table.contexts:
        lines.append(f"upstream {upstream_name(context)} {{")
        lines.extend(
            f"    server {address} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT};"
            for address in upstreams[context]
        )
        lines.extend(["    keepalive 32;", "}"])
    return lines


def _locations(table: RouteTable) -> list[str]:
    lines = [
        "location = /health {",
        "    access_log off;",
        "    default_type application/json;",
        '    return 200 \'{"status":"ok"}\';',
        "}",
    ]
    for path, routes in table.paths.items():
        lines.extend(_location(path, routes, table))
    lines += [
        "error_page 413 @too_large;",
        # `=503`: one status for every way a replica failed, the one clients retry after.
        "error_page 502 503 504 =503 @unavailable;",
        "location / {",
        "    default_type application/problem+json;",
        f"    return 404 '{_problem(*_PROBLEMS['not_found'])}';",
        "}",
    ]
    for name in ("too_large", "unavailable"):
        status, title, detail = _PROBLEMS[name]
        lines += [
            f"location @{name} {{",
            "    default_type application/problem+json;",
            # A location's own add_header drops the inherited ones: repeat the gateway's.
            *(
                [f"    {_GATEWAY_HEADER}", "    add_header Retry-After 5 always;"]
                if status == 503
                else []
            ),
            f"    return {status} '{_problem(status, title, detail)}';",
            "}",
        ]
    return lines


def _location(path: str, routes: Sequence[Route], table: RouteTable) -> list[str]:
    route = routes[0]
    # `$` would be read as a variable in an exact match; FHIR's operations ($export) use it.
    opener = (
        f"location = {path} {{"
        if route.literal and "$" not in path
        else (f'location ~ "{route.pattern}" {{')
    )
    body: list[str] = []
    limit = table.body_limit(route)
    if limit is not None:
        # Streamed to the service as it arrives, which counts it against its own limit.
        body += [f"client_max_body_size {limit};", "proxy_request_buffering off;"]
    if any(each.stream for each in routes):
        body += [f"proxy_read_timeout {STREAM_TIMEOUT};", "proxy_buffering off;"]
    body.append(f"proxy_pass http://{upstream_name(route.context)};")
    return [opener, *(f"    {line}" for line in body), "}"]


def _indent(lines: Sequence[str], levels: int = 1) -> list[str]:
    return [("    " * levels + line) if line else line for line in lines]
