"""Prefect's background services, as `prefect server services start` runs them, with each one started
again when it ends. ``python -m infra.prefect_services`` is the production layout's services process
(the native stack and compose run it).

Why not Prefect's own command (3.9.1): a service whose start() raises ends silently. Service.running keeps
the exception in the service's task until shutdown, the process stays up, and nothing is logged. Seen in
the soak: the triggers service's first database read failed under load (asyncpg gives a connection 5 s),
the listener task it had started went on LISTENing, so the process looked ready, and no automation ever
fired again. Here a service that ends is logged with its traceback and started again after a backoff, so
a database that is slow or away for a moment costs seconds of triggers, not all of them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Sequence
from datetime import timedelta

logger = logging.getLogger("leanops.prefect_services")

FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
# A service that ran this long before it ended is restarted after FIRST_RESTART_DELAY again.
STABLE_AFTER = 60.0
READY_LOG = "Starting Prefect's background services"


async def keep_running(service_class, stopping: asyncio.Event, current: dict, first_delay: float = FIRST_RESTART_DELAY) -> None:
    """Run ``service_class`` until ``stopping`` is set; when its start() raises or returns, log why and
    start a new instance after a backoff (doubling up to MAX_RESTART_DELAY)."""
    name = service_class.__name__
    delay = first_delay
    while not stopping.is_set():
        service = service_class()
        current[name] = service
        began = time.monotonic()
        try:
            await service.start()
        except asyncio.CancelledError:
            raise
        except Exception:
            if stopping.is_set():
                return
            logger.exception("Prefect service %s failed; starting it again in %.0f s", name, delay)
        else:
            if stopping.is_set():
                return
            logger.error("Prefect service %s ended; starting it again in %.0f s", name, delay)
        finally:
            current.pop(name, None)
        delay = first_delay if time.monotonic() - began > STABLE_AFTER else delay
        try:
            await asyncio.wait_for(stopping.wait(), delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, MAX_RESTART_DELAY)


async def run_services(service_classes: Sequence[type], stopping: asyncio.Event) -> None:
    """Every service kept running until ``stopping`` is set, then each running one stopped."""
    current: dict = {}
    tasks = [asyncio.create_task(keep_running(cls, stopping, current)) for cls in service_classes]
    await stopping.wait()
    for service in list(current.values()):
        try:
            await service.stop()
        except Exception:  # a service that never got as far as starting has nothing to stop
            logger.debug("stopping %s", type(service).__name__, exc_info=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def main_async() -> None:
    # What prefect.cli._server_utils._run_all_services does, with run_services in place of Service.run_services.
    from docket import Docket
    from prefect.server.api.background_workers import background_worker
    from prefect.server.services.base import Service
    from prefect.settings.context import get_current_settings

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    service_classes = Service.enabled_services()
    if not service_classes:
        raise SystemExit("No Prefect services are enabled")
    async with Docket(name="prefect", url=get_current_settings().server.docket.url, execution_ttl=timedelta(0)) as docket:
        async with background_worker(docket, ephemeral=False, webserver_only=False):
            print(f"{READY_LOG}: {', '.join(cls.__name__ for cls in service_classes)}", flush=True)
            await run_services(service_classes, stopping)


def main() -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s - %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    asyncio.run(main_async())
    print("All services stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
