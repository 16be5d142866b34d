"""A prediction request: one JSON object (one row) or a JSON array of objects (a batch), each row
checked against the model's contract before anything is scored.

A bad row is the caller's mistake, answered with a 422 that names the row, the column and the rule;
the checks are the contract's own (``leanops.contract.value_problem``), one value at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from leanops.contract import value_problem
from leanops.features import model_input_columns
from leanops.spec import Spec


@dataclass(frozen=True)
class Problem:
    """One reason a request is refused: ``loc`` as FastAPI reports it (``["body", row, column]``)."""

    loc: tuple[str | int, ...]
    rule: str
    message: str

    def as_detail(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "type": self.rule, "msg": self.message}


class InvalidRequest(ValueError):
    """The request cannot be scored; every problem found is listed (at most ``MAX_PROBLEMS``)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems[:5]))


MAX_PROBLEMS = 50


@dataclass(frozen=True)
class RowChecker:
    """The spec's model inputs and their contract rules, looked up once per spec instead of per row."""

    columns: tuple[str, ...]
    rules: tuple[tuple[str, Any], ...]  # (column, ColumnRule) of the inputs the contract has a rule for

    @classmethod
    def for_spec(cls, spec: Spec) -> RowChecker:
        columns = tuple(model_input_columns(spec))
        rules = tuple((c, spec.contract.columns[c]) for c in columns if c in spec.contract.columns)
        return cls(columns, rules)

    def problems(self, index: int, row: Any) -> list[Problem]:
        if not isinstance(row, dict):
            return [Problem(("body", index), "row_type", f"row {index} must be a JSON object of column: value, found {type(row).__name__}")]
        found = [
            Problem(("body", index, c), "missing", f"row {index}: missing column {c!r} (a model input)")
            for c in self.columns if c not in row
        ]
        for column, rule in self.rules:
            if column in row:
                problem = value_problem(column, row[column], rule)
                if problem is not None:
                    found.append(Problem(("body", index, column), problem[0], f"row {index}: {problem[1]}"))
        return found


def parse_rows(body: bytes, checker: RowChecker, max_rows: int) -> tuple[list[dict[str, Any]], bool]:
    """The request's rows and whether it was a batch (a JSON array), or ``InvalidRequest``."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest([Problem(("body",), "json_invalid", f"the body is not valid JSON: {exc}")]) from exc
    batch = isinstance(payload, list)
    rows = payload if batch else [payload]
    if batch and not rows:
        raise InvalidRequest([Problem(("body",), "empty", "the batch holds no rows")])
    if len(rows) > max_rows:
        raise InvalidRequest([Problem(("body",), "too_many_rows", f"{len(rows):,} rows in one request; at most {max_rows:,}")])
    problems: list[Problem] = []
    for index, row in enumerate(rows):
        problems.extend(checker.problems(index, row))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise InvalidRequest(problems[:MAX_PROBLEMS])
    return rows, batch


def request_rows(frame, spec: Spec) -> list[dict[str, Any]]:
    """A batch's rows as a client sends them: the model's input columns, missing values as null,
    times as ISO 8601 text, numbers as plain JSON numbers (what the demo, the tests and the bench post)."""
    import pandas as pd

    columns = model_input_columns(spec)
    inputs = frame[columns].copy()
    for column in columns:
        if pd.api.types.is_datetime64_any_dtype(inputs[column]):
            inputs[column] = inputs[column].map(lambda t: None if pd.isna(t) else t.isoformat())
    inputs = inputs.astype(object).where(inputs.notna(), None)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in inputs.to_dict(orient="records")]
