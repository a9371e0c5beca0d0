"""Test-only fault injection: lets tests prove that a failed flow run's retry resumes instead of starting over.

``$SEQCAST_TEST_FAIL_ONCE`` names a marker file whose text is the stage to fail: ``train`` (at the start of the
second epoch) or ``evaluate`` (before any forecast). The marker is deleted as the fault fires, so the retry passes.
Unset, or with no such file, nothing happens.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

FAULT_ENV = "SEQCAST_TEST_FAIL_ONCE"


def fail_once(stage: str, logger: logging.Logger | logging.LoggerAdapter, where: str = "") -> None:
    """Raise once if the marker names ``stage``."""
    marker = os.environ.get(FAULT_ENV)
    if not marker:
        return
    try:
        armed = Path(marker).read_text().strip() == stage
    except FileNotFoundError:
        return
    if armed:
        Path(marker).unlink()
        logger.warning("injected fault (%s): failing %s%s", FAULT_ENV, stage, where)
        raise RuntimeError(f"injected {stage} fault ({FAULT_ENV})")


def training_fault(logger) -> list:
    """Keras callbacks that fail training once at the start of epoch 2 when the marker names ``train``."""
    if not os.environ.get(FAULT_ENV):
        return []
    import keras

    class _FailOnce(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch >= 1:
                fail_once("train", logger, f" at epoch {epoch + 1}")

    return [_FailOnce()]
