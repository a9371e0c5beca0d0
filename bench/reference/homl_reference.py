"""Plain-Keras reference: the chapter's models trained the way the seed notebook trains them.

No orchestration, no storage: numpy arrays in memory, model.fit, model.predict.
It exists to be measured side by side with seqcast (same machine, same run):
wall time per model and validation/test MSE.

Training config (the seed notebook's): Nadam, up to --epochs epochs (default 100),
EarlyStopping(patience=5), batch size 32, seeds 42. Data: generate_time_series,
10,000 series, 50 input steps, split 7000/2000/1000.

Usage:
    python homl_reference.py [--epochs N] [--jit] [MODEL ...]
MODEL names: see ONE_STEP and MULTI_STEP below (default: all). One JSON line per model.
For 10-step models, *_mse is the MSE over the 10 future values (the figure the book
prints as last_time_step_mse for seq-to-seq models and as val_loss for seq-to-vector
ones); *_h10_mse is the MSE of the 10th step alone.
"""
import argparse
import itertools
import json
import time

import keras
import numpy as np

N_STEPS = 50
AHEAD = 10
L = keras.layers


def generate_time_series(batch_size, n_steps):
    freq1, freq2, offsets1, offsets2 = np.random.rand(4, batch_size, 1)
    t = np.linspace(0, 1, n_steps)
    series = 0.5 * np.sin((t - offsets1) * (freq1 * 10 + 10))
    series += 0.2 * np.sin((t - offsets2) * (freq2 * 20 + 20))
    series += 0.1 * (np.random.rand(batch_size, n_steps) - 0.5)
    return series[..., np.newaxis].astype(np.float32)


def split(a):
    return a[:7000], a[7000:9000], a[9000:]


def seq_input():
    return keras.Input([None, 1])


class LNSimpleRNNCell(L.Layer):
    """SimpleRNN cell with layer normalisation before the activation."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
        self.output_size = units
        self.cell = L.SimpleRNNCell(units, activation=None)
        self.norm = L.LayerNormalization()

    def call(self, inputs, states):
        outputs, new_states = self.cell(inputs, states)
        norm = keras.activations.tanh(self.norm(outputs))
        return norm, [norm]


ONE_STEP = {
    "linear": lambda: keras.Sequential([keras.Input([N_STEPS, 1]), L.Flatten(), L.Dense(1)]),
    "simple_rnn": lambda: keras.Sequential([seq_input(), L.SimpleRNN(1)]),
    "deep_rnn": lambda: keras.Sequential([seq_input(), L.SimpleRNN(20, return_sequences=True),
                                          L.SimpleRNN(20, return_sequences=True), L.SimpleRNN(1)]),
    "deep_rnn_dense": lambda: keras.Sequential([seq_input(), L.SimpleRNN(20, return_sequences=True),
                                                L.SimpleRNN(20), L.Dense(1)]),
}


def _wavenet():
    layers = [seq_input()]
    for rate in (1, 2, 4, 8) * 2:
        layers.append(L.Conv1D(20, 2, padding="causal", activation="relu", dilation_rate=rate))
    layers.append(L.Conv1D(AHEAD, 1))
    return keras.Sequential(layers)


# name -> (builder, target kind): "vec" = Y[:, 10], "seq" = Y[:, 50, 10], "conv" = seq downsampled [3::2]
MULTI_STEP = {
    "linear_10": (lambda: keras.Sequential([keras.Input([N_STEPS, 1]), L.Flatten(), L.Dense(AHEAD)]), "vec"),
    "seq2vec_rnn": (lambda: keras.Sequential([seq_input(), L.SimpleRNN(20, return_sequences=True),
                                              L.SimpleRNN(20), L.Dense(AHEAD)]), "vec"),
    "seq2seq_rnn": (lambda: keras.Sequential([seq_input(), L.SimpleRNN(20, return_sequences=True),
                                              L.SimpleRNN(20, return_sequences=True), L.Dense(AHEAD)]), "seq"),
    "ln_rnn": (lambda: keras.Sequential([seq_input(), L.RNN(LNSimpleRNNCell(20), return_sequences=True),
                                         L.RNN(LNSimpleRNNCell(20), return_sequences=True), L.Dense(AHEAD)]), "seq"),
    "lstm": (lambda: keras.Sequential([seq_input(), L.LSTM(20, return_sequences=True),
                                       L.LSTM(20, return_sequences=True), L.Dense(AHEAD)]), "seq"),
    "gru": (lambda: keras.Sequential([seq_input(), L.GRU(20, return_sequences=True),
                                      L.GRU(20, return_sequences=True), L.Dense(AHEAD)]), "seq"),
    "conv_gru": (lambda: keras.Sequential([seq_input(), L.Conv1D(20, 4, strides=2, padding="valid"),
                                           L.GRU(20, return_sequences=True), L.GRU(20, return_sequences=True),
                                           L.Dense(AHEAD)]), "conv"),
    "wavenet": (_wavenet, "seq"),
}


def mse(y_true, y_pred):
    y_true = np.asarray(y_true).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred).reshape(len(y_pred), -1)
    return float(np.mean((y_true - y_pred) ** 2))


def fit(model, x, y, valid, epochs, jit):
    model.compile(optimizer=keras.optimizers.Nadam(), loss="mse", jit_compile=jit)
    start = time.perf_counter()
    history = model.fit(x, y, epochs=epochs, validation_data=valid, verbose=0,
                        callbacks=[keras.callbacks.EarlyStopping(patience=5)])
    return time.perf_counter() - start, len(history.history["loss"])


def run_one_step(names, epochs, jit):
    np.random.seed(42)
    series = generate_time_series(10000, N_STEPS + 1)
    (x_tr, x_va, x_te), (y_tr, y_va, y_te) = split(series[:, :N_STEPS]), split(series[:, -1])
    if "naive" in names:
        yield {"model": "naive", "valid_mse": mse(y_va, x_va[:, -1]), "test_mse": mse(y_te, x_te[:, -1]),
               "seconds": 0.0}
    for name, build in ONE_STEP.items():
        if name not in names:
            continue
        keras.utils.set_random_seed(42)
        model = build()
        seconds, n_epochs = fit(model, x_tr, y_tr, (x_va, y_va), epochs, jit)
        row = {"model": name, "valid_mse": mse(y_va, model.predict(x_va, verbose=0)),
               "test_mse": mse(y_te, model.predict(x_te, verbose=0)),
               "seconds": round(seconds, 2), "epochs": n_epochs, "params": model.count_params()}
        yield row
        if name == "deep_rnn_dense" and "iterative_10" in names:
            yield iterative(model)


def iterative(model):
    """Apply a one-step model 10 times, feeding each prediction back as input."""
    np.random.seed(42)
    series = generate_time_series(10000, N_STEPS + AHEAD)
    row = {"model": "iterative_10"}
    for part, sl in (("valid", slice(7000, 9000)), ("test", slice(9000, None))):
        x = series[sl, :N_STEPS]
        for _ in range(AHEAD):
            x = np.concatenate([x, model.predict(x, verbose=0)[:, np.newaxis, :]], axis=1)
        row[f"{part}_mse"] = mse(series[sl, N_STEPS:, 0], x[:, N_STEPS:, 0])
        row[f"{part}_h10_mse"] = mse(series[sl, -1, 0], x[:, -1, 0])
    return row


def run_multi_step(names, epochs, jit):
    np.random.seed(42)
    series = generate_time_series(10000, N_STEPS + AHEAD)
    x_tr, x_va, x_te = split(series[:, :N_STEPS])
    y_vec = series[:, -AHEAD:, 0]
    y_seq = np.empty((10000, N_STEPS, AHEAD), np.float32)
    for k in range(1, AHEAD + 1):
        y_seq[..., k - 1] = series[..., k:k + N_STEPS, 0]
    v_tr, v_va, v_te = split(y_vec)
    if "naive_10" in names:
        yield {"model": "naive_10", "valid_mse": mse(v_va, np.tile(x_va[:, -1], AHEAD)),
               "test_mse": mse(v_te, np.tile(x_te[:, -1], AHEAD)), "seconds": 0.0}
    for name, (build, kind) in MULTI_STEP.items():
        if name not in names:
            continue
        keras.utils.set_random_seed(42)
        model = build()
        targets = {"vec": y_vec, "seq": y_seq, "conv": y_seq[:, 3::2]}[kind]
        t_tr, t_va, _ = split(targets)
        seconds, n_epochs = fit(model, x_tr, t_tr, (x_va, t_va), epochs, jit)
        row = {"model": name, "seconds": round(seconds, 2), "epochs": n_epochs, "params": model.count_params()}
        for part, x, v in (("valid", x_va, v_va), ("test", x_te, v_te)):
            pred = model.predict(x, verbose=0)
            last = pred if kind == "vec" else pred[:, -1]  # the 10 values after the last input step
            row[f"{part}_mse"] = mse(v, last)
            row[f"{part}_h10_mse"] = mse(v[:, -1], last[:, -1])
        yield row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--jit", action="store_true", help="compile with XLA (jit_compile=True)")
    args = parser.parse_args()
    every = ["naive", *ONE_STEP, "iterative_10", "naive_10", *MULTI_STEP]
    unknown = set(args.models) - set(every)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {every}")
    names = set(args.models or every)
    if "iterative_10" in names:
        names.add("deep_rnn_dense")
    rows = itertools.chain(run_one_step(names, args.epochs, args.jit), run_multi_step(names, args.epochs, args.jit))
    for row in rows:
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
