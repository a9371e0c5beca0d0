"""Evaluation: every score formula once, and the jobs that apply them.

The formulas, each a vectorised function over numpy arrays:

* ``point``: MSE, MAE, RMSE, sMAPE (0-200) and MAPE (0-100);
* ``scaled``: the MASE scale (in-sample seasonal naive MAE), scaled errors (MASE) and OWA;
* ``baselines``: the naive forecast and the M4 Naive2 (with its seasonality test) that scores are relative to;
* ``interval``: coverage and MSIS of prediction intervals;
* ``aggregate``: the means per series, per step and per subset.

The jobs: ``run`` (a run's valid and test splits), ``holdout`` (per-series scores on a last-horizon dataset),
``backtest`` (rolling-origin backtests) and ``m3_benchmark`` (the M3 leaderboard).
"""
