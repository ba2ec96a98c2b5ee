"""Measure how fast an embedded `medcloud serve` becomes ready and how much memory it idles in.

    .venv/bin/python -m bench.serve_startup [--idle 10]

Prints JSON: seconds from process start to the first 200 from /ready, and the resident set size
(MB) of the process after idling.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import psutil


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=10.0, help="seconds to idle before RSS")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as var:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDCLOUD_")}
        env |= {"MEDCLOUD_VAR_DIR": var, "MEDCLOUD_LOG_LEVEL": "WARNING"}
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "medcloud.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ready_after = None
            while time.perf_counter() - started < 30:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                        ready_after = time.perf_counter() - started
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
            time.sleep(args.idle)
            rss = psutil.Process(process.pid).memory_info().rss / 1024 / 1024
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    result = {
        "benchmark": "serve_startup",
        "mode": "embedded (SQLite, in-process bus)",
        "ready_seconds": None if ready_after is None else round(ready_after, 3),
        "idle_seconds": args.idle,
        "idle_rss_mb": round(rss, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
