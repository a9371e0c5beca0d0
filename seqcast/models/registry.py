"""The chapter's model variants, and N-BEATS beyond it: a registry of builders keyed by variant name.

Every builder takes every dimension as an argument (``n_steps``, ``horizon``) and names each hyperparameter it
uses (``units``, dropout rates); a variant lists those in ``hyperparameters``, and an option a variant does not use
is refused rather than recorded as if it changed the model. A builder returns an uncompiled Keras model mapping
inputs (batch, steps, 1) to either (batch, horizon) for ``target="vector"`` or (batch, out_steps, horizon) for
sequence targets.
Keras is imported lazily so that importing the registry touches no TensorFlow state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Target = Literal["naive", "vector", "sequence", "strided", "iterative", "stats", "ensemble"]
# Conv1D front end of conv_gru: output step j sees inputs [j*stride, j*stride + kernel - 1].
CONV_KERNEL, CONV_STRIDES = 4, 2
CONV_FILTERS = 20  # conv_gru's front end and every WaveNet layer, as in the chapter
# The hyperparameters a variant may take, with the value a variant that uses one gets when it is not given.
HYPERPARAMETER_DEFAULTS = {"units": 20, "dropout": 0.0, "recurrent_dropout": 0.0}
RECURRENT = ("units", "dropout", "recurrent_dropout")

# N-BEATS (Oreshkin et al., 2020, "N-BEATS: Neural basis expansion analysis for interpretable time series
# forecasting"). Every block has NBEATS_LAYERS fully connected ReLU layers of `units` width, as in the paper.
# The paper sizes its models for M4's 100,000 series on GPUs: N-BEATS-G has 30 stacks of 1 block, width 512
# (about 25 million weights for a 50-step input); N-BEATS-I a trend stack (width 256) and a seasonality stack
# (width 2048) of 3 blocks each. Here they train on 7000 windows on a 2-core CPU next to models of a few thousand
# weights, so they are much smaller: the generic model has 2 stacks of 2 blocks, and both stacks of the
# interpretable model keep the paper's 3 blocks (sharing weights, they cost compute but no weights) at `units`
# width, 64 by default.
NBEATS_LAYERS = 4
NBEATS_UNITS = 64
NBEATS_GENERIC_STACKS, NBEATS_GENERIC_BLOCKS = 2, 2
NBEATS_INTERPRETABLE_BLOCKS = 3
NBEATS_TREND_DEGREE = 3  # the paper's p is "small, e.g. 2 or 3": cubic lets a trend bend twice within the horizon
# The multilayer perceptron: as deep as one N-BEATS block's fully connected stack, without the basis expansion and
# the residual stacking, so that it shows what those add; 256 wide, as the plain-Keras trial on M3 was.
MLP_LAYERS = 4
MLP_UNITS = 256


@dataclass(frozen=True)
class Member:
    """One member of an ensemble variant: a trained variant, and how its training differs from the ensemble's
    parameters. ``seed_offset`` is added to the ensemble's seed; ``loss`` None takes the ensemble's;
    ``input_share`` below 1 fits on the last ``ceil(input_share * n_steps)`` values of each window."""

    variant: str
    seed_offset: int = 0
    loss: str | None = None
    input_share: float = 1.0


@dataclass(frozen=True)
class Variant:
    """One model variant of the chapter and how it is trained and scored."""

    name: str
    family: str
    horizon: int
    target: Target
    description: str
    book_valid_mse: float | None  # None: the book has no figure (beyond the chapter: N-BEATS, the statistical ones)
    reference_valid_mse: float | None = None
    build: Callable | None = None
    fixed_horizon: bool = False
    recurrent: bool = False
    base_variant: str | None = None
    jit_compile: bool = True  # bench/levers.py: XLA's compile time outweighs its gain for the linear models
    patience: int = 5  # EarlyStopping's, the seed notebook's; more where the loss spikes for longer (ln_rnn)
    hyperparameters: tuple[str, ...] = ()  # the builder's arguments besides n_steps and horizon
    defaults: tuple[tuple[str, float], ...] = ()  # (name, value) where a default differs from HYPERPARAMETER_DEFAULTS
    method: str | None = None  # a "stats" variant's method in seqcast.models.stats
    members: tuple[Member, ...] = ()  # an "ensemble" variant's, whose forecast is the median of theirs

    @property
    def needs_dataset(self) -> bool:
        """Statistical baselines forecast each series from its whole known history, which only an ingested
        last-horizon dataset keeps; the book's synthetic windows have none. So does an ensemble with one among
        its members."""
        return self.target == "stats" or any(get_variant(m.variant).needs_dataset for m in self.members)

    @property
    def trainable(self) -> bool:
        return self.build is not None

    def hyperparameter_defaults(self) -> dict:
        """The value each of the variant's hyperparameters takes when it is not given."""
        own = dict(self.defaults)
        return {name: own.get(name, HYPERPARAMETER_DEFAULTS[name]) for name in self.hyperparameters}


def _layers():
    import keras

    return keras, keras.layers


def _linear(n_steps: int, horizon: int):
    keras, L = _layers()
    return keras.Sequential([keras.Input((n_steps, 1)), L.Flatten(), L.Dense(horizon)])


def _simple_rnn(n_steps: int, horizon: int, dropout: float, recurrent_dropout: float):
    keras, L = _layers()
    return keras.Sequential([keras.Input((None, 1)),
                             L.SimpleRNN(horizon, dropout=dropout, recurrent_dropout=recurrent_dropout)])


def _recurrent_stack(layer: str, units: int, dropout: float, recurrent_dropout: float, last_sequences: bool):
    """Two recurrent layers of ``units`` units; the second returns sequences when ``last_sequences``."""
    keras, L = _layers()
    cls = getattr(L, layer)
    kw = dict(dropout=dropout, recurrent_dropout=recurrent_dropout)
    return [cls(units, return_sequences=True, **kw), cls(units, return_sequences=last_sequences, **kw)]


def _deep_rnn(n_steps: int, horizon: int, units: int, dropout: float, recurrent_dropout: float):
    keras, L = _layers()
    stack = _recurrent_stack("SimpleRNN", units, dropout, recurrent_dropout, last_sequences=True)
    return keras.Sequential([keras.Input((None, 1)), *stack, L.SimpleRNN(horizon)])


def _seq2vec(layer: str):
    def build(n_steps: int, horizon: int, units: int, dropout: float, recurrent_dropout: float):
        keras, L = _layers()
        stack = _recurrent_stack(layer, units, dropout, recurrent_dropout, last_sequences=False)
        return keras.Sequential([keras.Input((None, 1)), *stack, L.Dense(horizon)])

    return build


def _seq2seq(layer: str):
    def build(n_steps: int, horizon: int, units: int, dropout: float, recurrent_dropout: float):
        keras, L = _layers()
        stack = _recurrent_stack(layer, units, dropout, recurrent_dropout, last_sequences=True)
        return keras.Sequential([keras.Input((None, 1)), *stack, L.Dense(horizon)])

    return build


def _ln_rnn(n_steps: int, horizon: int, units: int, dropout: float):
    keras, L = _layers()
    from seqcast.models.layers import LNSimpleRNNCell

    return keras.Sequential([
        keras.Input((None, 1)),
        L.RNN(LNSimpleRNNCell(units, dropout=dropout), return_sequences=True),
        L.RNN(LNSimpleRNNCell(units, dropout=dropout), return_sequences=True),
        L.Dense(horizon),
    ])


def _conv_gru(n_steps: int, horizon: int, units: int, dropout: float, recurrent_dropout: float):
    keras, L = _layers()
    stack = _recurrent_stack("GRU", units, dropout, recurrent_dropout, last_sequences=True)
    return keras.Sequential([keras.Input((None, 1)),
                             L.Conv1D(CONV_FILTERS, CONV_KERNEL, strides=CONV_STRIDES, padding="valid"),
                             *stack, L.Dense(horizon)])


def _mlp(n_steps: int, horizon: int, units: int):
    keras, L = _layers()
    return keras.Sequential([keras.Input((n_steps, 1)), L.Flatten(),
                             *(L.Dense(units, activation="relu") for _ in range(MLP_LAYERS)), L.Dense(horizon)])


def _wavenet(n_steps: int, horizon: int):
    keras, L = _layers()
    layers = [keras.Input((None, 1))]
    for rate in (1, 2, 4, 8) * 2:
        layers.append(L.Conv1D(CONV_FILTERS, 2, padding="causal", activation="relu", dilation_rate=rate))
    layers.append(L.Conv1D(horizon, 1))
    return keras.Sequential(layers)


def _nbeats_block(name: str, units: int, theta_sizes: tuple[int, int], bases: tuple):
    """One N-BEATS block, as a function residual (batch, n_steps) -> (backcast (batch, n_steps), forecast (batch,
    horizon)).

    The block's layers are made once, here: calling the function again (another block of a stack that shares its
    weights) reuses them. ``theta_sizes``: the backcast's and the forecast's number of expansion coefficients;
    ``bases``: the backcast's and the forecast's basis layers, mapping those coefficients to values.
    """
    keras, L = _layers()
    hidden = [L.Dense(units, activation="relu", name=f"{name}_fc{i + 1}") for i in range(NBEATS_LAYERS)]
    # The paper's LINEAR projections to the coefficients: theta = W h, no bias.
    thetas = [L.Dense(size, use_bias=False, name=f"{name}_theta_{part}")
              for size, part in zip(theta_sizes, ("backcast", "forecast"), strict=True)]

    def block(residual):
        h = residual
        for layer in hidden:
            h = layer(h)
        return tuple(basis(theta(h)) for theta, basis in zip(thetas, bases, strict=True))

    return block


def _nbeats(n_steps: int, stacks: list[tuple[str, list]]):
    """Doubly residual stacking of ``stacks`` [(name, [block, ...]), ...] into a model (batch, n_steps, 1) ->
    (batch, horizon).

    Block k+1 takes the residual of block k's input minus block k's backcast; a stack's forecast is the sum of its
    blocks' forecasts and the model's the sum of its stacks'. Each block's backcast and forecast and each stack's
    forecast are named layers (``{stack}_block{k}_backcast``, ``{stack}_block{k}_forecast``, ``{stack}_forecast``),
    so the partial forecasts (the interpretable model's trend and seasonality) can be read from the model.
    """
    keras, L = _layers()
    inputs = keras.Input((n_steps, 1))
    residual = L.Flatten(name="window")(inputs)
    stack_forecasts = []
    for stack, blocks in stacks:
        forecasts = []
        for k, block in enumerate(blocks, 1):
            backcast, forecast = block(residual)
            backcast = L.Identity(name=f"{stack}_block{k}_backcast")(backcast)
            forecasts.append(L.Identity(name=f"{stack}_block{k}_forecast")(forecast))
            residual = L.Subtract(name=f"{stack}_block{k}_residual")([residual, backcast])
        stack_forecasts.append(L.Add(name=f"{stack}_forecast")(forecasts))
    return keras.Model(inputs, L.Add(name="forecast")(stack_forecasts))


def _nbeats_generic(n_steps: int, horizon: int, units: int):
    """N-BEATS-G: every block has its own weights and a learned linear basis V theta + b (a Dense layer with bias)
    for both its backcast and its forecast, with as many coefficients as values, as in the authors' code."""
    keras, L = _layers()

    def block(name):
        bases = (L.Dense(n_steps, name=f"{name}_basis_backcast"), L.Dense(horizon, name=f"{name}_basis_forecast"))
        return _nbeats_block(name, units, (n_steps, horizon), bases)

    return _nbeats(n_steps, [(f"stack{s}", [block(f"stack{s}_block{k}") for k in range(1, NBEATS_GENERIC_BLOCKS + 1)])
                             for s in range(1, NBEATS_GENERIC_STACKS + 1)])


def _nbeats_interpretable(n_steps: int, horizon: int, units: int):
    """N-BEATS-I: a trend stack (polynomial basis of degree NBEATS_TREND_DEGREE) then a seasonality stack (Fourier
    basis of the paper's floor(horizon / 2 - 1) harmonics), each of NBEATS_INTERPRETABLE_BLOCKS blocks that share
    their weights, as the paper's interpretable model does."""
    from seqcast.models.layers import FourierBasis, PolynomialBasis, fourier_harmonics

    degree, harmonics = NBEATS_TREND_DEGREE, fourier_harmonics(horizon)
    trend = _nbeats_block("trend", units, (degree + 1, degree + 1),
                          (PolynomialBasis(degree, n_steps, name="trend_basis_backcast"),
                           PolynomialBasis(degree, horizon, name="trend_basis_forecast")))
    season = _nbeats_block("seasonality", units, (1 + 2 * harmonics, 1 + 2 * harmonics),
                           (FourierBasis(harmonics, n_steps, horizon, name="seasonality_basis_backcast"),
                            FourierBasis(harmonics, horizon, horizon, name="seasonality_basis_forecast")))
    return _nbeats(n_steps, [("trend", [trend] * NBEATS_INTERPRETABLE_BLOCKS),
                             ("seasonality", [season] * NBEATS_INTERPRETABLE_BLOCKS)])


_VARIANTS = [
    Variant("naive", "baseline", 1, "naive", "last input value", 0.0202, 0.02021),
    Variant("linear", "linear", 1, "vector", "Flatten -> Dense(horizon)", 0.0042, 0.00295, _linear,
            jit_compile=False),
    Variant("simple_rnn", "rnn", 1, "vector", "SimpleRNN(1)", 0.0109, 0.01088, _simple_rnn,
            fixed_horizon=True, recurrent=True, hyperparameters=("dropout", "recurrent_dropout")),
    Variant("deep_rnn", "rnn", 1, "vector", "SimpleRNN(20, rs) -> SimpleRNN(20, rs) -> SimpleRNN(horizon)",
            0.0029, 0.00158, _deep_rnn, recurrent=True, hyperparameters=RECURRENT),
    Variant("deep_rnn_dense", "rnn", 1, "vector", "SimpleRNN(20, rs) -> SimpleRNN(20) -> Dense(horizon)",
            0.0026, 0.00252, _seq2vec("SimpleRNN"), recurrent=True, hyperparameters=RECURRENT),
    Variant("naive_10", "baseline", 10, "naive", "last input value repeated", 0.2570, 0.25697),
    Variant("linear_10", "linear", 10, "vector", "Flatten -> Dense(horizon)", 0.0187, 0.01569, _linear,
            jit_compile=False),
    Variant("iterative_10", "rnn", 10, "iterative", "one-step deep_rnn_dense applied horizon times, fed back",
            0.0275, 0.02241, base_variant="deep_rnn_dense", hyperparameters=RECURRENT),
    Variant("seq2vec_rnn", "rnn", 10, "vector", "SimpleRNN(20, rs) -> SimpleRNN(20) -> Dense(horizon)",
            0.0085, 0.00284, _seq2vec("SimpleRNN"), recurrent=True, hyperparameters=RECURRENT),
    Variant("seq2seq_rnn", "rnn", 10, "sequence", "SimpleRNN(20, rs) x2 -> Dense(horizon) per step",
            0.0096, 0.00498, _seq2seq("SimpleRNN"), recurrent=True, hyperparameters=RECURRENT),
    Variant("ln_rnn", "rnn", 10, "sequence", "layer-normalised SimpleRNN cell x2 -> Dense(horizon) per step",
            0.0121, 0.00586, _ln_rnn, recurrent=True, patience=10,  # bench/results/speed.md, ln_rnn accuracy
            hyperparameters=("units", "dropout")),
    Variant("lstm", "lstm", 10, "sequence", "LSTM(20, rs) x2 -> Dense(horizon) per step",
            0.0086, 0.00274, _seq2seq("LSTM"), recurrent=True, hyperparameters=RECURRENT),
    Variant("gru", "gru", 10, "sequence", "GRU(20, rs) x2 -> Dense(horizon) per step",
            0.0103, 0.00330, _seq2seq("GRU"), recurrent=True, hyperparameters=RECURRENT),
    Variant("conv_gru", "cnn", 10, "strided", "Conv1D(20, 4, strides 2) -> GRU(20, rs) x2 -> Dense(horizon)",
            0.0080, 0.00276, _conv_gru, recurrent=True, hyperparameters=RECURRENT),
    Variant("wavenet", "cnn", 10, "sequence", "causal Conv1D(20, 2) dilations 1,2,4,8 x2 -> Conv1D(horizon, 1)",
            0.0072, 0.00375, _wavenet),
    # Beyond the chapter: no book figure.
    Variant("nbeats_generic", "nbeats", 10, "vector",
            f"N-BEATS generic: {NBEATS_GENERIC_STACKS} stacks x {NBEATS_GENERIC_BLOCKS} blocks of {NBEATS_LAYERS} "
            f"Dense(units, relu) -> linear basis, doubly residual", None, build=_nbeats_generic,
            hyperparameters=("units",), defaults=(("units", NBEATS_UNITS),)),
    Variant("nbeats_interpretable", "nbeats", 10, "vector",
            f"N-BEATS interpretable: trend stack (degree-{NBEATS_TREND_DEGREE} polynomial) -> seasonality stack "
            f"(Fourier), {NBEATS_INTERPRETABLE_BLOCKS} weight-sharing blocks of {NBEATS_LAYERS} Dense(units, relu) "
            f"each, doubly residual", None, build=_nbeats_interpretable,
            hyperparameters=("units",), defaults=(("units", NBEATS_UNITS),)),
]

# The M competitions' statistical baselines (seqcast.models.stats), fitted per series at the dataset's period. They
# forecast the dataset's own horizon; ``horizon`` 0 says that they have none of their own.
_STATS = [
    ("naive", "last known value repeated"),
    ("seasonal_naive", "last known season repeated"),
    ("naive2", "naive on the seasonally adjusted series (M4's Naive2)"),
    ("theta", "statsforecast Theta"),
    ("ets", "statsforecast AutoETS"),
]
_VARIANTS += [Variant(f"stats_{method}", "stats", 0, "stats", description, None, method=method)
              for method, description in _STATS]

# Beyond the chapter, after the registry's earlier variants so that their deployments keep their schedules, and
# each ensemble after its members, so that a nightly ensemble finds its members trained.
_VARIANTS += [
    Variant("mlp", "mlp", 10, "vector", f"Flatten -> {MLP_LAYERS} x Dense(units, relu) -> Dense(horizon)", None,
            build=_mlp, hyperparameters=("units",), defaults=(("units", MLP_UNITS),)),
    # Members differ in seed, loss and input window, the kinds of diversity N-BEATS's ensemble draws on.
    Variant("ensemble_mlp", "ensemble", 10, "ensemble", "median of 6 mlp: seeds +0, +1, +2 x losses mae, huber",
            None, members=tuple(Member("mlp", offset, loss) for loss in ("mae", "huber") for offset in (0, 1, 2))),
    Variant("ensemble_mix", "ensemble", 10, "ensemble",
            "median of mlp, nbeats_generic, linear_10, and mlp and linear_10 (seed +1) on the last half of the input "
            "window", None,
            members=(Member("mlp"), Member("nbeats_generic"), Member("linear_10"), Member("mlp", 1, input_share=0.5),
                     Member("linear_10", 1, input_share=0.5))),
    # Statistical and neural forecasts err differently, so their combination beats each (the M4 competition's
    # lesson: its best entries combined both). The median of three is the middle forecast at every step.
    Variant("ensemble_hybrid", "ensemble", 0, "ensemble",
            "median of stats_theta, stats_ets and ensemble_mlp: statistical and neural forecasts combined", None,
            members=(Member("stats_theta"), Member("stats_ets"), Member("ensemble_mlp"))),
]

REGISTRY: dict[str, Variant] = {v.name: v for v in _VARIANTS}
ONE_STEP = [v.name for v in _VARIANTS if v.horizon == 1]
MULTI_STEP = [v.name for v in _VARIANTS if v.horizon > 1]
STATS = [v.name for v in _VARIANTS if v.target == "stats"]


def get_variant(name: str) -> Variant:
    """Return the registered variant, or raise ValueError listing the valid names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; valid variants: {', '.join(REGISTRY)}") from None


NEEDS_DATASET = [v.name for v in _VARIANTS if v.needs_dataset]  # the statistical ones and ensembles with one


def build_model(name: str, n_steps: int, horizon: int, **hyperparameters):
    """Build the uncompiled Keras model of variant ``name`` from exactly the hyperparameters it uses."""
    variant = get_variant(name)
    if not variant.trainable:
        raise ValueError(f"variant {name!r} has no model of its own to build")
    check_hyperparameters(variant, hyperparameters)
    return variant.build(n_steps=n_steps, horizon=horizon, **{**variant.hyperparameter_defaults(), **hyperparameters})


def last_steps(model, n_steps: int, input_steps: int):
    """``model`` behind a crop: it takes (batch, n_steps, 1) and sees only the last ``input_steps`` of each window.

    The crop is part of the saved model, so anything that feeds a run's model its dataset's windows (evaluation,
    prediction, backtests) gives it what it was fitted on.
    """
    keras, L = _layers()
    return keras.Sequential([keras.Input((n_steps, 1)), L.Cropping1D((n_steps - input_steps, 0)), model],
                            name=f"{model.name}_last_{input_steps}")


def check_hyperparameters(variant: Variant, given) -> None:
    """Raise a ValueError naming any of ``given`` that the variant does not use, and what it does use."""
    unused = [name for name in given if name not in variant.hyperparameters]
    if unused:
        uses = f"it takes only {', '.join(variant.hyperparameters)}" if variant.hyperparameters \
            else "its architecture takes none"
        raise ValueError(f"variant {variant.name!r} does not use {', '.join(unused)}: {uses}; leave it out")
