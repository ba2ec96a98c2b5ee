"""Time the sign-in refusals an attacker would like to tell apart: an account in its wait
(locked), an unknown email and a wrong password, each `--attempts` times, interleaved, against
a deployment that hashes with the production argon2 cost.

    medcloud bench signin [--attempts 200] [--deployment embedded|services]

(`.venv/bin/python -m bench.signin …` is the same.) The deployment is started as
`medcloud bench alarms` starts it (`embedded`: `medcloud serve` on a SQLite file; `services`: on
PostgreSQL, RabbitMQ and Redis), with the argon2 settings left at their defaults.

Each round sends one attempt of each kind, in an order that rotates from round to round, from
a loopback address of its own (127.10.x.y): no address comes near a wait of its own, so every
answer is the 401 an attacker meets, timed from request to response over an open connection.
The locked account gets its account-wide wait as a botnet would give it, one wrong guess from
each of `account_failures_before_wait` addresses, and the deployment makes that first wait an
hour long, so it outlasts the run; its attempts carry the *right* password, and the run stops
if one is let in. Wrong passwords are spread over enough accounts that none reaches that
ceiling.

Prints one JSON object: the median and p90 (ms) of each kind, `median_spread_ms` (the largest
difference between two kinds' medians) and, steadier on a busy machine, the median of each
round's difference from its wrong-password answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.alarms import Deployment, add_service_options, deployment
from bench.deployment import admin_headers
from bench.figures import percentile_ms
from medcloud.config import IdentitySettings

PASSWORD = "bench-nurse-passphrase-42"  # noqa: S105  (the benchmark's own nurses)
LOCKED = "locked.nurse@bench.example"
UNKNOWN = "nobody@bench.example"
KINDS = ("locked", "unknown_email", "wrong_password")
WARM_UP = 5
"""Rounds sent and not timed: the first attempts pay for a process's first hashes."""
LOCKED_FOR_SECONDS = 3600
"""The account-wide wait the deployment starts with: longer than any run."""


def address(n: int) -> str:
    """The loopback address of round `n` (Linux routes all of 127/8 to the loopback)."""
    return f"127.10.{n // 250}.{n % 250 + 1}"


async def invite(client: httpx.AsyncClient, headers: dict[str, str], email: str) -> None:
    """Create a nurse who has chosen PASSWORD."""
    invited = await client.post(
        "/api/v1/users", json={"email": email, "role": "nurse"}, headers=headers
    )
    invited.raise_for_status()
    accepted = await client.post(
        "/api/v1/auth/invitations/accept",
        json={"token": invited.json()["invitation_token"], "password": PASSWORD},
    )
    accepted.raise_for_status()


async def attempt(client: httpx.AsyncClient, email: str, password: str) -> tuple[int, float]:
    """Sign in once; return the status and the seconds the answer took."""
    began = time.perf_counter()
    response = await client.post(
        "/api/v1/auth/token", data={"username": email, "password": password}
    )
    return response.status_code, time.perf_counter() - began


async def measure(args: argparse.Namespace, started: Deployment) -> dict[str, Any]:
    """Create the accounts, lock one, and time the interleaved rounds."""
    policy = IdentitySettings()
    ceiling = policy.account_failures_before_wait
    rounds = WARM_UP + args.attempts
    # Each wrong-password account takes fewer failures than the ceiling.
    wrong = [f"wrong.nurse.{k}@bench.example" for k in range(math.ceil(rounds / (ceiling - 1)))]
    async with httpx.AsyncClient(base_url=started.base, timeout=60) as client:
        headers = await admin_headers(client)
        for email in (LOCKED, *wrong):
            await invite(client, headers, email)

    def from_address(n: int) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(local_address=address(n))
        return httpx.AsyncClient(base_url=started.base, transport=transport, timeout=60)

    botnet = rounds  # addresses after the rounds' own
    for n in range(ceiling):
        async with from_address(botnet + n) as client:
            status, _ = await attempt(client, LOCKED, f"guess-{n}")
            if status != 401:
                raise RuntimeError(f"a botnet guess was answered {status}")

    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for n in range(rounds):
        cases = {
            "locked": (LOCKED, PASSWORD),
            "unknown_email": (UNKNOWN, PASSWORD),
            "wrong_password": (wrong[n % len(wrong)], "not-" + PASSWORD),
        }
        order = KINDS[n % 3 :] + KINDS[: n % 3]
        async with from_address(n) as client:
            (await client.get("/health")).raise_for_status()  # connected before timing
            for kind in order:
                status, seconds = await attempt(client, *cases[kind])
                if status != 401:
                    raise RuntimeError(f"{kind} was answered {status}, not 401")
                if n >= WARM_UP:
                    samples[kind].append(seconds)

    medians = {kind: statistics.median(values) * 1000 for kind, values in samples.items()}
    # A round's three answers share the machine's load of the moment, so the median of their
    # differences is steadier than the difference of medians when other work comes and goes.
    paired = {
        f"{kind}_minus_wrong_password": round(
            statistics.median(
                (a - b) * 1000 for a, b in zip(values, samples["wrong_password"], strict=True)
            ),
            1,
        )
        for kind, values in samples.items()
        if kind != "wrong_password"
    }
    return {
        "benchmark": "signin",
        "deployment": args.deployment,
        "attempts": args.attempts,
        "argon2": {
            "time_cost": policy.argon2_time_cost,
            "memory_kib": policy.argon2_memory_kib,
            "parallelism": policy.argon2_parallelism,
        },
        **{
            kind: {"median_ms": round(medians[kind], 1), "p90_ms": percentile_ms(values, 0.9)}
            for kind, values in samples.items()
        },
        "median_spread_ms": round(max(medians.values()) - min(medians.values()), 1),
        "paired_median_difference_ms": paired,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the deployment, measure, stop it."""
    defaults = IdentitySettings()
    args.env = [
        *(args.env or []),
        # The production cost: bench/deployment.py lowers it for benchmarks of other things.
        ["MEDCLOUD_IDENTITY__ARGON2_TIME_COST", str(defaults.argon2_time_cost)],
        ["MEDCLOUD_IDENTITY__ARGON2_MEMORY_KIB", str(defaults.argon2_memory_kib)],
        ["MEDCLOUD_IDENTITY__ARGON2_PARALLELISM", str(defaults.argon2_parallelism)],
        ["MEDCLOUD_IDENTITY__FIRST_WAIT_SECONDS", str(LOCKED_FOR_SECONDS)],
        ["MEDCLOUD_IDENTITY__LONGEST_WAIT_SECONDS", str(LOCKED_FOR_SECONDS)],
    ]
    with deployment(args) as started:
        return asyncio.run(measure(args, started))


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="medcloud bench signin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--deployment", choices=["embedded", "services"], default="embedded")
    parser.add_argument("--attempts", type=int, default=200, help="timed attempts of each kind")
    add_service_options(parser)
    args = parser.parse_args(argv)
    # What `bench.alarms.deployment` reads: one process, no split.
    args.split, args.logs = False, None
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print its JSON."""
    result = run(parse(argv))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
