"""Custom Keras objects; registered so that saved ``.keras`` models reload in a fresh process."""

from __future__ import annotations

import keras
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


# What loading a saved model needs besides Keras's own layers.
CUSTOM_OBJECTS = {"seqcast>LNSimpleRNNCell": LNSimpleRNNCell, "seqcast>last_time_step_mse": last_time_step_mse}
