"""Parameters: defaults in one place, the variant's hyperparameters only, one source for the flow's signature."""

import json

import pytest
from pydantic import ValidationError
from pydantic_core import PydanticUndefined

from seqcast.config.params import ForecastParams, normalized_params


def test_recorded_params_normalise_to_the_same_run():
    today = ForecastParams(variant="deep_rnn_dense", epochs=20).model_dump()
    assert normalized_params(json.dumps(today)) == today
    assert normalized_params(json.dumps({**today, "epochs": 21})) != today
    # a dump with the variant's defaults left out is the same run
    given = {k: v for k, v in today.items() if k not in ("units", "patience", "jit_compile")}
    assert normalized_params(json.dumps(given)) == today


def test_hyperparameters_are_the_variants_and_others_are_refused():
    assert ForecastParams(variant="lstm").hyperparameters() == {"units": 20, "dropout": 0.0, "recurrent_dropout": 0.0}
    assert ForecastParams(variant="ln_rnn", units=8).hyperparameters() == {"units": 8, "dropout": 0.0}
    assert ForecastParams(variant="wavenet").hyperparameters() == {}
    assert ForecastParams(variant="linear").units is None  # not recorded as if it shaped the model
    # N-BEATS's fully connected layers have a default width of their own, and take no dropout
    assert ForecastParams(variant="nbeats_generic").hyperparameters() == {"units": 64}
    assert ForecastParams(variant="nbeats_interpretable", units=16).hyperparameters() == {"units": 16}
    today = ForecastParams(variant="nbeats_generic").model_dump()
    assert normalized_params(json.dumps({k: v for k, v in today.items() if k != "units"})) == today
    for variant, option in (("wavenet", "units"), ("linear", "dropout"), ("simple_rnn", "units"),
                            ("ln_rnn", "recurrent_dropout"), ("naive", "units"),
                            ("nbeats_generic", "dropout")):
        with pytest.raises(ValidationError, match=f"variant '{variant}' does not use {option}"):
            ForecastParams(variant=variant, **{option: 5 if option == "units" else 0.1})


def test_the_flows_and_their_parameter_models_cannot_drift_apart():
    """A flow's signature is what deployments and the UI show; its model validates it: same names and defaults."""
    import inspect

    from seqcast.data.ingest import IngestParams
    from seqcast.flows.forecast import forecast
    from seqcast.flows.ingest import ingest
    from seqcast.flows.predict import predict
    from seqcast.forecasting.predict import PredictParams

    for flow, model in ((forecast, ForecastParams), (ingest, IngestParams), (predict, PredictParams)):
        signature = inspect.signature(flow.fn).parameters
        assert list(signature) == list(model.model_fields), flow.name
        for name, parameter in signature.items():
            default = model.model_fields[name].default
            assert parameter.default == (inspect.Parameter.empty if default is PydanticUndefined else default), name


def test_xla_default_is_the_variants_and_an_explicit_choice_wins():
    assert not ForecastParams(variant="linear").jit_compile and ForecastParams(variant="lstm").jit_compile
    assert ForecastParams(variant="linear", jit_compile=True).jit_compile
    assert not ForecastParams(variant="lstm", jit_compile=False).jit_compile
    # a run recorded with an explicit setting keeps it when normalised
    recorded = ForecastParams(variant="linear", jit_compile=True).model_dump()
    assert normalized_params(json.dumps(recorded))["jit_compile"] is True


def test_patience_default_is_the_variants_and_an_explicit_choice_wins():
    assert ForecastParams(variant="gru").patience == 5 and ForecastParams(variant="ln_rnn").patience == 10
    assert ForecastParams(variant="ln_rnn", patience=5).patience == 5
    assert ForecastParams.model_validate_json('{"variant": "ln_rnn", "patience": null}').patience == 10
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ForecastParams(variant="ln_rnn", patience=0)
    # an ln_rnn run recorded with patience 5 stays a run with patience 5
    recorded = {**ForecastParams(variant="ln_rnn").model_dump(), "patience": 5}
    assert normalized_params(json.dumps(recorded))["patience"] == 5
