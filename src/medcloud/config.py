"""One typed settings tree; its defaults are the embedded deployment (SQLite, in-process bus)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from medcloud.edge_settings import HttpSettings, RateLimitSettings


class AlertSettings(BaseModel):
    """The built-in (default) alarm rules and the alarm lifecycle's limits."""

    heart_rate_low: float = 40.0
    """Heart rate (bpm) below which the default rule raises a high-priority alarm."""
    heart_rate_high: float = 120.0
    """Heart rate (bpm) above which the default rule raises a high-priority alarm."""
    freshness_seconds: float = 300.0
    """Only readings measured within this long of now raise or resolve a live alarm; older
    (backfilled) readings are stored and scored but page no one."""
    max_silence_seconds: float = 120.0
    """Longest an alarm may be silenced (audio paused) at once."""
    news2_window_seconds: float = 900.0
    """NEWS2 takes each measured vital sign from within this long before its newest one."""
    news2_charted_window_seconds: float = 43_200.0
    """…and consciousness (ACVPU) and oxygen, which nurses chart less often, from this long."""
    advisory_check_seconds: float = 60.0
    """How often predicted crossings, missing data and the anomaly model are checked (off the
    live path); 0 turns the check off."""
    forecast_history_hours: float = 3.0
    """History a forecast is fitted on."""
    forecast_horizon_minutes: float = 30.0
    """How far ahead the predicted-crossing rule looks by default."""


class BusSettings(BaseModel):
    """How events leave the outbox and reach their consumers."""

    exchange: str = "medical_data"
    """Topic exchange every event is published on."""
    queue_prefix: str = "medcloud"
    """Prefix of each consumer's durable queue."""
    max_attempts: int = 5
    """Deliveries of one event to one consumer before it is dead-lettered."""
    retry_backoff_seconds: float = 0.5
    """First retry delay; each further retry doubles it."""
    relay_batch_size: int = 500
    """Outbox rows claimed by the relay at once."""
    relay_poll_seconds: float = 0.5
    """How often the relay looks for rows committed by other processes."""
    relay_claim_seconds: float = 30.0
    """How long a claimed outbox row stays with one relay before another may take it."""
    prefetch: int = 64
    """Unacknowledged messages a RabbitMQ consumer holds at once."""


class IdentitySettings(BaseModel):
    """Sign-in, sessions and emergency access."""

    @model_validator(mode="before")
    @classmethod
    def _no_lockout(cls, data: Any) -> Any:
        # Ignored like any unknown setting, it would leave an operator believing accounts lock.
        if isinstance(data, dict):
            for name in ("lockout_threshold", "lockout_minutes"):
                if name in data:
                    raise ValueError(
                        f"identity.{name} was removed: accounts no longer lock; set "
                        "identity.failures_before_wait and identity.account_failures_before_wait "
                        "(see docs/security.md)"
                    )
        return data

    password_min_length: int = 12
    """Shortest password accepted."""
    argon2_time_cost: int = 3
    """argon2id iterations (RFC 9106 second recommendation: 3)."""
    argon2_memory_kib: int = 65536
    """argon2id memory per hash, in KiB (64 MiB)."""
    argon2_parallelism: int = 4
    """argon2id lanes."""
    failures_before_wait: int = 5
    """Failed sign-ins one source address may make against one email before it must wait
    between tries: room for a user's typos; only that address waits, never the account."""
    first_wait_seconds: float = 1
    """That first wait; each further failure doubles it (1 s, 2 s, 4 s …)."""
    longest_wait_seconds: float = 900
    """The longest wait (15 minutes, after ten doublings): then about 4 guesses an hour."""
    account_failures_before_wait: int = 20
    """Failed sign-ins against one account from all addresses after which every address it
    has not signed in from lately waits as above too: a botnet's ceiling, of four addresses'
    free failures, so one user's typos on a few devices stay under it."""
    known_address_days: float = 30
    """An address the user signed in from this recently never waits for the account-wide
    count, so an attacker elsewhere cannot keep them out."""
    failures_forgotten_after_hours: float = 24
    """Counts of failures start afresh after this long without one (past the last wait)."""
    address_failures_per_window: int = 100
    """Failed sign-ins (of any email) one source address may make per window before it gets
    429: a ward of 30 behind one NAT with two typos each at a shift change makes 60."""
    address_window_seconds: float = 900
    """That window, fixed (15 minutes: a shift change); successful sign-ins do not count."""
    session_idle_minutes: float = 30
    """A refresh token unused this long expires (idle session timeout)."""
    session_max_hours: float = 12
    """No session outlives this, however active."""
    invitation_hours: float = 72
    """How long an invitation link stays valid."""
    break_glass_minutes: float = 60
    """How long emergency access to a patient lasts."""


class IngestSettings(BaseModel):
    """Transports, the data-quality gate and the readings store."""

    max_decompressed_bytes: int = 64 * 1024 * 1024
    """A gzip request body that inflates beyond this is refused with 413 (zip bombs)."""
    max_past_drift_seconds: float = 86_400.0
    """Readings stamped further in the past than this (at receipt) are stored but flagged."""
    quarantine_max_per_request: int = 100
    """Problems of one rejected request kept in quarantine; the rest are only counted."""
    quarantine_payload_bytes: int = 2048
    """Bytes of a rejected reading kept in quarantine with its reason."""
    idempotency_ttl_seconds: float = 86_400.0
    """How long the answer to a request with an Idempotency-Key is replayed."""
    writer_batch_rows: int = 5000
    """The micro-batch writer commits once this many rows are waiting."""
    writer_batch_ms: float = 10.0
    """…or once no new rows have arrived for this long, or a request has waited this long…"""
    writer_stream_batch_ms: float = 200.0
    """…or an MQTT message has waited this long: devices keep several messages in flight, so
    theirs may wait for more to share a batch, and a steady stream is committed in fewer, larger
    batches, each paying for its transaction and events once."""
    writer_max_pending_rows: int = 200_000
    """Rows waiting for the writer beyond which HTTP answers 503 with Retry-After."""
    partitions_ahead_months: int = 3
    """Monthly reading partitions created ahead of time (PostgreSQL)."""
    retention_days: int = 0
    """Partitions wholly older than this are dropped (PostgreSQL); 0 keeps everything."""
    partition_check_seconds: float = 3600.0
    """How often partitions are created ahead and expired ones dropped."""
    max_chart_points: int = 1000
    """Buckets per measurement type a downsampled range returns at most."""
    upload_poll_seconds: float = 5.0
    """How often the embedded watcher looks for files under `uploads/`; 0 turns it off (set 0
    when S3 event notifications invoke the upload function instead)."""
    upload_max_bytes: int = 16 * 1024 * 1024
    """Largest uploaded readings file read (as stored, before gzip is inflated)."""


class DevicesSettings(BaseModel):
    """Device registry, status monitoring and firmware rollouts."""

    @model_validator(mode="before")
    @classmethod
    def _no_object_dir(cls, data: Any) -> Any:
        # Ignored like any unknown setting, it would have firmware looked for in the wrong place.
        if isinstance(data, dict) and "object_dir" in data:
            raise ValueError(
                "devices.object_dir (MEDCLOUD_DEVICES__OBJECT_DIR) was removed: "
                "set MEDCLOUD_OBJECTS__URL=file:///that/directory instead"
            )
        return data

    default_reporting_interval_seconds: float = 60.0
    """Expected reporting interval of a device whose model names none."""
    offline_after_missed_intervals: float = 3.0
    """Reporting intervals a device may stay silent before it counts as offline."""
    status_check_seconds: float = 5.0
    """How often the status monitor looks for silent devices and stalled updates."""
    low_battery_percent: float = 20.0
    """A heartbeat at or below this battery level raises a technical alert."""
    firmware_max_bytes: int = 64 * 1024 * 1024
    """Largest firmware image accepted (the edge's `max_body_bytes` applies too)."""
    update_timeout_seconds: float = 3600.0
    """A firmware update silent this long counts as failed."""
    maintenance_window: str = Field(
        default="02:00-05:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
    )
    """Daily window (UTC, `HH:MM-HH:MM`, may span midnight) in which devices assigned to a
    patient may update, unless a campaign overrides it."""


class ObjectStoreSettings(BaseModel):
    """Where firmware images and uploaded readings files are kept."""

    url: str = Field(default="", pattern=r"^(|file://.+|s3://[^/]+(/.*)?)$")
    """`s3://bucket/prefix` for an S3-compatible service, `file:///path` for a directory; empty
    means the directory `var_dir/objects`."""
    endpoint_url: str = ""
    """Endpoint of an S3-compatible service (MinIO, Ceph, …); empty means AWS S3."""
    region: str = ""
    """S3 region; empty means boto3's default (environment, config file)."""
    access_key_id: str = ""
    """S3 access key id; empty means boto3's default credentials (environment, IAM role)."""
    secret_access_key: SecretStr | None = None
    """S3 secret access key, with `access_key_id`."""


class MqttSettings(BaseModel):
    """The MQTT transport: the broker, the ingest subscriber's session, device credentials."""

    url: str = Field(default="", pattern=r"^(|mqtts?://.+)$")
    """`mqtt://user:password@host:1883` (`mqtts://` for TLS): the broker devices publish to, with
    the ingest workers' own credentials; empty turns MQTT off."""
    subscribe: bool = True
    """Run the telemetry subscriber where background loops run (`worker`, `serve`); turn it off
    in processes that should only provision device credentials."""
    client_id: str = "medcloud-ingest"
    """The subscriber's client id; keep it stable per worker, so a restarted worker resumes the
    broker session that holds its unacknowledged messages."""
    worker_client_ids: list[str] = Field(default_factory=list)
    """Every subscribing worker's client id (`["medcloud-ingest-0", "medcloud-ingest-1"]`), set
    alike on every process of a split deployment: when the broker is first provisioned their
    sessions are made, subscribed, so telemetry published before the workers first start waits
    for them. Empty: only this process's own id, if it subscribes."""
    share_group: str = Field(default="medcloud", pattern=r"^[^/+#]+$")
    """Shared-subscription group: the workers in it split the devices' telemetry."""
    session_expiry_seconds: int = Field(default=7 * 24 * 3600, ge=0)
    """How long the broker keeps a worker's session, and queues its messages, while it is away."""
    receive_maximum: int = Field(default=2000, ge=1, le=65535)
    """Messages the broker may hand a worker before it acknowledges any (MQTT v5 Receive
    Maximum): how many the worker handles at once, and what it holds in memory at most."""
    keepalive_seconds: int = Field(default=30, ge=5)
    """MQTT keepalive of the subscriber's connection."""
    reconnect_max_seconds: float = 30.0
    """Longest wait between two attempts to reach the broker (the wait doubles from 0.5 s)."""
    retry_seconds: float = 0.2
    """Wait (jittered) before handling again a message the backlogged writer refused; after other
    faults (database down) it doubles up to 5 s. The message stays unacknowledged meanwhile."""
    device_cache_seconds: float = 10.0
    """How long the subscriber remembers a device found by its topic; a reassignment to another
    patient applies to MQTT readings after at most this."""
    admin_username: str = ""
    """Dynamic-security admin client of the same broker; set it to give every registered device
    MQTT credentials (and the workers theirs). Empty: the platform provisions nothing."""
    admin_password: SecretStr | None = None
    """Password of that admin client."""
    admin_timeout_seconds: float = 5.0
    """How long a credential change waits for the broker before the request answers 503."""


class AuditSettings(BaseModel):
    """The tamper-evident audit log."""

    signing_key: SecretStr | None = None
    """PEM Ed25519 key that signs checkpoints; empty means a key file in `var_dir`."""
    checkpoint_every: int = 1000
    """Entries between two signed checkpoints."""


class NotificationSettings(BaseModel):
    """Channels, escalation and delivery of the notifications context."""

    smtp_host: str = ""
    """SMTP server for email; empty turns the email channel off."""
    smtp_port: int = 25
    smtp_security: Literal["plain", "starttls", "tls"] = "plain"
    """`starttls` upgrades a plain connection; `tls` connects with TLS (port 465)."""
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    smtp_connections: int = 4
    """SMTP connections kept open and reused."""
    mail_from: str = "medcloud <alarms@medcloud.localhost>"
    sms_base_url: str = ""
    """Root of a Twilio-compatible REST API (e.g. `https://api.twilio.com/2010-04-01`); empty
    turns the SMS channel off."""
    sms_account_sid: str = ""
    sms_auth_token: SecretStr | None = None
    sms_from: str = ""
    public_url: str = "http://127.0.0.1:8000"
    """Where people reach this medcloud: links in messages and the SMS status callback."""
    link_secret: SecretStr | None = None
    """Key that signs acknowledge links in emails; empty means a key file in `var_dir`."""
    link_minutes: int = 30
    """How long an acknowledge link works (once)."""
    webhook_allow_loopback: bool = False
    """Accept webhook URLs on this machine (127.0.0.0/8, ::1, localhost): for development.
    Link-local addresses (cloud metadata services) are refused always."""
    webhook_allow_private: bool = False
    """Accept webhook URLs on private networks (10/8, 172.16/12, 192.168/16, fc00::/7, …): for
    a receiver on the hospital's own network. Off, only public addresses are called."""
    webhook_tolerance_seconds: int = 300
    """Replay window receivers are told to allow between a webhook's timestamp and its arrival."""
    max_attempts: int = 4
    """Attempts on one channel before falling back to the recipient's next channel."""
    retry_base_seconds: float = 1.0
    """First retry delay; it doubles with each attempt, with full jitter."""
    retry_max_seconds: float = 60.0
    breaker_failures: int = 5
    """Consecutive failures that open a channel's circuit (and raise a technical alarm)."""
    breaker_reset_seconds: float = 30.0
    """How long an open circuit waits before one probe delivery is let through."""
    senders: int = 16
    """Deliveries in flight at once per worker."""
    poll_seconds: float = 1.0
    """How often the escalation and delivery loops look for due work when nothing woke them."""
    claim_seconds: float = 60.0
    """How long a claimed delivery stays with its worker; a killed worker's claims expire."""
    stream_poll_seconds: float = 0.5
    """How often a live stream looks for new events written by another process."""
    stream_keep_days: float = 2.0
    """How long events stay in the live stream's feed for clients to resume from."""
    demo_mailbox_port: int = 0
    """With a port, `medcloud serve` starts a local SMTP mailbox there (Maildir in `var_dir`)
    and sends email to it: the demo shows alarms as email without any account anywhere."""
    sns_topic_arn: str = Field(default="", pattern=r"^(|arn:aws[\w-]*:sns:[\w-]+:\d{12}:[\w.-]+)$")
    """SNS topic every new and escalated alarm is also published to (region from the ARN, AWS
    credentials and endpoint as boto3 finds them); empty: none."""


class ReportsSettings(BaseModel):
    """Daily and on-demand reports."""

    schedule: str = Field(default="0 2 * * *", pattern=r"^[\d,*]+ [\d,*]+ \* \* \*$")
    """When the daily run starts, as cron in UTC (minutes and hours); it reports the day before."""
    catch_up_days: int = Field(default=7, ge=1, le=366)
    """Days missed while nothing ran that the next run makes up, at most."""
    patient_reports: bool = False
    """Make a report of every monitored patient daily too (organisations and wards always)."""
    link_minutes: int = Field(default=15, ge=1, le=7 * 24 * 60)
    """How long a report's signed download links work."""
    link_secret: SecretStr | None = None
    """Key that signs download links; empty means a key file in `var_dir`."""


class MllpSettings(BaseModel):
    """HL7 v2 over MLLP: the listener bedside monitors and their gateways send to."""

    port: int | None = None
    """Listen on this port when set (the HL7 convention is 2575); nothing listens otherwise."""
    host: str = "127.0.0.1"
    """The address the listener binds to."""
    max_message_bytes: int = 1024 * 1024
    """A frame larger than this is answered AR and the connection closed."""
    read_timeout_seconds: float = 30.0
    """A sender silent this long within a message is disconnected."""
    idle_timeout_seconds: float = 600.0
    """A connection with no message for this long is closed (senders reconnect)."""
    max_connections: int = 256
    """Connections beyond this are closed at once rather than queued."""
    tls_certificate: str = ""
    """PEM certificate (with its chain) to serve MLLP over TLS; empty: plain TCP."""
    tls_key: str = ""
    """PEM private key of `tls_certificate`."""
    default_interface: bool = True
    """Give the bootstrap organisation an interface that accepts 127.0.0.1 and registers
    patients it does not know (the embedded demo); production defines its own."""
    processed_ttl_days: int = 30
    """How long a message's control id is remembered to answer a repeat without storing it."""


class Settings(BaseSettings):
    """medcloud settings, read from `MEDCLOUD_*` environment variables (nested with `__`)."""

    model_config = SettingsConfigDict(
        env_prefix="MEDCLOUD_", env_nested_delimiter="__", extra="ignore"
    )

    profile: Literal["development", "production"] = "development"
    """`production` hides the operator pages (/metrics, /docs, /openapi.json) behind
    `http.operator_token`; `development` serves them to anyone who can reach the server."""
    var_dir: Path = Path("var")
    """Directory for the embedded database, generated keys and object storage."""
    database_url: str = ""
    """SQLAlchemy async URL; empty means a SQLite file in `var_dir`."""
    database_read_url: str = Field(default="", pattern=r"^(|postgresql\+asyncpg://.+)$")
    """A PostgreSQL read replica of `database_url` for lists, charts and reports, which may lag
    the primary by its replay delay; reads that must be fresh stay on the primary."""
    bus_url: str = "memory://"
    """`memory://` for the in-process bus, `amqp://…` for RabbitMQ."""
    redis_url: str = ""
    """`redis://…` for a shared cache; empty means an in-process cache."""
    redis_prefix: str = "medcloud:"
    """Prefix of every Redis key, so deployments can share one Redis."""
    migrate_on_start: bool = True
    """Apply database migrations when the server starts."""
    db_pool_size: int = 10
    """Connections per process in the PostgreSQL pool."""
    lease_seconds: float = Field(default=15.0, ge=1.0)
    """How long a process leads a singleton loop unrenewed; then another may take it over."""
    gc_young_threshold: int = 50_000
    """Allocations between the garbage collector's young passes in `serve` and `worker`
    (CPython's default is 700, which costs a busy ingest process much of its CPU); 0 keeps
    CPython's defaults."""

    service_name: str = "medcloud"
    """Name reported in logs and the X-Service-Version header."""
    max_body_bytes: int = 10 * 1024 * 1024
    """Request bodies larger than this are refused with 413."""
    log_level: str = "INFO"
    """Minimum level of the JSON logs."""

    bootstrap_admin_email: str | None = None
    """Email of the admin created on first start, if no user exists yet."""
    bootstrap_admin_password: SecretStr | None = None
    """Password of that admin."""
    bootstrap_organisation: str = "Default"
    """Name of the organisation created with the first admin."""

    jwt_private_key: SecretStr | None = None
    """PEM Ed25519 key that signs access tokens; empty means a key file in `var_dir`."""
    jwt_issuer: str = "medcloud"
    """`iss` claim of issued tokens, checked on every request."""
    jwt_audience: str = "medcloud-api"
    """`aud` claim of issued tokens, checked on every request."""
    access_token_minutes: int = 15
    """Lifetime of an access token."""
    jwt_previous_public_keys: list[str] = Field(default_factory=list)
    """PEM public keys of retired signing keys whose tokens are still accepted (key rotation)."""
    jwt_jwks_url: str = ""
    """Verify tokens with this JWKS instead of a local key (services that never sign)."""
    data_keys: SecretStr | None = None
    """Comma-separated Fernet keys sealing the secrets kept in the database (TOTP, webhook
    secrets): the first seals, all open (rotation). Empty means a key file in `var_dir`."""

    max_future_skew_seconds: float = 300.0
    """Readings stamped further in the future than this are rejected."""
    earliest_reading: dt.datetime = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    """Readings stamped before this are rejected (an unset device clock reads 1970 or 1900)."""
    max_batch_readings: int = 10_000
    """Readings accepted in one request."""
    device_cache_seconds: float = 30.0
    """How long a verified device token is remembered."""
    active_device_window_seconds: float = 300.0
    """A device that reported within this window counts as active."""

    alerts: AlertSettings = Field(default_factory=AlertSettings)
    """Default alarm rules, freshness, silencing and NEWS2 windows."""
    bus: BusSettings = Field(default_factory=BusSettings)
    """Event delivery tuning."""
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    """Transports, the data-quality gate and the readings store."""
    devices: DevicesSettings = Field(default_factory=DevicesSettings)
    """Device registry, status monitoring and firmware rollouts."""
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    """Sign-in, sessions and emergency access."""
    audit: AuditSettings = Field(default_factory=AuditSettings)
    """Audit log signing and checkpoints."""
    objects: ObjectStoreSettings = Field(default_factory=ObjectStoreSettings)
    """Object storage: a local directory or an S3-compatible bucket."""
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    """The MQTT transport and device credentials on the broker."""
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    """Email, SMS and webhook channels, escalation and delivery."""
    mllp: MllpSettings = Field(default_factory=MllpSettings)
    """The HL7 v2 listener (MLLP)."""
    reports: ReportsSettings = Field(default_factory=ReportsSettings)
    """Daily and on-demand reports and their download links."""
    http: HttpSettings = Field(default_factory=HttpSettings)
    """The HTTP edge: CORS, security headers, operator pages."""
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    """Requests per caller: per user, per device, per address for anonymous calls."""

    @model_validator(mode="after")
    def _replica_of_postgresql(self) -> Settings:
        if self.database_read_url and self.is_sqlite:
            raise ValueError("database_read_url needs database_url to be PostgreSQL")
        return self

    @property
    def resolved_database_url(self) -> str:
        """Return the database URL, defaulting to the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.var_dir / 'medcloud.db').as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        """Tell whether storage is the embedded SQLite file."""
        return self.resolved_database_url.startswith("sqlite")


__all__ = [
    "AlertSettings",
    "AuditSettings",
    "BusSettings",
    "DevicesSettings",
    "HttpSettings",
    "IdentitySettings",
    "IngestSettings",
    "MllpSettings",
    "MqttSettings",
    "NotificationSettings",
    "ObjectStoreSettings",
    "RateLimitSettings",
    "ReportsSettings",
    "Settings",
]
