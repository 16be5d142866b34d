"""Would this spec train, on this data? Every problem at once, before any run is started.

What ``leanops spec check`` answers: the spec's own problems (``load_spec`` raises a SpecError naming the
field), then the data's (the contract, the labels, and the feature build a retrain would do next).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leanops import contract, storage
from leanops.errors import LeanopsError
from leanops.features import build_feature_set
from leanops.results import Batch
from leanops.spec import Spec, load_spec


@dataclass(frozen=True)
class SpecCheck:
    spec: str
    """The name or path that was checked."""
    data: str | None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    rows: int | None = None
    split: dict[str, int] = field(default_factory=dict)
    """Rows per split (train, valid, holdout) the data would give."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        if not self.ok:
            return f"{len(self.problems)} problem(s)"
        if self.data is None:
            return f"spec {self.spec} loads"
        sizes = ", ".join(f"{k} {v:,}" for k, v in self.split.items())
        return f"spec {self.spec} would train on {self.data} ({self.rows:,} rows: {sizes})"


def data_problems(spec: Spec, frame, uri: str) -> tuple[list[str], list[str], dict[str, int]]:
    """(problems, warnings, split sizes) of ``frame`` against ``spec``: the contract and labels, then the features."""
    problems, warnings = contract.check_batch(frame, spec)
    target_problems = getattr(contract, "target_problems", None)
    if target_problems is not None:
        problems += [p for p in target_problems(frame, spec) if p not in problems]
    if problems:
        return problems, warnings, {}
    try:
        features = build_feature_set(Batch(uri=uri, fingerprint="spec-check", frame=frame), spec)
    except LeanopsError as exc:
        return [str(exc)], warnings, {}
    except (ValueError, TypeError, KeyError) as exc:  # what a retrain would hit in build_features: report it, here
        return [f"building the features fails: {type(exc).__name__}: {exc}"], warnings, {}
    empty = [name for name, size in features.sizes.items() if size == 0]
    if empty:
        problems.append(f"the {', '.join(empty)} split(s) would be empty ({features.sizes}): the data has too few labelled rows")
    return problems, warnings, features.sizes


def check_spec(spec_ref: str, data_uri: str | None = None) -> SpecCheck:
    """Load the spec (a name in the specs folder or a path) and, given data, check it against the spec."""
    try:
        spec = load_spec(spec_ref)
    except LeanopsError as exc:
        return SpecCheck(spec_ref, data_uri, problems=(str(exc),))
    if data_uri is None:
        return SpecCheck(spec_ref, None)
    try:
        frame, _ = storage.read_table(data_uri)
    except LeanopsError as exc:
        return SpecCheck(spec_ref, data_uri, problems=(str(exc),))
    problems, warnings, split = data_problems(spec, frame, data_uri)
    return SpecCheck(spec_ref, data_uri, tuple(problems), tuple(warnings), len(frame), split)
