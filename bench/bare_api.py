"""The same-run baseline of single-reading HTTP: FastAPI and pydantic without a database.

    python -m bench.bare_api --port 8123

One route of the same shape as medcloud's — `POST /api/v1/devices/{device_id}/data` with a
bearer token and one reading in the body, validated by a pydantic model and answered 201 with
the same JSON — served by uvicorn with the options `medcloud serve` uses. What medcloud adds on
top of this (authentication against the directory, the gate, the commit, the events) is what a
benchmark's figure beside this one measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from typing import Annotated

import uvicorn
from fastapi import FastAPI, Header, HTTPException, status
from pydantic import AwareDatetime, BaseModel, Field


class Reading(BaseModel):
    """One instant of a monitor's vitals."""

    timestamp: AwareDatetime
    measurements: dict[str, float] = Field(min_length=1, max_length=64)


class Stored(BaseModel):
    """The answer medcloud gives."""

    device_id: str
    accepted: int
    stored: int
    duplicates: int


def create_app() -> FastAPI:
    """The baseline app: validate, do no work, answer."""
    app = FastAPI()

    @app.post("/api/v1/devices/{device_id}/data", status_code=status.HTTP_201_CREATED)
    async def ingest(
        device_id: str, reading: Reading, authorization: Annotated[str, Header()]
    ) -> Stored:
        if not authorization.startswith("Bearer "):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED)
        if reading.timestamp > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT)
        count = len(reading.measurements)
        return Stored(device_id=device_id, accepted=count, stored=count, duplicates=0)

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the baseline app until stopped."""
    parser = argparse.ArgumentParser(prog="python -m bench.bare_api")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
    )


if __name__ == "__main__":
    main()
