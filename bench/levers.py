"""Per-epoch cost of the training levers, one variant at a time: what bench/speed.py's defaults were chosen from.

Each configuration builds the variant afresh (seed 42), fits it on the chapter's 7000 training series for a few
epochs and prints the first epoch's seconds (tracing and XLA compilation included) and the median of the others.
A configuration is levers joined by '+':

    plain     Keras defaults as the reference script uses them (no XLA, (None, 1) input, 1 step per call)
    jit       jit_compile=True (XLA)
    fixed     fit a twin with a fixed (n_steps, 1) input that shares the layers (seqcast.training.fit.fixed_length)
    spe       steps_per_execution=32 (spe64, spe219: 64, a whole epoch)
    vbs       validation in batches of 2048 instead of 32
    metric    last_time_step_mse as a metric (sequence targets), as seqcast compiles it
    tfdata    feed a tf.data pipeline (from_tensor_slices, shuffle, batch, prefetch) instead of numpy arrays
    b64       batch size 64 (lr2: learning rate 2e-3; lr14: 1.4e-3)
    restore   EarlyStopping(restore_best_weights=True);   eval: print the valid MSE after the fit

    .venv/bin/python bench/levers.py wavenet plain jit jit+fixed+metric+spe+vbs --epochs 4

seqcast's default is jit+fixed+metric+spe+vbs (+restore). TF_NUM_INTRAOP_THREADS and XLA_FLAGS apply as usual.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
LEVERS = {"plain", "jit", "fixed", "spe", "spe64", "spe219", "vbs", "metric", "tfdata", "b64", "lr2", "lr14",
          "restore", "eval"}


def measure(name: str, levers: set[str], epochs: int, data) -> str:
    import keras

    from seqcast.models.layers import last_time_step_mse
    from seqcast.models.registry import build_model, get_variant
    from seqcast.training.fit import PREDICT_BATCH_SIZE, fixed_length

    variant = get_variant(name)
    x_train, y_train, x_valid, y_valid = data
    keras.utils.set_random_seed(42)
    model = build_model(name, 50, variant.horizon)
    if "fixed" in levers:
        model = fixed_length(model, 50)
    sequence = variant.target in ("sequence", "strided")
    batch = 64 if "b64" in levers else 32
    rate = 2e-3 if "lr2" in levers else 1.4e-3 if "lr14" in levers else 1e-3
    steps = 219 if "spe219" in levers else 64 if "spe64" in levers else 32 if "spe" in levers else 1
    model.compile(optimizer=keras.optimizers.Nadam(learning_rate=rate), loss="mse",
                  metrics=[last_time_step_mse] if sequence and "metric" in levers else [],
                  jit_compile="jit" in levers, steps_per_execution=steps)
    seconds: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    callbacks = [Clock(), keras.callbacks.EarlyStopping(patience=5, restore_best_weights="restore" in levers)]
    valid_batch = PREDICT_BATCH_SIZE if "vbs" in levers else batch
    if "tfdata" in levers:
        import tensorflow as tf

        train = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train), seed=42).batch(batch)
        valid = tf.data.Dataset.from_tensor_slices((x_valid, y_valid)).batch(valid_batch)
        model.fit(train.prefetch(tf.data.AUTOTUNE), epochs=epochs, validation_data=valid, callbacks=callbacks,
                  verbose=0)
    else:
        model.fit(x_train, y_train, epochs=epochs, batch_size=batch, validation_data=(x_valid, y_valid),
                  validation_batch_size=valid_batch, callbacks=callbacks, verbose=0)
    line = (f"| {name} | {'+'.join(sorted(levers))} | {seconds[0]:.2f} | "
            f"{statistics.median(seconds[1:]) if len(seconds) > 1 else float('nan'):.3f} | {len(seconds)} |")
    if "eval" in levers:
        predicted = model.predict(x_valid, batch_size=PREDICT_BATCH_SIZE, verbose=0)
        from seqcast.evaluation.point import mse

        actual, forecast = (y_valid[:, -1], predicted[:, -1]) if sequence else (y_valid, predicted)
        line += f" {float(mse(actual, forecast.reshape(actual.shape))):.5f} |"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant")
    parser.add_argument("configs", nargs="+", metavar="LEVER[+LEVER...]")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per configuration (default 4)")
    args = parser.parse_args()
    from seqcast.data.synthetic import generate_time_series
    from seqcast.models.registry import get_variant
    from seqcast.training.fit import training_targets

    variant = get_variant(args.variant)
    if not variant.trainable:
        parser.error(f"variant {args.variant!r} does not train")
    configs = [set(c.split("+")) for c in args.configs]
    for levers in configs:
        if levers - LEVERS:
            parser.error(f"unknown lever(s) {', '.join(sorted(levers - LEVERS))}; levers: {', '.join(sorted(LEVERS))}")
    windows = generate_time_series(10_000, 50 + variant.horizon, 42)[..., 0]
    train, valid = windows[:7000], windows[7000:9000]
    data = (train[:, :50, None], training_targets(variant, train, 50, variant.horizon),
            valid[:, :50, None], training_targets(variant, valid, 50, variant.horizon))
    print("| variant | levers | first epoch s | median epoch s after it | epochs | valid MSE (eval) |")
    print("|---|---|---|---|---|---|")
    for levers in configs:
        print(measure(args.variant, levers, args.epochs, data), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
