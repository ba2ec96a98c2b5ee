"""JSON logs through structlog. Events name what happened; fields carry ids, never patient data."""

from __future__ import annotations

import logging
import sys

import structlog

# Libraries that log statement parameters or URLs at DEBUG/INFO: they would put readings and
# identifiers in the logs, so they stay at WARNING whatever the application's level.
QUIET_LOGGERS = (
    "aiosqlite",
    "sqlalchemy",
    "asyncpg",
    "aiormq",
    "aio_pika",
    "httpx",
    "httpcore",
    "alembic",
    "redis",
    "multipart",
    "uvicorn.error",
)


class _Stdout:
    """Whatever sys.stdout is at write time (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure_logging(level: str = "INFO") -> None:
    """Send structlog and standard-library records to stdout as one JSON object per line."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(_Stdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_Stdout())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # uvicorn's access log prints raw paths; the edge middleware logs route templates instead.
    logging.getLogger("uvicorn.access").disabled = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
