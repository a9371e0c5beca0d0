"""seqcast's own queries on the results tables (``storage/schemas.py``) and views (``storage/views.py``).

Values are always bound parameters (``?``); table and view names are constants.
"""

LEADERBOARD = """
SELECT l.variant, l.horizon, l.valid_mse,
       CASE WHEN d.kind = 'synthetic' THEN v.book_valid_mse END AS book_valid_mse,  -- the book's data only
       l.naive_valid_mse, l.ratio_to_naive, l.test_mse, l.epochs, round(l.train_seconds, 1) AS train_s, l.run_id
FROM leaderboard l JOIN (SELECT unnest(?) AS variant, unnest(?) AS book_valid_mse) v USING (variant)
JOIN datasets d USING (dataset_id)
WHERE l.dataset_id IN (SELECT unnest(?))
ORDER BY l.horizon, l.valid_mse
"""

COMPLETED_RUN = """
SELECT r.run_id, r.variant, r.dataset_id, r.model_path, r.params, s.valid_mse
FROM runs r LEFT JOIN run_scores s USING (run_id)
WHERE r.run_id = ? AND r.status = 'completed'
"""

TRAINED_RUNS = """
SELECT * FROM runs
WHERE variant = ? AND dataset_id = ? AND status = 'completed' AND model_path IS NOT NULL AND (? IS NULL OR run_id = ?)
ORDER BY finished_at DESC, run_id
"""

BEST_RUN = """
SELECT r.run_id, r.variant, r.dataset_id, r.model_path, r.params, s.valid_mse
FROM run_scores s JOIN runs r USING (run_id)
WHERE s.dataset_id = ? AND (? IS NULL OR s.family = ?) AND (? IS NULL OR s.variant = ?) AND s.valid_mse IS NOT NULL
  -- those that forecast from held-out histories only (seqcast/forecasting/predict.py)
  AND s.variant NOT IN (SELECT unnest(?))
ORDER BY s.valid_mse, s.finished_at DESC
LIMIT 1
"""

SWEEP_SCORES = """
SELECT r.flow_run_id, s.variant, s.horizon, s.valid_mse, s.naive_valid_mse, s.valid_mse / s.naive_valid_mse
       AS ratio_to_naive, s.test_mse, s.epochs, round(s.train_seconds, 1) AS train_s, s.run_id, s.dataset_id
FROM run_scores s JOIN runs r USING (run_id)
WHERE r.flow_run_id IN (SELECT unnest(?))
"""

FORECASTS = """
SELECT series_id, timestamp, step, value, lo_80, hi_80, lo_95, hi_95 FROM forecasts WHERE run_id = ?
ORDER BY series_id, step LIMIT ?
"""

# the newest completed backtest whose cutoff 0 a trained run forecast (a model run), or, for a variant without a
# model (naive), a backtest of that variant on the dataset with the same horizon: its forecasts are the run's
RUN_BACKTEST = """
SELECT run_id, windows FROM backtests
WHERE status = 'completed' AND dataset_id = ?
  AND (model_run_ids ->> '$[0]' = ? OR (model_run_ids ->> '$[0]' IS NULL AND variant = ? AND horizon = ?))
ORDER BY finished_at DESC, run_id
LIMIT 1
"""

BACKTEST_RESIDUALS = """
SELECT series_id, step, scaled_error FROM backtest_forecasts WHERE run_id = ? AND scaled_error IS NOT NULL
"""

BACKTEST_SCORES = """
SELECT variant, refit, smape, mase, owa, n_series, coverage_80, msis_80, coverage_95, msis_95, run_id
FROM backtest_scores
WHERE run_id IN (SELECT unnest(?)) AND cutoff IS NULL
ORDER BY smape
"""

BENCHMARK_SCORES = """
SELECT run_id, variant, dataset_id, smape, mase, owa, n_series, naive2_smape, naive2_mase, backtest_run_id,
       coverage_80, msis_80, coverage_95, msis_95
FROM benchmark_scores WHERE run_id IN (SELECT unnest(?)) AND split = ?
"""

SERIES_SCORES = """
SELECT run_id, predictor, series_id, smape, mase
FROM series_scores WHERE run_id IN (SELECT unnest(?)) AND split = ?
ORDER BY run_id, predictor, series_id
"""

# every completed backtest on a dataset, over all its cutoffs, with the run that serves its model: the forecast run
# that forecast cutoff 0 (completed), or the backtest itself for a variant without a model (naive, stats_*)
CHAMPION_CANDIDATES = """
SELECT coalesce(b.model_run_ids ->> '$[0]', b.run_id) AS run_id, b.variant, b.run_id AS backtest_run_id, s.mase,
       s.smape, b.horizon, b.windows, b.cutoff_step, b.finished_at
FROM backtest_scores s JOIN backtests b USING (run_id)
WHERE s.cutoff IS NULL AND b.dataset_id = ? AND b.status = 'completed'
  AND (b.model_run_ids ->> '$[0]' IS NULL
       OR b.model_run_ids ->> '$[0]' IN (SELECT run_id FROM runs WHERE status = 'completed'))
"""

SITTING_CHAMPION = """
SELECT choice_id, run_id, variant, backtest_run_id, score, smape, horizon, windows, cutoff_step, runner_up_run_id,
       runner_up_score, margin
FROM current_champions WHERE dataset_id = ?
"""

CHAMPION_BACKTEST = """
SELECT run_id, variant, dataset_id, horizon, windows, params FROM backtests WHERE run_id = ? AND status = 'completed'
"""

# the stored forecasts of these series (of one forecast run, of one dataset, or all), each with the dataset of its
# forecast (predict from a file names none: then its model run's dataset)
STORED_FORECASTS = """
SELECT f.run_id, f.model_run_id, coalesce(f.dataset_id, r.dataset_id) AS dataset_id, f.series_id, f.timestamp,
       f.step, f.value, f.lo_80, f.hi_80, f.lo_95, f.hi_95
FROM forecasts f LEFT JOIN runs r ON r.run_id = f.model_run_id
WHERE f.series_id IN (SELECT unnest(?)) AND (? IS NULL OR f.run_id = ?)
  AND (? IS NULL OR coalesce(f.dataset_id, r.dataset_id) = ?)
ORDER BY f.run_id, f.series_id, f.step
"""

FORECASTS_STORED = """
SELECT count(*) FROM forecasts f LEFT JOIN runs r ON r.run_id = f.model_run_id
WHERE (? IS NULL OR f.run_id = ?) AND (? IS NULL OR coalesce(f.dataset_id, r.dataset_id) = ?)
"""

LIVE_VS_BACKTEST = """
SELECT v.*, r.params FROM live_vs_backtest v LEFT JOIN runs r ON r.run_id = v.model_run_id
ORDER BY v.mase_ratio DESC NULLS LAST, v.dataset_id, v.model_run_id
"""

LIVE_SCORES = """
SELECT run_id, dataset_id, n_errors, n_series, mase, mae, coverage_80, coverage_95, first_actual, last_actual
FROM live_scores WHERE run_id IN (SELECT unnest(?)) ORDER BY run_id
"""

# one predict run's forecasts, for the library's data frames
FORECAST_FRAME = """
SELECT series_id, timestamp, value, lo_80, hi_80, lo_95, hi_95
FROM forecasts WHERE run_id = ? ORDER BY series_id, timestamp
"""

# one backtest's forecasts with their intervals at the chosen levels (a list), one column pair per level, for the
# library's cross-validation frame
BACKTEST_FRAME = """
SELECT f.series_id, f.timestamp, f.cutoff AS cutoff_index, f.step, f.actual, f.forecast,
       i.level, i.lo, i.hi
FROM backtest_forecasts f
LEFT JOIN backtest_intervals i
  ON i.run_id = f.run_id AND i.cutoff = f.cutoff AND i.series_id = f.series_id AND i.step = f.step
 AND i.level IN (SELECT unnest(?::DOUBLE[]))
WHERE f.run_id = ?
ORDER BY f.cutoff DESC, f.series_id, f.step
"""
