"""Evaluation: every score formula once, and the jobs that apply them (a run's splits, per-series holdouts,
rolling-origin backtests, the M3 leaderboard)."""
