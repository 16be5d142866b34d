"""Benchmark: how fast an object put in S3 becomes a Prefect event through the bridge.

Needs the local stack running (`make stack-up`). Prints one table, every figure measured in this run:
  (a) S3 put -> event readable at POST /api/events/filter, through moto's notification, SQS and the bridge;
  (b) the same event posted straight to POST /api/events -> readable (the server's own share: persister
      flush interval, 1 s in our stack); the ratio (a)/(b) is what the S3 + SQS + bridge hop costs;
  (c) S3 put -> Prefect accepted the event, from the bridge's log (its "ms after the S3 event");
  (d) a burst of objects put back to back -> all readable, as events per second.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _visible(client: httpx.Client, api: str, resource_ids: list[str]) -> int:
    # One event per resource (ids are deterministic), so the match count is the number readable.
    answer = client.post(f"{api}/events/filter", json={"filter": {"resource": {"id": resource_ids}}, "limit": 1})
    answer.raise_for_status()
    return answer.json()["total"]


def _wait_visible(client: httpx.Client, api: str, resource_ids: list[str], timeout: float = 60.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if _visible(client, api, resource_ids) == len(resource_ids):
            return time.perf_counter()
        time.sleep(0.05)
    raise TimeoutError(f"{len(resource_ids)} events not readable within {timeout:.0f} s")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--burst", type=int, default=100)
    args = parser.parse_args()

    from leanops import storage
    from leanops.bridge import event_document
    from leanops.events import batch_landed
    from leanops.settings import get_settings

    settings = get_settings()
    api = settings.resolved_prefect_api_url
    run = uuid.uuid4().hex[:6]
    client = httpx.Client(timeout=10)

    through_bridge, direct = [], []
    keys = []
    for i in range(args.rounds):
        key = f"{settings.s3_incoming_prefix}bench-{run}-{i}{settings.s3_incoming_suffix}"
        uri = f"s3://{settings.s3_bucket}/{key}"
        keys.append(key)
        started = time.perf_counter()
        storage.write_bytes(uri, b"PAR1 bench", settings)
        through_bridge.append(_wait_visible(client, api, [uri]) - started)

        direct_uri = f"s3://{settings.s3_bucket}/direct-{run}-{i}"
        started = time.perf_counter()
        answer = client.post(f"{api}/events", json=[event_document(batch_landed(settings.s3_bucket, f"direct-{run}-{i}", None, None, 1, "x"))])
        answer.raise_for_status()
        direct.append(_wait_visible(client, api, [direct_uri]) - started)

    burst_uris = [f"s3://{settings.s3_bucket}/{settings.s3_incoming_prefix}burst-{run}-{i}{settings.s3_incoming_suffix}" for i in range(args.burst)]
    started = time.perf_counter()
    for uri in burst_uris:
        storage.write_bytes(uri, b"PAR1 burst", settings)
    put_seconds = time.perf_counter() - started
    burst_seconds = _wait_visible(client, api, burst_uris, timeout=300) - started

    log = (settings.home / "logs" / "s3-bridge.log").read_text(errors="replace")
    accepted = [float(ms) / 1000 for key, ms in re.findall(r"emitted \S+ s3://[^/\s]+/(\S+) \(id \S+, (\d+) ms after", log) if key in keys]

    rows = [
        ("S3 put -> readable, via bridge (a)", through_bridge),
        ("direct POST -> readable (b)", direct),
        ("S3 put -> accepted by Prefect (c)", accepted),
    ]
    print(f"\n{args.rounds} rounds, sequential; times in seconds")
    print(f"{'path':<38}{'p50':>8}{'p95':>8}{'max':>8}")
    for label, values in rows:
        if values:
            print(f"{label:<38}{statistics.median(values):8.3f}{_pct(values, 0.95):8.3f}{max(values):8.3f}")
    print(f"{'ratio (a)/(b), p50':<38}{statistics.median(through_bridge) / statistics.median(direct):8.2f}")
    print(f"\nburst of {args.burst}: puts took {put_seconds:.2f} s, all readable after {burst_seconds:.2f} s "
          f"({args.burst / burst_seconds:.0f} events/s end to end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
