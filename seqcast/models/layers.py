"""Custom Keras objects; registered so that saved ``.keras`` models reload in a fresh process."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="seqcast")
class LNSimpleRNNCell(keras.layers.Layer):
    """SimpleRNN cell with layer normalisation before its tanh activation (the chapter's LNSimpleRNNCell)."""

    def __init__(self, units: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dropout = dropout
        self.state_size = units
        self.output_size = units
        self.cell = keras.layers.SimpleRNNCell(units, activation=None, dropout=dropout)
        self.norm = keras.layers.LayerNormalization()

    def build(self, input_shape):
        self.cell.build(input_shape)
        self.norm.build((None, self.units))
        self.built = True

    def call(self, inputs, states, training=False):
        outputs, _ = self.cell(inputs, states, training=training)
        normed = ops.tanh(self.norm(outputs))
        return normed, [normed]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="seqcast")
def last_time_step_mse(y_true, y_pred):
    """MSE of the last time step's forecasts only: the chapter's metric for sequence-to-sequence models."""
    return ops.mean(ops.square(y_true[:, -1] - y_pred[:, -1]))


class _FixedBasis(keras.layers.Layer):
    """Expansion coefficients (batch, n_basis) -> values (batch, length) on a fixed basis (n_basis, length).

    The basis holds no weights: it is computed from the layer's config, so a saved model rebuilds it on load.
    """

    def basis(self) -> np.ndarray:
        raise NotImplementedError

    def call(self, theta):
        return ops.matmul(theta, ops.convert_to_tensor(self.basis(), dtype=theta.dtype))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.length)


@keras.saving.register_keras_serializable(package="seqcast")
class PolynomialBasis(_FixedBasis):
    """N-BEATS's trend basis: coefficients (batch, degree + 1) -> (batch, length), sum_i theta_i t**i.

    Time is normalised as in the paper, t = arange(length) / length: any affine time grid spans the same
    polynomials, and this one keeps every power within [0, 1).
    """

    def __init__(self, degree: int, length: int, **kwargs):
        super().__init__(**kwargs)
        self.degree, self.length = degree, length

    def basis(self) -> np.ndarray:
        t = np.arange(self.length, dtype=np.float64) / self.length
        return np.stack([t**i for i in range(self.degree + 1)]).astype(np.float32)

    def get_config(self):
        return {**super().get_config(), "degree": self.degree, "length": self.length}


def fourier_harmonics(horizon: int) -> int:
    """The paper's number of harmonics for a forecast of ``horizon`` steps, floor(horizon / 2 - 1), at least 0."""
    return max(0, horizon // 2 - 1)


@keras.saving.register_keras_serializable(package="seqcast")
class FourierBasis(_FixedBasis):
    """N-BEATS's seasonality basis: coefficients (batch, 1 + 2 * harmonics) -> (batch, length).

    Values are theta_0 + sum_k theta_k cos(2 pi k t) + theta_(harmonics + k) sin(2 pi k t) for k = 1..harmonics,
    with t = arange(length) / period. The forecast's period is the horizon (the paper's t); the backcast uses the
    same period, so both halves of a block express the same frequencies (the authors' code does the same).
    """

    def __init__(self, harmonics: int, length: int, period: int, **kwargs):
        super().__init__(**kwargs)
        self.harmonics, self.length, self.period = harmonics, length, period

    def basis(self) -> np.ndarray:
        t = np.arange(self.length, dtype=np.float64) / self.period
        k = np.arange(1, self.harmonics + 1, dtype=np.float64)[:, None]
        rows = [np.ones((1, self.length)), np.cos(2 * np.pi * k * t), np.sin(2 * np.pi * k * t)]
        return np.concatenate(rows).astype(np.float32)

    def get_config(self):
        return {**super().get_config(), "harmonics": self.harmonics, "length": self.length, "period": self.period}


# What loading a saved model needs besides Keras's own layers.
CUSTOM_OBJECTS = {"seqcast>LNSimpleRNNCell": LNSimpleRNNCell, "seqcast>last_time_step_mse": last_time_step_mse,
                  "seqcast>PolynomialBasis": PolynomialBasis, "seqcast>FourierBasis": FourierBasis}
