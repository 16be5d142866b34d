"""``leanops status | history | retire | reinstate``: read and change a model's standing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

import typer

from leanops_cli.output import JSON_OPTION, answer, attempt, console, fail, table

MODEL_ARGUMENT = typer.Argument(..., help="The model: a spec name, or a registered model name.")


@dataclass(frozen=True)
class ModelStatus:
    model: str
    state: str
    """active, retired, or the reason its spec does not load."""
    champion: str | None
    challenger: str | None
    last_drift: str | None
    last_drift_at: str | None
    last_retrain: str | None
    last_retrain_at: str | None
    next_retrain_at: str | None
    open_approvals: list[str]
    """UI URLs of the promote runs paused for a person's answer."""


def _version(info, primary: str) -> str | None:
    if info is None:
        return None
    score = info.tags.get(f"leanops.metric.{primary}")
    return f"v{info.version}" + (f" {primary} {float(score):.3f}" if score else "")


def _next_fire(spec, now: datetime) -> str | None:
    schedule = getattr(spec, "schedule", None)
    if schedule is None or schedule.cron is None:
        return None
    from zoneinfo import ZoneInfo

    from cronsim import CronSim

    return next(CronSim(schedule.cron, now.astimezone(ZoneInfo(schedule.timezone)))).astimezone(timezone.utc).isoformat(timespec="minutes")


def _iso(moment) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def model_status(spec, last_retrain, approvals, now: datetime) -> ModelStatus:
    from leanops import drift, monitoring, registry, retirement

    name = spec.registered_model_name
    retired = retirement.retirement(name)
    champion = registry.get_alias(name, registry.CHAMPION)
    challenger = registry.get_alias(name, registry.CHALLENGER)
    if challenger is not None and champion is not None and challenger.version == champion.version:
        challenger = None
    history = drift.read_history(monitoring.history_uri(name))
    checks = history[history["model"] == name].sort_values("checked_at")
    last = checks.iloc[-1] if len(checks) else None
    retrain = last_retrain.get(name)
    return ModelStatus(
        model=name,
        state=f"retired ({retired.reason})" if retired and retired.reason else "retired" if retired else "active",
        champion=_version(champion, spec.metric.primary),
        challenger=_version(challenger, spec.metric.primary),
        last_drift=None if last is None else f"{last['status']} (share {float(last['drift_share']):.2f})",
        last_drift_at=None if last is None else _iso(last["checked_at"].to_pydatetime()),
        last_retrain=None if retrain is None else retrain.state,
        last_retrain_at=None if retrain is None else _iso(retrain.at),
        next_retrain_at=None if retired else _next_fire(spec, now),
        open_approvals=[run.url for run in approvals.get(name, [])],
    )


def status(as_json: bool = JSON_OPTION) -> None:
    """For each model in the specs folder: champion, challenger, last drift verdict, last retrain, next scheduled
    retrain and the promotions waiting for a person's approval (with the link to answer them).

    Example:

        leanops status --json
    """
    from leanops.errors import LeanopsError
    from leanops.schedule import read_spec_folder
    from leanops.settings import get_settings
    from leanops_cli import prefect_runs

    now = datetime.now(timezone.utc)
    try:
        folder = read_spec_folder(get_settings().specs_dir)
        specs = [folder.specs[ref] for ref in sorted(folder.specs)]
        last_retrain, approvals = prefect_runs.model_runs([s.registered_model_name for s in specs])
        rows = [model_status(spec, last_retrain, approvals, now) for spec in specs]
    except (LeanopsError, OSError) as exc:
        fail(f"cannot read the status: {type(exc).__name__}: {exc}", as_json)
    broken = dict(folder.errors)

    def show() -> None:
        console.print(table(
            f"{len(rows)} model(s) in {get_settings().specs_dir} (times UTC)",
            ["model", "state", "champion", "challenger", "last drift check", "last retrain", "next retrain", "approvals"],
            [[r.model, r.state, r.champion, r.challenger, _when(r.last_drift, r.last_drift_at), _when(r.last_retrain, r.last_retrain_at),
              _short(r.next_retrain_at), len(r.open_approvals) or None] for r in rows],
        ))
        for r in rows:
            for url in r.open_approvals:
                console.print(f"{r.model} waits for approval: {url}", highlight=False)
        for ref, message in broken.items():
            console.print(f"[red]specs/{ref}.yaml does not load:[/] {message}", highlight=False)

    answer({"models": rows, "unreadable_specs": broken}, as_json, show)


def _short(at: str | None) -> str | None:
    return None if at is None else at[5:16].replace("T", " ")  # MM-DD HH:MM of an ISO time in UTC


def _when(what: str | None, at: str | None) -> str | None:
    return None if what is None else f"{what} {_short(at)}" if at else what


def _spec_model(model: str) -> str | None:
    """The registered model a spec name (or path) describes, or None when there is no such spec."""
    from leanops.errors import SpecError
    from leanops.spec import load_spec

    try:
        return load_spec(model).registered_model_name
    except SpecError:
        return None


def _model_name(model: str) -> str:
    """A spec's model, or the name itself: a model whose spec was removed still has its history."""
    return _spec_model(model) or model


def history(
    model: str = MODEL_ARGUMENT,
    as_json: bool = JSON_OPTION,
) -> None:
    """Every promotion, rejection and rollback of MODEL, oldest first: who was champion when, and why.

    Example:

        leanops history churn
    """
    from leanops import aliases

    name = _model_name(model)
    changes = attempt(lambda: aliases.alias_history(name), as_json)
    answer(changes, as_json, lambda: console.print(table(
        f"alias history of {name}", ["when (UTC)", "action", "version", "champion", "previous", "by", "why"],
        [[c.at[:19].replace("T", " "), c.action, f"v{c.version}", _champion_move(c), f"v{c.previous_champion_after}" if c.previous_champion_after else None, c.by, c.reason]
         for c in changes],
    ) if changes else f"no alias changes recorded for {name}"))


def _champion_move(change) -> str:
    before, after = (f"v{v}" if v else "none" for v in (change.champion_before, change.champion_after))
    return after if before == after else f"{before} -> {after}"


def retire(
    model: str = MODEL_ARGUMENT,
    reason: str = typer.Option("", "--reason", help="Why (kept with the retirement record)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Retire MODEL: its schedule and triggers stop acting on it. Scheduled retrains and the drift checks
    of its landed batches log the retirement and skip (never fail), so drift no longer retrains it and no
    new challenger reaches promotion; a retrain or promotion started by hand still runs. Its registry
    versions, aliases and history are kept; **leanops reinstate** undoes it.

    Example:

        leanops retire churn --reason "replaced by churn-v2"
    """
    from leanops import registry, retirement
    from leanops.errors import LeanopsError

    name = _model_name(model)
    try:
        if _spec_model(model) is None and not registry.model_exists(name):
            fail(f"no model {name!r}: no spec of that name in the specs folder and nothing registered", as_json)
        record = retirement.retire(name, reason)
        versions = registry.list_versions(name)
        champion = registry.get_alias(name, registry.CHAMPION)
    except LeanopsError as exc:
        fail(str(exc), as_json)
    kept = f"{len(versions)} registered version(s)" + (f", champion v{champion.version}" if champion else "") + ", its alias history and drift history"
    payload = {"ok": True, "retirement": record, "kept": {"versions": [v.version for v in versions], "champion": champion.version if champion else None}}
    answer(payload, as_json, lambda: console.print(
        f"retired [bold]{name}[/] ({record.reason or 'no reason given'}; by {record.retired_by} at {record.retired_at}).\n"
        "Stopped: its scheduled retrains and the drift checks of its landed batches (they log the retirement and skip, "
        "never fail), so drift no longer retrains it; a retrain or promotion started by hand still runs.\n"
        f"Kept: {kept}. The champion is not unset. Undo with: leanops reinstate {name}",
        highlight=False, soft_wrap=True,
    ))


def reinstate(
    model: str = MODEL_ARGUMENT,
    as_json: bool = JSON_OPTION,
) -> None:
    """Undo **leanops retire**: MODEL's schedule and triggers act on it again.

    Example:

        leanops reinstate churn
    """
    from leanops import retirement

    name = _model_name(model)
    was_retired = attempt(lambda: retirement.reinstate(name), as_json)
    answer({"ok": True, "model": name, "was_retired": was_retired}, as_json, lambda: console.print(
        f"{name} is active again" if was_retired else f"{name} was not retired: nothing changed", highlight=False,
    ))
