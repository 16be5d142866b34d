"""Whether Prefect's triggers service is ready: it listens for automation changes, and its consumer reads
Prefect's event stream. ``python -m infra.triggers_ready``, run where the background services run
(`python -m infra.prefect_services`: their configuration, database and Redis), exits 0 when both hold and 1
when not: the compose healthcheck of prefect-services. The native stack asks the same questions
(infra.production.triggers_are_ready) before it creates the work pool.

Why a deployment must wait for it (Prefect 3.9.1): the triggers service loads the automations that exist,
then LISTENs on AUTOMATION_CHANGES_CHANNEL. An automation created between the two misses its NOTIFY, and
the next NOTIFY the service handles stamps its snapshot of the automations table as current, so the
periodic reconciliation never loads the missed one either: its trigger never fires until the services
restart. Seen: prefect.yaml deployed while the services started, and a registration never started promote.

Why the LISTEN alone does not say it (seen in the soak): the triggers service starts its listener task
first, then reads the automations; when that read fails, the service is dead but its listener goes on
LISTENing. The consumer group below exists only once the service read them and started its consumer.
"""

from __future__ import annotations

import asyncio
import sys

# prefect.server.events.models.automations.AUTOMATION_CHANGES_CHANNEL; asyncpg's add_listener sends the
# statement below, which pg_stat_activity keeps as the listening session's last query.
AUTOMATION_CHANGES_CHANNEL = "prefect_automation_changes"
LISTEN_STATEMENT = f'LISTEN "{AUTOMATION_CHANGES_CHANNEL}"'


# prefect.server.events.services.triggers.ReactiveTriggers reads the "events" topic with this group;
# prefect-redis keeps a topic in a Redis stream of the same name and creates the group as the consumer starts.
EVENTS_STREAM = "events"
TRIGGERS_GROUP = "reactive-triggers"


def consuming(redis_client) -> bool:
    """Whether the triggers service's consumer group reads Prefect's event stream (``redis_client``: a
    redis.Redis on Prefect's messaging database)."""
    import redis

    try:
        groups = redis_client.xinfo_groups(EVENTS_STREAM)
    except redis.ResponseError:  # no stream yet: nobody has started consuming it
        return False
    return any(group["name"] in (TRIGGERS_GROUP, TRIGGERS_GROUP.encode()) for group in groups)


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


def _consuming_with_prefects_configuration() -> bool:
    import redis

    from prefect_redis.client import RedisMessagingSettings

    url = RedisMessagingSettings().url
    if not url:
        raise SystemExit("PREFECT_REDIS_MESSAGING_URL is not set: Prefect's messaging is not on Redis")
    return consuming(redis.Redis.from_url(url))


def main() -> int:
    if not asyncio.run(_listening_with_prefects_configuration()):
        print(f"nothing listens on {AUTOMATION_CHANGES_CHANNEL} yet: Prefect's triggers service has not started", file=sys.stderr)
        return 1
    if not _consuming_with_prefects_configuration():
        print(f"no {TRIGGERS_GROUP} group reads the {EVENTS_STREAM} stream: Prefect's triggers service has not started its consumer", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
