"""Parameters: defaults in one place, and runs recorded before a field existed still match today's runs."""

import json

import pytest
from pydantic import ValidationError

from seqcast.params import ForecastParams, normalized_params


def test_recorded_params_missing_newer_fields_take_their_defaults():
    today = ForecastParams(variant="deep_rnn_dense", epochs=20).model_dump()
    recorded_before = {k: v for k, v in today.items() if k not in ("steps_per_execution", "dataset_id")}
    assert normalized_params(json.dumps(recorded_before)) == today
    assert normalized_params(json.dumps({**recorded_before, "epochs": 21})) != today
    # recorded while steps_per_execution defaulted to null ("the variant's"): still today's run
    assert normalized_params(json.dumps({**recorded_before, "steps_per_execution": None})) == today


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
    # an ln_rnn run recorded before its default changed (patience 5) stays a run with patience 5
    recorded = {**ForecastParams(variant="ln_rnn").model_dump(), "patience": 5}
    assert normalized_params(json.dumps(recorded))["patience"] == 5
