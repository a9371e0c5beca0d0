"""The forecast flow's parameters: one pydantic model, defaults in one place, validated before any work."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from seqcast.config.names import SAFE_NAME
from seqcast.data.normalise import WindowNorm
from seqcast.data.synthetic import SyntheticSpec
from seqcast.models.registry import (
    CONV_KERNEL,
    CONV_STRIDES,
    HYPERPARAMETER_DEFAULTS,
    REGISTRY,
    Variant,
    check_hyperparameters,
    get_variant,
)

VARIANT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Variant)}
# Generation holds several float64 copies of the series at once: this many values keep it within a few GiB.
MAX_GENERATED_VALUES = 250_000_000
# The window norm of a model variant on an ingested dataset when none is chosen. Real series drift and trend past
# their training range, which `none` cannot follow (tests/test_window_norm.py). Of the two frames, `mean` is the
# default: the mean of a window carries far less of its noise than its last value, which shifts every input and
# target of the window by that one value's noise; on the trending series of bench/window_norm.py it scores at least
# as well as `last` across variants and seeds.
INGESTED_WINDOW_NORM = "mean"
Loss = Literal["mse", "mae", "huber"]
# The training loss of a model variant on an ingested dataset when none is chosen. The competitions score absolute
# errors (sMAPE, MASE), and on M3 monthly a model trained on MAE scores better by both than one trained on MSE
# (bench/results/levers-m3.md); the book's synthetic series keep the chapter's MSE, so their results stay as they were.
INGESTED_LOSS = "mae"
# Refused where an input window is cropped: a sequence target has one row per input step, which a crop would cut.
CROPPABLE_TARGETS = ("vector",)


def plain_id(cls, value: str | None, info) -> str | None:
    """Field validator: an optional id must be a plain name, since ids become folder names and query values."""
    if value is not None and not SAFE_NAME.match(value):
        raise ValueError(f"{info.field_name} {value!r} is not a plain id")
    return value


def check_input_steps(input_steps: int, n_steps: int, where: str = "") -> None:
    if input_steps > n_steps:
        raise ValueError(f"input_steps {input_steps} is more than the n_steps {n_steps}{where}: a model can only "
                         f"leave out the first values of a window")


def check_strided_fit(variant: str, n_steps: int) -> None:
    """A strided Conv1D front end must emit an output that ends exactly at the last input step.

    Output j of Conv1D(kernel 4, strides 2, valid) sees inputs [2j, 2j + 3]; with an odd ``n_steps`` the last
    output ends one step early, and its targets would no longer be the values after the last input.
    """
    if get_variant(variant).target != "strided":
        return
    if n_steps < CONV_KERNEL or (n_steps - CONV_KERNEL) % CONV_STRIDES:
        raise ValueError(f"variant {variant!r} needs n_steps >= {CONV_KERNEL} with n_steps - {CONV_KERNEL} a "
                         f"multiple of {CONV_STRIDES} (got {n_steps}); use {max(CONV_KERNEL, n_steps + 1)} "
                         f"or {max(CONV_KERNEL, n_steps - 1)} input steps")


# What a run records when it does not set them, on the book's synthetic series or for a baseline.
CHAPTER_DEFAULTS = {"window_norm": "none", "loss": "mse"}


class ForecastParams(BaseModel):
    """Parameters of one forecast run; every training default is the seed notebook's, but XLA and ln_rnn's patience."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: str = Field("linear", description=f"model variant: {', '.join(REGISTRY)}")
    n_series: int = Field(10_000, ge=1, description="series to generate")
    n_steps: int = Field(50, ge=2, description="input steps per window")
    horizon: int | None = Field(None, ge=1, description="steps to forecast; default: the variant's (1 or 10)")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="seed of data generation and of training")
    n_train: int = Field(7_000, ge=1)
    n_valid: int = Field(2_000, ge=1)
    n_test: int = Field(1_000, ge=0)
    epochs: int = Field(100, ge=1, description="maximum epochs (early stopping may end sooner)")
    patience: int = Field(None, ge=1, validate_default=True,
                          description="EarlyStopping patience on val_loss; default: the variant's (5, the seed "
                                      "notebook's; 10 for ln_rnn, whose loss spikes outlast 5 epochs)")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0, allow_inf_nan=False, description="Nadam learning rate")
    units: int | None = Field(None, ge=1, le=4096, description="units per recurrent layer, or width of N-BEATS's "
                                                               "and mlp's fully connected layers; default: 20 for "
                                                               "recurrent layers of their own size, 64 for N-BEATS, "
                                                               "256 for mlp, refused elsewhere")
    dropout: float | None = Field(None, ge=0, lt=1, description="input dropout of the recurrent layers; default: 0 "
                                                                "where the variant has them, refused elsewhere")
    recurrent_dropout: float | None = Field(None, ge=0, lt=1, description="recurrent dropout; default: 0 where the "
                                                                          "variant has it, refused elsewhere")
    jit_compile: bool = Field(None, validate_default=True,
                              description="compile training with XLA; default: the variant's (on, except for the "
                                          "linear models, whose steps are too small to repay XLA's compile time)")
    steps_per_execution: int = Field(32, ge=1, description="batches per compiled training call (bench/levers.py)")
    base_run_id: str | None = Field(None, description="iterative variants: the one-step run to reuse")
    dataset_id: str | None = Field(None, description="an ingested dataset to train on; its n_steps and horizon "
                                                     "apply and the generation parameters are ignored")
    window_norm: WindowNorm | None = Field(
        None, description="window-level normalisation of what a model sees: none; last or mean (subtract the input "
                          "window's last value or mean, divide by its std, map the forecast back); default: none on "
                          f"the synthetic series, {INGESTED_WINDOW_NORM} on an ingested dataset; baselines are the "
                          "same in any frame")
    loss: Loss | None = Field(
        None, description="training loss (and early stopping's): mse, mae or huber (delta 1, in the frame the model "
                          f"sees); default: mse on the synthetic series, {INGESTED_LOSS} on an ingested dataset")
    input_steps: int | None = Field(
        None, ge=1, description="fit on the last INPUT_STEPS values of each input window only (the model still "
                                "takes n_steps values, in the frame of the whole window); variants with a vector "
                                "target; default: all n_steps")
    steps_per_epoch: int = Field(
        1000, ge=0, description="batches per epoch when training draws its windows at random from an ingested "
                                "dataset's series, at most one pass's worth of its windows; 0: fit every stored "
                                "training window once per epoch, all held in memory (as the book's synthetic windows "
                                "always are)")

    @model_validator(mode="before")
    @classmethod
    def _chapter_defaults(cls, data):
        """The book's synthetic series keep the chapter's settings (no window norm, MSE), so their results stay as
        they were; a baseline's forecast is the same in any frame and it trains nothing, so it records them too.
        An ingested dataset's defaults are set by :meth:`for_dataset`."""
        if not isinstance(data, dict):
            return data
        name = data.get("variant", cls.model_fields["variant"].default)
        variant = REGISTRY.get(name) if isinstance(name, str) else None
        if data.get("dataset_id") is None or (variant is not None and variant.target in ("naive", "stats")):
            return {**data, **{k: v for k, v in CHAPTER_DEFAULTS.items() if data.get(k) is None}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _variant_hyperparameters(cls, data):
        """Give the variant's hyperparameters their defaults; refuse one the variant does not use."""
        if not isinstance(data, dict):
            return data
        name = data.get("variant", cls.model_fields["variant"].default)
        variant = REGISTRY.get(name) if isinstance(name, str) else None
        if variant is None:
            return data  # the variant's own validator names the problem
        check_hyperparameters(variant, [k for k in HYPERPARAMETER_DEFAULTS if data.get(k) is not None])
        defaults = variant.hyperparameter_defaults()
        return {**data, **{k: value for k, value in defaults.items() if data.get(k) is None}}

    @field_validator("variant", mode="before")
    @classmethod
    def _known_variant(cls, name: str) -> str:
        if not isinstance(name, str) or not SAFE_NAME.match(name):
            raise ValueError(f"variant name {name!r} is not a plain name (letters, digits, '_', '.', '-')")
        get_variant(name)
        return name

    _safe_ids = field_validator("base_run_id", "dataset_id")(plain_id)

    @field_validator("jit_compile", "patience", mode="before")
    @classmethod
    def _variant_default(cls, value, info: ValidationInfo):
        if value is None:
            variant = REGISTRY.get(info.data.get("variant"))
            return getattr(variant, info.field_name) if variant is not None else VARIANT_DEFAULTS[info.field_name]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ForecastParams:
        variant = get_variant(self.variant)
        if variant.fixed_horizon and self.horizon not in (None, variant.horizon):
            raise ValueError(
                f"variant {self.variant!r} forecasts exactly {variant.horizon} step(s), not {self.horizon}")
        if self.base_run_id is not None and variant.target != "iterative":
            iterative = [v.name for v in REGISTRY.values() if v.target == "iterative"]
            raise ValueError(f"base_run_id applies to iterative variants only ({', '.join(iterative)}), "
                             f"not to {self.variant!r}")
        if variant.target == "iterative" and self.window_norm not in (None, "none"):
            raise ValueError(f"window_norm {self.window_norm!r} does not apply to iterative variants such as "
                             f"{self.variant!r}; leave it out")
        if self.input_steps is not None:
            if variant.target not in CROPPABLE_TARGETS or not variant.trainable:
                croppable = [v.name for v in REGISTRY.values() if v.target in CROPPABLE_TARGETS and v.trainable]
                raise ValueError(f"input_steps applies to variants with a vector target ({', '.join(croppable)}), "
                                 f"not to {self.variant!r}")
            if self.dataset_id is None:
                check_input_steps(self.input_steps, self.n_steps)
        if self.dataset_id is None and not variant.needs_dataset:  # needs_dataset: refused by require_data
            values = self.n_series * (self.n_steps + self.effective_horizon)
            if values > MAX_GENERATED_VALUES:
                raise ValueError(f"n_series {self.n_series} x (n_steps {self.n_steps} + horizon "
                                 f"{self.effective_horizon}) = {values:,} values to generate, more than the "
                                 f"{MAX_GENERATED_VALUES:,} one generated dataset may hold; use fewer or shorter "
                                 f"series")
            self.dataset_spec()  # raises when the split does not fit n_series
            check_strided_fit(self.variant, self.n_steps)
        return self

    def for_dataset(self, manifest: dict) -> ForecastParams:
        """These parameters on an ingested dataset (its manifest): its n_steps and horizon apply; a variant that
        cannot fit it, or a dataset without training or validation windows, fails before any work."""
        variant = get_variant(self.variant)
        spec, shapes = manifest["spec"], manifest["shapes"]
        empty = [split for split in ("train", "valid") if shapes[split][0] == 0]
        if empty:
            raise ValueError(f"dataset {self.dataset_id} has no {' and no '.join(empty)} windows to fit on; "
                             f"ingest its file again with longer series or smaller windows")
        horizon = spec["horizon"]
        if variant.target == "iterative":
            raise ValueError(f"variant {self.variant!r} is not supported on ingested datasets yet; "
                             f"train a direct multi-step variant instead")
        if variant.fixed_horizon and variant.horizon != horizon:
            raise ValueError(f"variant {self.variant!r} forecasts exactly {variant.horizon} step(s), but dataset "
                             f"{self.dataset_id} has horizon {horizon}")
        if self.horizon not in (None, horizon):
            raise ValueError(f"horizon {self.horizon} does not fit dataset {self.dataset_id} (horizon {horizon})")
        if self.n_steps not in (type(self).model_fields["n_steps"].default, spec["n_steps"]):  # set, and not to it
            raise ValueError(f"n_steps {self.n_steps} does not fit dataset {self.dataset_id} (n_steps "
                             f"{spec['n_steps']}); leave n_steps out: the dataset's applies")
        check_strided_fit(self.variant, spec["n_steps"])
        if variant.needs_dataset:
            if spec.get("split") != "last-horizon":
                raise ValueError(f"variant {self.variant!r} forecasts one part of {horizon} values per series and "
                                 f"split, so it needs a dataset ingested with split='last-horizon'; dataset "
                                 f"{self.dataset_id} was split by {spec.get('split', 'fractions')}")
            if "values" not in manifest.get("tables", []):
                raise ValueError(f"dataset {self.dataset_id} was ingested before seqcast stored each series' values, "
                                 f"which variant {self.variant!r} fits on; remove its folder and ingest it again")
        if self.input_steps is not None:
            check_input_steps(self.input_steps, spec["n_steps"], f" of dataset {self.dataset_id}")
        ingested = spec.get("kind") == "ingested"
        window_norm = self.window_norm or (INGESTED_WINDOW_NORM if ingested else "none")
        loss = self.loss or (INGESTED_LOSS if ingested else "mse")
        return self.model_copy(update={"n_steps": spec["n_steps"], "horizon": horizon, "window_norm": window_norm,
                                       "loss": loss})

    def require_data(self) -> None:
        """Refuse a variant that cannot run on the book's synthetic series (a statistical baseline without a
        dataset_id), naming the problem; the parameters themselves stay valid, as a deployment's defaults are."""
        variant = get_variant(self.variant)
        if variant.needs_dataset and self.dataset_id is None:
            raise ValueError(f"variant {self.variant!r} fits each series' own history, which the book's synthetic "
                             f"windows do not keep: name an ingested dataset with dataset_id (--dataset-id; e.g. one "
                             f"from `seqcast ingest --benchmark m3-monthly`)")

    @property
    def target_dataset_id(self) -> str:
        return self.dataset_id or self.dataset_spec().dataset_id

    @property
    def effective_horizon(self) -> int:
        return self.horizon or get_variant(self.variant).horizon

    def dataset_spec(self) -> SyntheticSpec:
        return SyntheticSpec(n_series=self.n_series, n_steps=self.n_steps, horizon=self.effective_horizon,
                             seed=self.seed, n_train=self.n_train, n_valid=self.n_valid, n_test=self.n_test)

    def hyperparameters(self) -> dict:
        """The hyperparameters the variant's builder takes, by name."""
        return {name: getattr(self, name) for name in get_variant(self.variant).hyperparameters}


def normalized_params(params_json: str) -> dict:
    """A recorded run's parameters, validated and with every default filled in, as a dump of today's run is."""
    recorded = json.loads(params_json)
    # a run recorded before the loss option existed trained on MSE, on an ingested dataset too; one recorded before
    # steps_per_epoch existed fitted every stored training window once per epoch
    return ForecastParams(**{"loss": "mse", "steps_per_epoch": 0, **recorded}).model_dump()
