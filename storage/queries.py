"""seqcast's own queries on the results database, beside the schema they read (``storage/results.py``).

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

BEST_RUN = """
SELECT r.run_id, r.variant, r.dataset_id, r.model_path, r.params, s.valid_mse
FROM run_scores s JOIN runs r USING (run_id)
WHERE s.dataset_id = ? AND (? IS NULL OR s.family = ?) AND (? IS NULL OR s.variant = ?) AND s.valid_mse IS NOT NULL
  AND s.family <> 'stats'  -- the statistical baselines do not forecast the future (seqcast/predict.py)
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
SELECT series_id, timestamp, step, value FROM forecasts WHERE run_id = ? ORDER BY series_id, step LIMIT ?
"""

BACKTEST_SCORES = """
SELECT variant, refit, smape, mase, owa, n_series, run_id
FROM backtest_scores
WHERE run_id IN (SELECT unnest(?)) AND cutoff IS NULL
ORDER BY smape
"""

BENCHMARK_SCORES = """
SELECT run_id, variant, dataset_id, smape, mase, owa, n_series, naive2_smape, naive2_mase
FROM benchmark_scores WHERE run_id IN (SELECT unnest(?)) AND split = ?
"""

SERIES_SCORES = """
SELECT run_id, predictor, series_id, smape, mase
FROM series_scores WHERE run_id IN (SELECT unnest(?)) AND split = ?
ORDER BY run_id, predictor, series_id
"""
