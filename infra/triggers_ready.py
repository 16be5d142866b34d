"""Whether Prefect's triggers service listens for automation changes. ``python -m infra.triggers_ready``, run
where `prefect server services start` runs (its configuration, its database), exits 0 when it does and 1
when not: the compose healthcheck of prefect-services. The native stack asks the same question
(infra.production.listens_for_automation_changes) before it creates the work pool.

Why a deployment must wait for it (Prefect 3.9.1): the triggers service loads the automations that exist,
then LISTENs on AUTOMATION_CHANGES_CHANNEL. An automation created between the two misses its NOTIFY, and
the next NOTIFY the service handles stamps its snapshot of the automations table as current, so the
periodic reconciliation never loads the missed one either: its trigger never fires until the services
restart. Seen: prefect.yaml deployed while the services started, and a registration never started promote.
"""

from __future__ import annotations

import asyncio
import sys

# prefect.server.events.models.automations.AUTOMATION_CHANGES_CHANNEL; asyncpg's add_listener sends the
# statement below, which pg_stat_activity keeps as the listening session's last query.
AUTOMATION_CHANGES_CHANNEL = "prefect_automation_changes"
LISTEN_STATEMENT = f'LISTEN "{AUTOMATION_CHANGES_CHANNEL}"'


async def listening(connection) -> bool:
    """Whether a session on ``connection``'s database listens for automation changes."""
    return bool(await connection.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = $1", LISTEN_STATEMENT,
    ))


async def _listening_with_prefects_configuration() -> bool:
    # The listener's own way to its database: the same URL, TLS and connect arguments.
    from prefect.server.utilities.postgres_listener import get_pg_notify_connection

    connection = await get_pg_notify_connection()
    if connection is None:
        raise SystemExit("Prefect's database is not PostgreSQL, or not reachable: nothing listens for automation changes")
    try:
        return await listening(connection)
    finally:
        await connection.close()


def main() -> int:
    if asyncio.run(_listening_with_prefects_configuration()):
        return 0
    print(f"nothing listens on {AUTOMATION_CHANGES_CHANNEL} yet: Prefect's triggers service has not started", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
