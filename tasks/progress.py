"""Progress of a long step (statistical fits, a backtest's cutoffs): done of total, rate and time left, as a log line
on the terminal and as a progress artifact on the flow run in the Prefect UI."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from uuid import UUID

EVERY_S = 5.0  # the least time between two reports: often enough to see it move, rarely enough not to flood the log


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The running flow's or task's logger (its lines reach the terminal and the UI), else seqcast's own."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("seqcast")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Report ``done`` of ``total`` ``unit`` of the step ``what``: call it with the count done so far.

    Every EVERY_S seconds at most, and once when done reaches total, it logs ``what: done/total unit (percent),
    rate/s, time left`` and sets the flow run's progress artifact (key ``key``, percent done). Outside a flow or
    task run, or with ``artifact=False`` (a part of a step whose whole has the artifact), it logs only. A failure
    to reach the Prefect API is logged, never raised: progress must not fail the step it reports on.
    """

    def __init__(self, what: str, total: int, unit: str = "series", key: str | None = None,
                 every_s: float = EVERY_S, say: Callable[[str], None] | None = None, artifact: bool = True):
        self.what, self.total, self.unit, self.every_s = what, int(total), unit, every_s
        self.say = say or _logger().info
        self.started = self.last = time.monotonic()
        self.done = 0
        self.artifact: UUID | None = None
        if artifact:
            self._artifact(key)

    def _artifact(self, key: str | None) -> None:
        from prefect.artifacts import create_progress_artifact
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        try:
            self.artifact = create_progress_artifact(0.0, key=key, description=f"{self.what}: {self.total:,} "
                                                                               f"{self.unit}")
        except Exception as exc:  # noqa: BLE001 - the API unreachable: the step goes on, reported in the log only
            _logger().warning("no progress artifact for %s: %s", self.what, exc)

    def __call__(self, done: int, total: int | None = None) -> None:
        """Record ``done`` of ``total`` (default: the total given at the start); report if it is time to."""
        self.done = int(done)
        if total is not None:
            self.total = int(total)
        now = time.monotonic()
        if now - self.last < self.every_s and self.done < self.total:
            return
        self.last = now
        self.say(self.line(now - self.started))
        if self.artifact is not None:
            from prefect.artifacts import update_progress_artifact

            try:
                update_progress_artifact(self.artifact, self.percent)
            except Exception as exc:  # noqa: BLE001 - as in _artifact
                _logger().warning("progress artifact of %s not updated: %s", self.what, exc)

    @property
    def percent(self) -> float:
        return 100.0 if self.total <= 0 else min(100.0, 100.0 * self.done / self.total)

    def line(self, elapsed_s: float) -> str:
        """``what: done/total unit (percent), rate/s, time left`` after ``elapsed_s`` seconds."""
        rate = self.done / elapsed_s if elapsed_s > 0 else 0.0
        left = f"{_clock((self.total - self.done) / rate)} left" if 0 < rate and self.done < self.total \
            else f"done in {_clock(elapsed_s)}" if self.done >= self.total else "time left unknown"
        return (f"{self.what}: {self.done:,}/{self.total:,} {self.unit} ({self.percent:.0f}%), "
                f"{rate:,.1f} {self.unit}/s, {left}")
