"""Hostile flow parameters end in a clear refusal before any work: from Python, the command line and the API.

The parameter models are fuzzed directly (fast); a few hostile sets go through the flows in this process, and
tests/test_deployments.py sends some through a served deployment. ``make test-fuzz`` runs the ``long`` profile.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from prefect.exceptions import ParameterBindError, ParameterTypeError
from pydantic import ValidationError

from seqcast.config.params import MAX_GENERATED_VALUES, ForecastParams
from seqcast.flows.forecast import forecast
from seqcast.flows.predict import predict
from seqcast.forecasting.predict import PredictParams

HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2, 2**31, 2**32, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -0.0, 1e308]),
    st.text(max_size=20), st.sampled_from(["../../etc", "ds-000000000000", "linear; DROP TABLE runs", "", " "]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))

# Prefect checks the values against the flow's signature first; the parameter model checks the rest
REFUSALS = (ValidationError, ParameterTypeError, ParameterBindError)


def hostile(model) -> st.SearchStrategy[dict]:
    """Parameter dicts with some of the model's fields (and an unknown one) set to hostile values."""
    names = st.sampled_from([*model.model_fields, "bogus"])
    return st.dictionaries(names, HOSTILE_VALUES, min_size=1, max_size=4)


def bounded(params: ForecastParams) -> bool:
    """What a valid parameter set may ask for: a dataset of bounded size, finite numbers, plain ids."""
    return (params.n_series * (params.n_steps + params.effective_horizon) <= MAX_GENERATED_VALUES
            and math.isfinite(params.learning_rate) and 0 <= params.seed < 2**32)


@given(hostile(ForecastParams))
def test_forecast_parameters_are_valid_and_bounded_or_refused(values):
    try:
        params = ForecastParams(**values)
    except ValidationError:
        return
    assert bounded(params)
    assert ForecastParams(**params.model_dump()) == params  # what a run records validates again as the same run


@given(hostile(PredictParams))
def test_predict_parameters_are_valid_or_refused(values):
    try:
        params = PredictParams(**values)
    except ValidationError:
        return
    assert PredictParams(**params.model_dump()) == params  # what a prediction records validates again as the same


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=hostile(ForecastParams))
@pytest.mark.usefixtures("prefect_harness")
def test_the_forecast_flow_refuses_hostile_parameters_before_any_work(values, home):
    try:
        ForecastParams(**{k: v for k, v in values.items() if k != "bogus"})
        assume("bogus" in values)  # a valid set would train: only refusals are run here
    except ValidationError:
        pass
    with pytest.raises(REFUSALS) as refused:
        forecast(**values)
    assert str(refused.value)
    assert not home.exists()  # no dataset, model or record


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=hostile(PredictParams))
@pytest.mark.usefixtures("prefect_harness")
def test_the_predict_flow_refuses_hostile_parameters_before_any_work(values, home):
    try:
        PredictParams(**{k: v for k, v in values.items() if k != "bogus"})
        assume("bogus" in values)  # a valid set would look for a run
    except ValidationError:
        pass
    with pytest.raises(REFUSALS):
        predict(**values)
    assert not home.exists()
