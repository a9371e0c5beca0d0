"""Test-only fault injection: lets tests prove that a failed flow run's retry resumes instead of starting over.

Switched on by one explicit hook, the ``SEQCAST_TEST_FAIL_ONCE`` setting (it travels to flow runs in other
processes): a marker file whose text is the stage to fail, ``train`` (at the start of the second epoch),
``evaluate`` (before any forecast) or ``evaluate shard N`` (the scoring of shard N of a sharded dataset); ``kill
evaluate shard N`` kills the process that scores shard N instead of raising. The marker is deleted as the fault
fires, so the retry passes. Unset, the tasks never call into this module.
"""

from __future__ import annotations

import logging
from pathlib import Path


def fail_once(marker: Path, stage: str, logger: logging.Logger | logging.LoggerAdapter, where: str = "") -> None:
    """Raise once if the marker file names ``stage``."""
    try:
        armed = marker.read_text().strip() == stage
    except FileNotFoundError:
        return
    if armed:
        marker.unlink()
        logger.warning("injected fault (SEQCAST_TEST_FAIL_ONCE): failing %s%s", stage, where)
        raise RuntimeError(f"injected {stage} fault (SEQCAST_TEST_FAIL_ONCE)")


def kill_once(marker: Path, stage: str, logger: logging.Logger | logging.LoggerAdapter) -> None:
    """Kill this process (SIGKILL: no cleanup, as a lost machine or the OOM killer would) once, if the marker file
    names ``kill <stage>``."""
    import os
    import signal

    try:
        armed = marker.read_text().strip() == f"kill {stage}"
    except FileNotFoundError:
        return
    if armed:
        marker.unlink()
        logger.warning("injected fault (SEQCAST_TEST_FAIL_ONCE): killing the process running %s", stage)
        os.kill(os.getpid(), signal.SIGKILL)


def training_fault(marker: Path, logger) -> list:
    """Keras callbacks that fail training once at the start of epoch 2 when the marker names ``train``."""
    import keras

    class _FailOnce(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch >= 1:
                fail_once(marker, "train", logger, f" at epoch {epoch + 1}")

    return [_FailOnce()]
