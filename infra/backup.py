"""Backup and restore of one PostgreSQL database of the production profile (Prefect's, MLflow's, MLflow's
auth store, Optuna's) with PostgreSQL's own tools:

    python -m infra.backup dump    --database postgresql://user@host:5432/leanops_mlflow --to mlflow.dump
    python -m infra.backup restore --database postgresql://user@host:5432/leanops_mlflow --from mlflow.dump [--recreate]

``dump`` writes pg_dump's custom format (compressed, restorable table by table), a consistent snapshot
taken while the servers run. ``restore`` loads it with pg_restore in one transaction, stopping at the
first error; ``--recreate`` first drops the database (closing its connections) and creates it empty,
for a database that was lost or must be rolled back whole. Stop the servers that use the database
before a restore (MLflow, or Prefect's API processes and services) and start them after: see
infra/README.md "Backup and restore".

A password in the URL never reaches a command line (where `ps` would show it): it goes to the tools
through PGPASSWORD. The client tools must not be older than the server (pg_dump refuses a newer server).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit


class BackupError(RuntimeError):
    """A PostgreSQL tool failed; the message carries its own words."""


@dataclass(frozen=True)
class Database:
    host: str
    port: int
    user: str
    password: str | None
    name: str

    @classmethod
    def from_url(cls, url: str) -> Database:
        """postgresql://user[:password]@host[:port]/name, with or without a SQLAlchemy driver (+psycopg)."""
        parts = urlsplit(url)
        if not parts.scheme.startswith("postgres"):
            raise ValueError(f"not a PostgreSQL URL: {parts.scheme}://...")
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ValueError("the URL names no database (postgresql://host:5432/<database>)")
        return cls(
            host=parts.hostname or "127.0.0.1", port=parts.port or 5432, user=unquote(parts.username or "postgres"),
            password=unquote(parts.password) if parts.password else None, name=name,
        )

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user}
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        else:
            env.pop("PGPASSWORD", None)
        return env


def _run(argv: list[str], database: Database) -> None:
    done = subprocess.run(argv, env=database.env(), capture_output=True, text=True, check=False)  # noqa: S603 - fixed tools
    if done.returncode != 0:
        raise BackupError(f"{argv[0]} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")


def dump(database: Database, to: Path) -> Path:
    """A consistent snapshot of the database in pg_dump's custom format; returns the file."""
    to.parent.mkdir(parents=True, exist_ok=True)
    partial = to.with_name(to.name + ".partial")
    _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}", f"--dbname={database.name}"], database)
    partial.replace(to)  # a failed dump never leaves a file that looks like a backup
    return to


def recreate(database: Database) -> None:
    """Drop the database (closing its connections) and create it empty."""
    _run(["dropdb", "--if-exists", "--force", "--maintenance-db=postgres", database.name], database)
    _run(["createdb", "--maintenance-db=postgres", database.name], database)


def restore(database: Database, source: Path, recreate_first: bool = False) -> None:
    """Load a dump into the database, all or nothing."""
    if not source.is_file():
        raise BackupError(f"no dump at {source}")
    if recreate_first:
        recreate(database)
    _run(["pg_restore", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
          f"--dbname={database.name}", str(source)], database)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.backup", description="Dump or restore one PostgreSQL database.")
    commands = parser.add_subparsers(dest="command", required=True)
    dumping = commands.add_parser("dump", help="write a custom-format dump")
    dumping.add_argument("--database", required=True, help="postgresql://user[:password]@host:port/name")
    dumping.add_argument("--to", type=Path, required=True)
    restoring = commands.add_parser("restore", help="load a dump")
    restoring.add_argument("--database", required=True, help="postgresql://user[:password]@host:port/name")
    restoring.add_argument("--from", dest="source", type=Path, required=True)
    restoring.add_argument("--recreate", action="store_true", help="drop and create the database first")
    args = parser.parse_args(argv)
    try:
        database = Database.from_url(args.database)
        if args.command == "dump":
            print(f"dumped {database.name} to {dump(database, args.to)}")
        else:
            restore(database, args.source, recreate_first=args.recreate)
            print(f"restored {database.name} from {args.source}")
    except (BackupError, ValueError) as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
