"""Settings of the HTTP edge: browser access, security headers, operator pages and rate limits
(part of the settings tree in `medcloud.config`, kept apart to keep that file readable)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator


class HttpSettings(BaseModel):
    """The HTTP edge: browser access from other origins, security headers, operator pages."""

    cors_origins: list[str] = Field(default_factory=list)
    """Web origins (`https://host[:port]`) whose pages may call the API from a browser; empty
    allows none. `*` allows any origin, and is refused with `cors_allow_credentials`."""
    cors_allow_credentials: bool = False
    """Let those pages send cookies. The API authenticates with bearer tokens, which need no
    credentials mode; turn this on only for a front end that relies on cookies."""
    cors_max_age_seconds: int = Field(default=600, ge=0, le=86_400)
    """How long a browser may reuse an answered preflight."""
    hsts_seconds: int = Field(default=31_536_000, ge=0)
    """Strict-Transport-Security max-age sent on answers over TLS, or from behind a TLS proxy
    whose X-Forwarded-Proto the server trusts; 0 sends none."""
    operator_token: SecretStr | None = None
    """Bearer token for /metrics, /docs, /redoc and /openapi.json in the production profile
    (what Prometheus and operators present); unset there, those answer 404."""

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> HttpSettings:
        for origin in self.cors_origins:
            if origin == "*":
                if self.cors_allow_credentials:
                    raise ValueError("cors_origins '*' cannot be combined with credentials")
                continue
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or not rest or "/" in rest:
                raise ValueError(
                    f"cors_origins: {origin!r} is not an origin (scheme://host[:port])"
                )
        return self


class RateLimitSettings(BaseModel):
    """Requests each caller may make, in `limits` notation: `100/minute;1000/hour` holds a
    caller to both. Counted per process in memory, or across replicas in Redis with
    `redis_url`; /health, /ready and /metrics are never limited."""

    enabled: bool = True
    """Refuse callers over their limits with 429; off, nothing is counted or announced."""
    default: str = "100/minute;1000/hour"
    """Each signed-in user's limits (the reference design's gateway allows each client 100
    requests a minute and 1,000 an hour)."""
    ingest: str = "300/minute;10000/hour"
    """Each device's limits, its readings above all. A device reading once a second sends 60
    requests a minute and 3,600 an hour: it may send every reading twice, or catch up after an
    outage at five a second, and stay under them, while one stuck in a loop is stopped within
    the minute."""
    anonymous: str = "100/minute;1000/hour"
    """Each client address's limits for calls without valid credentials (sign-in, token
    refresh, invitations). Everyone behind one NAT shares them, and each session refreshes its
    token once per `access_token_minutes`: raise them where a hospital signs in from one
    address."""

    @field_validator("default", "ingest", "anonymous")
    @classmethod
    def _parses(cls, value: str) -> str:
        # Imported here: most commands never limit anything, and `limits` takes a while to load.
        from limits import parse_many

        parse_many(value)
        return value
