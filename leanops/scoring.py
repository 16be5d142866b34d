"""Batch scoring: a table of any size through a model, chunk by chunk, its predictions to the object store.

Memory follows the chunk, not the file: parquet is read one record batch at a time (row group by row
group), CSV in chunks of rows, and predictions are appended to a local parquet file that is uploaded
once complete. Every chunk is checked against the spec's contract for the model's inputs (labels are
not needed) before it is scored; a violation stops the run and nothing lands under the output prefix.

What the output holds per task (one row per input row, in input order, ``row`` its position):
binary ``probability`` (of the positive class) and ``predicted`` (0/1, probability >= 0.5); multiclass
``probability_<class>`` per class of ``target.classes`` and ``predicted`` (the class name); regression
``prediction``. Every row also names the model, its version and the input's fingerprint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import pandas as pd

from leanops import storage
from leanops.contract import input_problems
from leanops.errors import BatchReadError, ContractViolation
from leanops.features import model_input_columns
from leanops.modeling import predict_scores, predicted_classes
from leanops.settings import Settings, get_settings
from leanops.spec import Spec

Progress = Callable[[int, float], None]
"""Called after each chunk with (rows scored so far, share of the input read: 0..1)."""

MAX_WARNINGS = 20
_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".csv.gz")


@dataclass(frozen=True)
class ScoringResult:
    model: str
    version: str
    input_uri: str
    input_fingerprint: str
    output_uri: str
    rows: int
    chunks: int
    seconds: float
    warnings: tuple[str, ...] = ()

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def summary_markdown(self) -> str:
        lines = [
            f"**{self.rows:,} rows** of `{self.input_uri}` scored by {self.model} v{self.version} "
            f"in {self.chunks} chunk(s), {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s).",
            "",
            f"Predictions: `{self.output_uri}` (input fingerprint `{self.input_fingerprint}`).",
        ]
        lines += [f"- warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def output_uri(input_uri: str, model: str, version: str, fingerprint: str, settings: Settings | None = None) -> str:
    """Where a batch's predictions go: ``<output root><model>/<input name>.v<version>.<fingerprint>.parquet``.
    The same input scored by the same version lands on the same object (a rerun replaces it)."""
    settings = settings or get_settings()
    name = storage.split_s3_uri(input_uri)[1] if storage.is_s3(input_uri) else storage.local_path(input_uri).name
    stem = name.rsplit("/", 1)[-1]
    for suffix in (*_CSV, *_PARQUET):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return f"{settings.resolved_scoring_output_root.rstrip('/')}/{model}/{stem}.v{version}.{fingerprint}.parquet"


def _table_format(uri: str) -> str:
    lowered = uri.split("?versionId=", 1)[0].lower()
    if lowered.endswith(_PARQUET):
        return "parquet"
    if lowered.endswith(_CSV):
        return "csv"
    raise BatchReadError(f"{uri}: unknown table format (score .parquet or .csv files)")


def iter_chunks(path: Path, uri: str, chunk_rows: int, columns: list[str]) -> Iterator[tuple[pd.DataFrame, float]]:
    """(rows, share of the file read) chunk by chunk, with only ``columns`` read; missing columns are
    refused before the first chunk, naming every one."""
    kind = _table_format(uri)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            source = pq.ParquetFile(path)
            _refuse_missing(uri, columns, source.schema_arrow.names)
            total = max(source.metadata.num_rows, 1)
            done = 0
            for batch in source.iter_batches(batch_size=chunk_rows, columns=columns):
                done += batch.num_rows
                yield batch.to_pandas(), done / total
            return
        size = max(path.stat().st_size, 1)
        wanted = set(columns)
        with path.open("rb") as handle:
            compression = "gzip" if uri.lower().endswith(".gz") else None
            reader = pd.read_csv(handle, chunksize=chunk_rows, usecols=lambda c: c in wanted, compression=compression)
            first = True
            for chunk in reader:
                if first:
                    _refuse_missing(uri, columns, list(chunk.columns))
                    first = False
                yield chunk, min(handle.tell() / size, 1.0)
    except (BatchReadError, ContractViolation):
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow / the csv parser raise many types: one specific error
        raise BatchReadError(f"{uri}: cannot be read as a table: {type(exc).__name__}: {exc}") from exc


def _refuse_missing(uri: str, columns: list[str], present: list[str]) -> None:
    missing = [c for c in columns if c not in present]
    if missing:
        raise ContractViolation(uri, [f"missing column {c!r} (a model input)" for c in missing])


def prediction_frame(scores: np.ndarray, spec: Spec) -> pd.DataFrame:
    """The output columns of one chunk's scores (``modeling.predict_scores``), per task (module docstring)."""
    if spec.task == "regression":
        return pd.DataFrame({"prediction": np.asarray(scores, dtype="float64")})
    predicted = predicted_classes(scores, spec)
    if spec.task == "binary":
        return pd.DataFrame({"probability": np.asarray(scores, dtype="float64"), "predicted": predicted})
    probabilities = {f"probability_{name}": np.asarray(scores[:, i], dtype="float64") for i, name in enumerate(spec.target.classes)}
    return pd.DataFrame({**probabilities, "predicted": np.asarray(spec.target.classes, dtype=object)[predicted]})


class _NullCounts:
    """Nulls per contract column across chunks: a null share is a property of the whole batch."""

    def __init__(self, spec: Spec, columns: list[str]):
        self.rules = {c: spec.contract.columns[c] for c in columns if c in spec.contract.columns}
        self.nulls = dict.fromkeys(self.rules, 0)
        self.rows = 0

    def add(self, chunk: pd.DataFrame) -> None:
        self.rows += len(chunk)
        for name in self.rules:
            self.nulls[name] += int(chunk[name].isna().sum())

    def problems(self) -> list[str]:
        found = []
        for name, rule in self.rules.items():
            share = self.nulls[name] / self.rows if self.rows else 0.0
            if self.rows and share == 1.0:
                found.append(f"column {name!r} is entirely null")
            elif share > rule.max_null_share:
                found.append(f"column {name!r} has {share:.1%} nulls; at most {rule.max_null_share:.1%} allowed")
        return found


def score_file(
    model: Any, spec: Spec, path: Path, uri: str, out_path: Path, *, chunk_rows: int,
    constants: dict[str, str], on_progress: Progress | None = None,
) -> tuple[int, int, tuple[str, ...]]:
    """Score the table at ``path`` (named ``uri`` in errors) chunk by chunk into the parquet file ``out_path``;
    returns (rows, chunks, warnings). ``constants`` become columns of every row and the file's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = model_input_columns(spec)
    nulls = _NullCounts(spec, columns)
    warnings: list[str] = []
    writer = None
    rows = chunks = 0
    try:
        for chunk, share in iter_chunks(path, uri, chunk_rows, columns):
            violations, reported = input_problems(chunk, spec, columns)
            if violations:
                where = f"rows {rows:,}-{rows + len(chunk) - 1:,}"
                raise ContractViolation(uri, [f"{where}: {v}" for v in violations])
            if len(warnings) < MAX_WARNINGS:  # a warning repeated in every chunk of a huge file says nothing new
                warnings += [f"rows {rows:,}-{rows + len(chunk) - 1:,}: {w}" for w in reported][: MAX_WARNINGS - len(warnings)]
            nulls.add(chunk)
            out = prediction_frame(predict_scores(model, chunk, spec), spec)
            out.insert(0, "row", np.arange(rows, rows + len(chunk), dtype="int64"))
            table = pa.Table.from_pandas(out.assign(**constants), preserve_index=False)
            if writer is None:
                metadata = {**(table.schema.metadata or {}), **{f"leanops.{k}".encode(): v.encode() for k, v in constants.items()}}
                writer = pq.ParquetWriter(out_path, table.schema.with_metadata(metadata))
            writer.write_table(table)
            rows += len(chunk)
            chunks += 1
            if on_progress is not None:
                on_progress(rows, share)
    finally:
        if writer is not None:
            writer.close()
    problems = nulls.problems()
    if problems:
        raise ContractViolation(uri, problems)
    if rows == 0:
        raise ContractViolation(uri, ["the batch has no rows to score"])
    return rows, chunks, tuple(warnings)


def score_batch(
    input_uri: str, model: Any, model_name: str, version: str, spec: Spec, *,
    chunk_rows: int | None = None, on_progress: Progress | None = None, settings: Settings | None = None,
) -> ScoringResult:
    """Score one object (s3:// or a local path) with a loaded model (``predict_proba`` / ``predict`` on raw
    columns) and put its predictions at :func:`output_uri`. The object is streamed to a temporary file first
    (never held in memory) and pinned by its ETag, so a replaced object is refused, not read half old."""
    settings = settings or get_settings()
    started = time.perf_counter()
    info = storage.stat(input_uri, settings)
    target = output_uri(input_uri, model_name, version, info.fingerprint, settings)
    constants = {"model_name": model_name, "model_version": str(version), "input_fingerprint": info.fingerprint}
    with TemporaryDirectory(prefix="leanops-score-") as tmp:
        if storage.is_s3(input_uri):
            local = Path(tmp) / ("input" + (".csv.gz" if input_uri.lower().endswith(".gz") else "." + _table_format(input_uri)))
            storage.download_file(input_uri, local, info.etag, settings)
        else:
            local = storage.local_path(input_uri)
        out_path = Path(tmp) / "predictions.parquet"
        rows, chunks, warnings = score_file(
            model, spec, local, input_uri, out_path, chunk_rows=chunk_rows or settings.scoring_chunk_rows,
            constants=constants, on_progress=on_progress,
        )
        storage.upload_file(out_path, target, settings)
    return ScoringResult(model_name, str(version), input_uri, info.fingerprint, target, rows, chunks,
                         time.perf_counter() - started, warnings)
