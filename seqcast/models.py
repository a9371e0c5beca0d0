"""The chapter's model variants: a registry of builders keyed by variant name.

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

Target = Literal["naive", "vector", "sequence", "strided", "iterative", "stats"]
# Conv1D front end of conv_gru: output step j sees inputs [j*stride, j*stride + kernel - 1].
CONV_KERNEL, CONV_STRIDES = 4, 2
CONV_FILTERS = 20  # conv_gru's front end and every WaveNet layer, as in the chapter
# The hyperparameters a variant may take, with the value a variant that uses one gets when it is not given.
HYPERPARAMETER_DEFAULTS = {"units": 20, "dropout": 0.0, "recurrent_dropout": 0.0}
RECURRENT = ("units", "dropout", "recurrent_dropout")


@dataclass(frozen=True)
class Variant:
    """One model variant of the chapter and how it is trained and scored."""

    name: str
    family: str
    horizon: int
    target: Target
    description: str
    book_valid_mse: float | None  # None: the book has no figure (the statistical baselines)
    reference_valid_mse: float | None = None
    build: Callable | None = None
    fixed_horizon: bool = False
    recurrent: bool = False
    base_variant: str | None = None
    jit_compile: bool = True  # bench/levers.py: XLA's compile time outweighs its gain for the linear models
    patience: int = 5  # EarlyStopping's, the seed notebook's; more where the loss spikes for longer (ln_rnn)
    hyperparameters: tuple[str, ...] = ()  # the builder's arguments besides n_steps and horizon
    method: str | None = None  # a "stats" variant's method in seqcast.stats

    @property
    def needs_dataset(self) -> bool:
        """Statistical baselines forecast each series from its whole known history, which only an ingested
        last-horizon dataset keeps; the book's synthetic windows have none."""
        return self.target == "stats"

    @property
    def trainable(self) -> bool:
        return self.build is not None


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
    from seqcast.layers import LNSimpleRNNCell

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


def _wavenet(n_steps: int, horizon: int):
    keras, L = _layers()
    layers = [keras.Input((None, 1))]
    for rate in (1, 2, 4, 8) * 2:
        layers.append(L.Conv1D(CONV_FILTERS, 2, padding="causal", activation="relu", dilation_rate=rate))
    layers.append(L.Conv1D(horizon, 1))
    return keras.Sequential(layers)


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
]

# The M competitions' statistical baselines (seqcast.stats), fitted per series at the dataset's period. They
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


def build_model(name: str, n_steps: int, horizon: int, **hyperparameters):
    """Build the uncompiled Keras model of variant ``name`` from exactly the hyperparameters it uses."""
    variant = get_variant(name)
    if not variant.trainable:
        raise ValueError(f"variant {name!r} has no model of its own to build")
    check_hyperparameters(variant, hyperparameters)
    defaults = {name: HYPERPARAMETER_DEFAULTS[name] for name in variant.hyperparameters}
    return variant.build(n_steps=n_steps, horizon=horizon, **{**defaults, **hyperparameters})


def check_hyperparameters(variant: Variant, given) -> None:
    """Raise a ValueError naming any of ``given`` that the variant does not use, and what it does use."""
    unused = [name for name in given if name not in variant.hyperparameters]
    if unused:
        uses = f"it takes only {', '.join(variant.hyperparameters)}" if variant.hyperparameters \
            else "its architecture takes none"
        raise ValueError(f"variant {variant.name!r} does not use {', '.join(unused)}: {uses}; leave it out")
