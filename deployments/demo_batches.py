"""The batches the demo lands: the real months of 2013, and two made to show what the real months never
force: an export that lost its weather join, and labels from a faulty feed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leanops import datasets
from leanops.datasets import WEATHER_COLUMNS
from leanops.features import model_input_columns
from leanops.modeling import predict_scores
from leanops.spec import Spec


def month(number: int) -> pd.DataFrame:
    return datasets.flights([number])


def lost_weather_join(number: int) -> pd.DataFrame:
    """A month exported again without the weather join: every weather column empty."""
    return month(number).assign(**{column: np.nan for column in WEATHER_COLUMNS})


def labels_against(number: int, champion_model, previous_model, spec: Spec, positive_share: float = 0.2) -> pd.DataFrame:
    """A month whose delays come from a faulty feed: a flight counts as late where the previous
    champion ranks it much riskier than the champion does. On these labels the champion degrades and
    the previous champion scores better, which is exactly the case a rollback is for."""
    frame = month(number)
    inputs = frame[model_input_columns(spec)]
    champion_rank = pd.Series(predict_scores(champion_model, inputs, spec)).rank(pct=True)
    previous_rank = pd.Series(predict_scores(previous_model, inputs, spec)).rank(pct=True)
    late = (previous_rank - champion_rank).rank(pct=True) > 1 - positive_share
    threshold = spec.target.positive_when_gt or 0
    return frame.assign(dep_delay=np.where(late.to_numpy(), threshold + 30.0, -3.0))

