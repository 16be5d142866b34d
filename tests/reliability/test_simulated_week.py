"""Scenario 9: a week of operation in fast time ends in exactly the state it should.

Seven simulated days of two or three "hourly" batches each land in a bucket of the test's own under
``incoming/<model>/``, and everything after the put is the real path: the bucket notifies the session's
SQS queue, the S3 bridge posts ``leanops.batch.landed``, prefect.yaml's deployments (`prefect deploy`)
start drift-monitor/on-new-batch, retrain/on-drift and promote/on-new-challenger (auto-approval) on a
process worker. On the way, the faults and events of an ordinary week:

- day 2: a batch exported without its weather join: its contract rejects it, with its reason, for good;
- day 3: the Prefect server process is stopped right after a batch lands and another lands while it is
  down; it starts again on the same database, and the hourly reconciliation (run here at once, as
  reconcile/hourly would) announces whatever has no processed mark;
- day 4: a July batch drifts against the February-June champion: the drift retrains on the window of
  landed batches (the rejected one left out) and the challenger is promoted, v2;
- days 5-7: quiet batches against v2.

Every batch is a disjoint slice of the 2013 flights (no row twice). The quiet ones are drawn from the
months the champion they meet learned from (February-June: v1's training months, and nine tenths of
v2's window, whose last tenth is the July batch), and each is checked before it lands with the drift check's own pure function
(``leanops.monitoring.check_batch``) against the champion of the moment: quiet by construction, so a
second drift episode would be a defect, not the data.

Outcome asserted: the final state equals the one written out below: champion and aliases, the alias
history (audit trail), one drift-history verdict per checked batch, one processed mark per object
(the bad batch's carrying its reason), one drift retrain and two promotions."""

from __future__ import annotations

import io
import json
import time
import uuid
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from leanops import datasets, drift, manifest, monitoring, registry, storage
from reliability.faults import processed_mark
from support import runs_of, spec_copy, wait_for

pytestmark = pytest.mark.e2e

UID = uuid.uuid4().hex[:6]
MODEL = f"week-{UID}"
BUCKET = f"week-{UID}"
DEPLOYMENTS = ("drift-monitor/on-new-batch", "retrain/on-drift", "promote/on-new-challenger")
UNFINISHED = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING", None}

# Rows per month: v1 learns from 800 flights of each of February-June; a quiet batch holds 600 of each
# (3,000, above the spec's drift.min_rows of 2,000); the drifting batch is 3,000 flights of July.
QUIET_MONTHS = range(2, 7)
V1_ROWS, QUIET_ROWS, DRIFT_ROWS = 800, 600, 3000
SEED = 2013

# The week: (day, hour, kind). Within a day the batches land together; a day starts once the last settled.
WEEK = (
    (1, 8, "quiet"), (1, 14, "quiet"), (1, 20, "quiet"),
    (2, 8, "quiet"), (2, 14, "quiet"), (2, 20, "bad"),
    (3, 8, "quiet"), (3, 14, "quiet"), (3, 20, "quiet"),  # the server stops once 14h lands; 20h lands while it is down
    (4, 8, "quiet"), (4, 14, "drift"),
    (5, 8, "quiet"), (5, 14, "quiet"), (5, 20, "quiet"),
    (6, 8, "quiet"), (6, 20, "quiet"),
    (7, 8, "quiet"), (7, 20, "quiet"),
)
WEATHER = ("temp", "dewp", "humid", "wind_speed", "precip", "visib")

# --- the expected final state ---------------------------------------------------------------------

EXPECTED_ALIASES = {"champion": "2", "previous-champion": "1", "challenger": "2"}
# (action, version, champion before, champion after, previous-champion after, by)
EXPECTED_ALIAS_HISTORY = [
    ("promoted", "1", None, "1", None, "policy:auto"),
    ("promoted", "2", "1", "2", "1", "policy:auto"),
]
# batch -> (champion version checked against, verdict); the rejected batch has none.
EXPECTED_DRIFT_HISTORY = {
    "day1-08h": ("1", "ok"), "day1-14h": ("1", "ok"), "day1-20h": ("1", "ok"),
    "day2-08h": ("1", "ok"), "day2-14h": ("1", "ok"),
    "day3-08h": ("1", "ok"), "day3-14h": ("1", "ok"), "day3-20h": ("1", "ok"),
    "day4-08h": ("1", "ok"), "day4-14h": ("1", "drift"),
    "day5-08h": ("2", "ok"), "day5-14h": ("2", "ok"), "day5-20h": ("2", "ok"),
    "day6-08h": ("2", "ok"), "day6-20h": ("2", "ok"),
    "day7-08h": ("2", "ok"), "day7-20h": ("2", "ok"),
}

# The batches the drift retrain learned from (its window, oldest first): all landed by then but the rejected one.
EXPECTED_V2_WINDOW = [
    "day1-08h", "day1-14h", "day1-20h", "day2-08h", "day2-14h", "day3-08h", "day3-14h", "day3-20h", "day4-08h", "day4-14h",
]


def bad_batch_status(uri: str) -> str:
    # In the contract's column order: the spec copy's YAML lists its columns by name.
    listed = "\n".join(f"  - column {name!r} is entirely null" for name in sorted(WEATHER))
    return f"rejected: ContractViolation: batch {uri} violates its data contract (6 problems):\n{listed}"


def expected_marks() -> dict[str, str]:
    """batch -> the status of its one processed mark."""
    marks = {name: status for name, (_, status) in EXPECTED_DRIFT_HISTORY.items()}
    marks["day2-20h"] = bad_batch_status(uri_of("day2-20h"))
    return dict(sorted(marks.items()))


# --- the data: disjoint slices of the 2013 flights --------------------------------------------------


def name_of(day: int, hour: int) -> str:
    return f"day{day}-{hour:02d}h"


def uri_of(name: str) -> str:
    return f"s3://{BUCKET}/incoming/{MODEL}/{name}.parquet"


@lru_cache(maxsize=None)
def shuffled(month: int) -> pd.DataFrame:
    """Every flight of ``month``, in a seeded random order: batches take consecutive slices, so none repeats a row."""
    return datasets.flights([month]).sample(frac=1.0, random_state=SEED).reset_index(drop=True)


def in_time_order(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(parts).sort_values("time_hour", kind="stable").reset_index(drop=True)


def v1_training() -> pd.DataFrame:
    return in_time_order([shuffled(m).iloc[:V1_ROWS] for m in QUIET_MONTHS])


def week_batches() -> dict[str, pd.DataFrame]:
    """Each batch of the week by name: quiet and bad ones take the next slice of each February-June month."""
    frames, taken = {}, 0
    for day, hour, kind in WEEK:
        name = name_of(day, hour)
        if kind == "drift":
            frames[name] = in_time_order([shuffled(7).iloc[:DRIFT_ROWS]])
            continue
        start = V1_ROWS + taken * QUIET_ROWS
        frame = in_time_order([shuffled(m).iloc[start:start + QUIET_ROWS] for m in QUIET_MONTHS])
        taken += 1
        if kind == "bad":  # exported again without its weather join
            frame[list(WEATHER)] = np.nan
        frames[name] = frame
    return frames


def as_landed(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as a check reads it back from its parquet object."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return pd.read_parquet(io.BytesIO(buffer.getvalue()))


def verdicts_against(version: str, spec_path, frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    """What the drift check will say of each frame against ``version`` (the check's pure function)."""
    from leanops.spec import load_spec

    champion = monitoring.load_champion_data(registry.get_version(MODEL, version), load_spec(spec_path))
    return {name: monitoring.check_batch(as_landed(frame), champion).status for name, frame in frames.items()}


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment_names():
    return DEPLOYMENTS


@pytest.fixture(scope="module")
def specs_dir(stack, tmp_path_factory):
    """The flights spec as MODEL, small (60 trees), retraining on its bucket's landed batches with no
    cooldown (the week's one drift retrain must not wait), no scheduled retrain."""
    folder = tmp_path_factory.mktemp("week-specs")
    spec_copy(
        folder, MODEL, model__params__n_estimators=60, schedule__cron=None,
        retrain_window__prefix=f"s3://{BUCKET}/incoming/{MODEL}/", retrain_window__cooldown_minutes=0,
    )
    return folder


@pytest.fixture(scope="module")
def paused_triggers():
    """None: the shared ``worker`` runs every run the three deployments' triggers create, promotions included."""
    return set()


# --- driving the week -----------------------------------------------------------------------------


class Week:
    def __init__(self, api: str, deployed: dict[str, str], queue_url: str, settings):
        self.api, self.deployed, self.queue_url, self.settings = api, deployed, queue_url, settings

    def runs(self, name: str) -> list[dict]:
        return runs_of(self.api, self.deployed[name], **({} if name.startswith("drift") else {"spec": MODEL}))

    def idle(self) -> bool:
        """No notification waiting in SQS, no run of the three deployments unfinished."""
        if storage.queue_counts(self.queue_url, self.settings) != (0, 0):
            return False
        return not any(r["state_type"] in UNFINISHED for name in DEPLOYMENTS for r in self.runs(name))

    def settled(self, names: list[str]) -> bool:
        return self.idle() and all(processed_mark(uri_of(n)) for n in names)

    def wait_settled(self, names: list[str], what: str, timeout: float = 240) -> None:
        wait_for(lambda: self.settled(names), what, timeout, 1.0)


def land(frames: dict[str, pd.DataFrame], names: list[str]) -> None:
    for name in names:
        storage.write_table(frames[name], uri_of(name))


@pytest.mark.timeout(900)  # 4-6 min on this 2-core machine (250-340 s in three runs); a loaded one is slower
def test_a_simulated_week_ends_in_exactly_the_expected_state(deployed, worker, specs_dir, s3_bridge, stack, settings, record):
    from flows.reconcile import reconcile
    from flows.retrain import retrain
    from infra import services, stack as local_stack

    row = record("9 a simulated week, 18 hourly batches in fast time", "1 bad batch; Prefect server stop + start; 1 drift episode")
    api = settings.resolved_prefect_api_url
    queue_url, _ = s3_bridge
    spec_path = specs_dir / f"{MODEL}.yaml"
    week = Week(api, deployed, queue_url, settings)
    storage.ensure_bucket(BUCKET, settings)
    _, queue_arn = storage.ensure_queue(settings.sqs_queue_name, settings)
    storage.configure_bucket_notifications(BUCKET, queue_arn, settings.s3_incoming_prefix, settings.s3_incoming_suffix, settings)
    frames = week_batches()
    by_day = {day: [name_of(day, hour) for d, hour, _ in WEEK if d == day] for day in range(1, 8)}
    kinds = {name_of(day, hour): kind for day, hour, kind in WEEK}

    # Day 0: the team's first retrain, by hand, outside the watched prefix; its registration event starts
    # promote/on-new-challenger on the worker, which makes v1 the champion.
    training = storage.write_table(v1_training(), f"s3://{BUCKET}/training/{MODEL}/2013-02..06.parquet")
    first = retrain(spec=str(spec_path), batch_uri=training)
    assert first.created and first.version == "1"
    wait_for(lambda: registry.alias_version(MODEL, registry.CHAMPION) == "1" and week.idle(), "v1 promoted", 180, 1.0)
    # Quiet by construction: each quiet batch of days 1-4 is quiet against v1, and July drifts.
    before_v2 = {n: f for n, f in frames.items() if int(n[3]) <= 4 and kinds[n] != "bad"}
    assert verdicts_against("1", spec_path, before_v2) == {n: "drift" if kinds[n] == "drift" else "ok" for n in before_v2}

    # Days 1 and 2: quiet batches, and the bad one.
    for day in (1, 2):
        land(frames, by_day[day])
        week.wait_settled(by_day[day], f"day {day}'s batches checked")

    # Day 3: the Prefect server stops right after 14h lands (its notification is in SQS or the bridge's
    # hands), 20h lands while it is down, and it starts again on the same database.
    land(frames, ["day3-08h"])
    week.wait_settled(["day3-08h"], "day 3, 08h checked")
    server = local_stack.prefect(settings)
    land(frames, ["day3-14h"])
    stopped_at = time.monotonic()
    services.stop(server, settings.home)
    try:
        land(frames, ["day3-20h"])
        assert not services.is_healthy(server)
    finally:
        services.start(server, settings.home)
    announced: list[str] = []

    def day3_recovered() -> bool:
        """Once nothing is queued or running, every batch has its mark, or the reconciliation (what
        reconcile/hourly runs) announces those without one, and no check is about to take them."""
        if not week.idle():
            return False
        if all(processed_mark(uri_of(n)) for n in by_day[3]):
            return True
        announced.extend(reconcile(prefix=f"s3://{BUCKET}/incoming/", min_age_minutes=0))
        return False

    wait_for(day3_recovered, "day 3's batches checked after the restart", 300, 2.0)
    recovered_in = time.monotonic() - stopped_at
    assert services.is_healthy(server)

    # Day 4: a quiet batch, then July drifts: retrain/on-drift trains v2 on the window of landed batches,
    # promote/on-new-challenger promotes it.
    land(frames, ["day4-08h"])
    week.wait_settled(["day4-08h"], "day 4, 08h checked")
    land(frames, ["day4-14h"])
    wait_for(lambda: registry.alias_version(MODEL, registry.CHAMPION) == "2", "the drift episode to promote v2", 300, 1.0)
    week.wait_settled(["day4-14h"], "the drift episode to end")
    # v2 learned from the window of landed batches: every one so far but the rejected one.
    sources = registry.get_version(MODEL, "2").tags.get("leanops.data_sources", "").split(",")
    assert sources == [uri_of(name) for name in EXPECTED_V2_WINDOW]
    after_v2 = {n: f for n, f in frames.items() if int(n[3]) >= 5}
    assert verdicts_against("2", spec_path, after_v2) == dict.fromkeys(after_v2, "ok")

    # Days 5-7: quiet against v2.
    for day in (5, 6, 7):
        land(frames, by_day[day])
        week.wait_settled(by_day[day], f"day {day}'s batches checked")

    # --- the final state --------------------------------------------------------------------------
    aliases = {alias: registry.alias_version(MODEL, alias) for alias in EXPECTED_ALIASES}
    assert aliases == EXPECTED_ALIASES
    assert [v.version for v in registry.list_versions(MODEL)] == ["1", "2"]
    from leanops import aliases as alias_trail

    trail = [(c.action, c.version, c.champion_before, c.champion_after, c.previous_champion_after, c.by)
             for c in alias_trail.alias_history(MODEL)]
    assert trail == EXPECTED_ALIAS_HISTORY

    history = drift.read_history(monitoring.history_uri(MODEL))
    checked = [(manifest.unversioned(uri).rsplit("/", 1)[1].removesuffix(".parquet"), version, status)
               for uri, version, status in zip(history["batch_uri"], history["version"], history["status"])]
    assert sorted(checked) == [(name, *verdict) for name, verdict in sorted(EXPECTED_DRIFT_HISTORY.items())]

    marks = {}
    for name in frames:
        mark = processed_mark(uri_of(name))
        assert mark is not None and mark.model == MODEL, (name, mark)
        marks[name] = mark.status
    assert marks == expected_marks()
    # One mark per object, and none elsewhere in the bucket (training/ is not watched).
    root = manifest.manifest_root(settings)
    ours = [json.loads(storage.read_bytes(m.uri))["uri"] for m in storage.list_objects(root + "/", suffix=".json")]
    assert sorted(uri for uri in ours if uri.startswith(f"s3://{BUCKET}/")) == sorted(map(uri_of, frames))
    assert reconcile(prefix=f"s3://{BUCKET}/incoming/", min_age_minutes=0) == []

    # One drift retrain, two promotions; every check completed but the bad batch's, which failed.
    retrains, promotions = week.runs("retrain/on-drift"), week.runs("promote/on-new-challenger")
    assert [r["state_name"] for r in retrains] == ["Completed"], retrains
    assert sorted(r["parameters"].get("version") for r in promotions) == ["1", "2"]
    assert {r["state_name"] for r in promotions} == {"Completed"}
    checks = [r for r in week.runs("drift-monitor/on-new-batch") if r["parameters"].get("bucket") == BUCKET]
    failed = {r["parameters"]["key"] for r in checks if r["state_name"] != "Completed"}
    assert failed == {f"incoming/{MODEL}/day2-20h.parquet"}, [(r["parameters"]["key"], r["state_name"]) for r in checks]

    row.survived, row.recover_seconds = True, recovered_in
    row.data_lost = (f"none ({len(frames)} batches, {len(checks)} checks, 1 rejected, v1 -> v2, "
                     f"{len(set(announced))} re-announced by reconcile)")
