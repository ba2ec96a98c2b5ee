"""The Kubernetes Ingress (ingress-nginx) for the split services, from the route table.

Annotations belong to an Ingress as a whole, so routes that need other limits get an Ingress of
their own: large bodies (firmware images) and server-sent event streams. ingress-nginx makes
a request id for requests without one and passes X-Request-ID on by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medcloud.gateway import documents as documents_yaml
from medcloud.gateway.nginx import STREAM_TIMEOUT
from medcloud.gateway.routes import Route, RouteTable

SERVICE_PORT = 80
_SHARED = {
    "nginx.ingress.kubernetes.io/use-regex": "true",
    "nginx.ingress.kubernetes.io/proxy-next-upstream": "error timeout http_502 http_503 http_504",
    "nginx.ingress.kubernetes.io/proxy-next-upstream-tries": "2",
    "nginx.ingress.kubernetes.io/proxy-connect-timeout": "2",
    "nginx.ingress.kubernetes.io/ssl-redirect": "true",
}


def service_name(context: str) -> str:
    """The Kubernetes Service of one context's API."""
    return f"medcloud-{context}"


def render(
    table: RouteTable,
    *,
    host: str = "medcloud.example.org",
    tls_secret: str = "medcloud-tls",  # noqa: S107  (a Secret's name)
) -> str:
    """Return the Ingress objects as one YAML stream."""
    groups: dict[str, tuple[dict[str, str], list[Route]]] = {
        "medcloud": (
            {"nginx.ingress.kubernetes.io/proxy-body-size": _size(table.max_body_bytes)},
            [],
        ),
    }
    for route in table.routes:
        limit = table.body_limit(route)
        if limit is not None:
            name = "medcloud-large-bodies"
            annotations = {
                "nginx.ingress.kubernetes.io/proxy-body-size": _size(limit),
                "nginx.ingress.kubernetes.io/proxy-request-buffering": "off",
            }
        elif route.stream:
            name = "medcloud-streams"
            annotations = {
                "nginx.ingress.kubernetes.io/proxy-read-timeout": str(_seconds(STREAM_TIMEOUT)),
                "nginx.ingress.kubernetes.io/proxy-buffering": "off",
            }
        else:
            name = "medcloud"
            annotations = {}
        groups.setdefault(name, (annotations, []))[1].append(route)
    documents = [
        _ingress(name, annotations, routes, host, tls_secret)
        for name, (annotations, routes) in groups.items()
        if routes
    ]
    return documents_yaml.render("ingress", documents)


def _ingress(
    name: str, annotations: dict[str, str], routes: Sequence[Route], host: str, tls_secret: str
) -> dict[str, Any]:
    paths = []
    seen: set[str] = set()
    for route in routes:
        if route.path in seen:
            continue
        seen.add(route.path)
        exact = route.literal and "$" not in route.path
        paths.append(
            {
                # Exact before any pattern, as nginx's `location =`; a pattern is anchored at
                # both ends so no two services' patterns take each other's paths.
                "path": route.path if exact else route.pattern.removeprefix("^"),
                "pathType": "Exact" if exact else "ImplementationSpecific",
                "backend": {
                    "service": {
                        "name": service_name(route.context),
                        "port": {"number": SERVICE_PORT},
                    }
                },
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": _SHARED | annotations},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": [host], "secretName": tls_secret}],
            "rules": [{"host": host, "http": {"paths": paths}}],
        },
    }


def _size(limit: int) -> str:
    return f"{max(1, -(-limit // (1024 * 1024)))}m"


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(duration[:-1]) * units[duration[-1]]
