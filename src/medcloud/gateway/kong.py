"""Kong's declarative configuration (kong.yml), rendered from the route table.

For operators who run Kong as their gateway, as the reference design does: jwt,
rate-limiting (100 a minute and 1,000 an hour), cors, request-size-limiting (10 MB),
response-transformer (X-Service-Version), prometheus and request ids. medcloud's own services
still verify every token and apply the policy; what Kong refuses never reaches them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medcloud import __version__
from medcloud.config import Settings
from medcloud.gateway import documents
from medcloud.gateway.routes import Caller, Route, RouteTable
from medcloud.platform.ratelimit import Tier
from medcloud.platform.security import ALGORITHM

_PER = {"second": "second", "minute": "minute", "hour": "hour", "day": "day"}
LITERAL_PRIORITY = 100
"""A literal path's regex priority: above every pattern, so `/alerts/stream` is not taken by
another service's `/alerts/{alert_id}`."""


def render(
    table: RouteTable,
    settings: Settings,
    upstreams: Mapping[str, str],
    *,
    jwt_public_key: str | None = None,
) -> str:
    """Return kong.yml: a service per context at `upstreams[context]` (a URL), its routes.

    People's tokens are JWTs that Kong verifies with the key medcloud signs them with
    (`jwt_public_key`, PEM; without it the jwt plugin has no consumer to check against and the
    file says so). Devices carry opaque tokens only medcloud can check, so routes devices call
    are left to medcloud.
    """
    services = [
        {
            "name": f"medcloud-{context}",
            "url": upstreams[context],
            "routes": [
                _route(context, index, route, settings, table.body_limit(route))
                for index, route in enumerate(table.served_by(context))
            ],
        }
        for context in table.contexts
    ]
    document: dict[str, Any] = {
        "_format_version": "3.0",
        "_transform": True,
        "services": services,
        "plugins": _global_plugins(table, settings),
    }
    if jwt_public_key:
        document["consumers"] = [
            {
                "username": "medcloud-users",
                "jwt_secrets": [
                    {
                        "key": settings.jwt_issuer,
                        # medcloud signs with Ed25519: the Kong release must know EdDSA;
                        # where it does not, leave tokens to medcloud (no --jwt-public-key).
                        "algorithm": ALGORITHM,
                        "rsa_public_key": jwt_public_key,
                    }
                ],
            }
        ]
    note = (
        ""
        if jwt_public_key
        else "# No public key was given (--jwt-public-key): add the consumer with medcloud's\n"
        "# token-signing key before people's routes will pass Kong's jwt plugin.\n"
    )
    return documents.render("kong-config", [document], note=note)


def _route(
    context: str, index: int, route: Route, settings: Settings, body_limit: int | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": f"{context}-{index}",
        "paths": [f"~{route.pattern}"],
        "methods": sorted(route.methods),
        "strip_path": False,
        "preserve_host": True,
        "regex_priority": LITERAL_PRIORITY if route.literal else 0,
    }
    plugins: list[dict[str, Any]] = []
    if route.caller is Caller.USER:
        plugins.append(
            {
                "name": "jwt",
                "config": {"key_claim_name": "iss", "claims_to_verify": ["exp"]},
            }
        )
    tier = {
        Caller.USER: settings.rate_limits.default,
        Caller.DEVICE_OR_USER: settings.rate_limits.ingest,
        Caller.ANYONE: settings.rate_limits.anonymous,
    }[route.caller]
    plugins.append(_rate_limit(tier, by_token=route.caller is not Caller.ANYONE))
    if body_limit is not None:
        # A route's own plugin takes the place of the global one of the same name.
        plugins.append(_size_limit(body_limit))
    entry["plugins"] = plugins
    return entry


def _rate_limit(spec: str, *, by_token: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "policy": "local",
        "fault_tolerant": True,
        "hide_client_headers": False,
    }
    for policy in Tier.parse("kong", spec).policies:
        unit = policy.item.GRANULARITY.name
        if policy.item.multiples != 1 or unit not in _PER:
            raise ValueError(f"Kong limits whole {', '.join(_PER)}s only, not {policy.per}")
        config[_PER[unit]] = policy.quota
    # Every person's token names one Kong consumer (medcloud's issuer), so counting by consumer
    # would put everyone in one budget; counting by the token keeps one per session, as
    # medcloud counts per user. Calls without credentials count per address.
    if by_token:
        config |= {"limit_by": "header", "header_name": "Authorization"}
    else:
        config["limit_by"] = "ip"
    return {"name": "rate-limiting", "config": config}


def _size_limit(limit: int) -> dict[str, Any]:
    return {
        "name": "request-size-limiting",
        "config": {
            "allowed_payload_size": max(1, limit // (1024 * 1024)),
            "size_unit": "megabytes",
            "require_content_length": False,
        },
    }


def _global_plugins(table: RouteTable, settings: Settings) -> list[dict[str, Any]]:
    http = settings.http
    return [
        _size_limit(table.max_body_bytes),
        {
            "name": "cors",
            "config": {
                "origins": list(http.cors_origins),
                "methods": ["GET", "POST", "PUT", "PATCH", "DELETE"],
                "headers": _sorted(
                    ["Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"]
                ),
                "exposed_headers": _sorted(
                    ["Location", "Retry-After", "RateLimit", "RateLimit-Policy", "X-Request-ID"]
                ),
                "credentials": http.cors_allow_credentials,
                "max_age": http.cors_max_age_seconds,
            },
        },
        {
            "name": "response-transformer",
            "config": {
                "add": {"headers": [f"X-Service-Version:{settings.service_name}/{__version__}"]}
            },
        },
        {
            "name": "correlation-id",
            "config": {"header_name": "X-Request-ID", "generator": "uuid", "echo_downstream": True},
        },
        {"name": "prometheus", "config": {"status_code_metrics": True, "latency_metrics": True}},
    ]


def _sorted(values: Sequence[str]) -> list[str]:
    return sorted(values)
