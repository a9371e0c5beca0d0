"""The views over the results tables: they select, join and aggregate the stored rows of :mod:`seqcast.storage.schemas`.

They run on the connection over the Delta tables of :mod:`seqcast.storage.tables`
(:mod:`seqcast.storage.table_queries`).
"""

import re

import duckdb

# What ``seqcast sql`` runs: queries (a PIVOT parses as several statements), never COPY, ATTACH, INSTALL or SET.
READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.MULTI,
                        duckdb.StatementType.PRAGMA, duckdb.StatementType.CALL}

VIEWS = """
CREATE OR REPLACE VIEW latest_runs AS
SELECT * FROM runs WHERE status = 'completed'
QUALIFY row_number() OVER (PARTITION BY variant, dataset_id ORDER BY finished_at DESC, run_id) = 1;

CREATE OR REPLACE VIEW run_scores AS
SELECT r.run_id, r.variant, r.family, r.dataset_id, r.horizon, r.epochs, r.n_params, r.train_seconds,
       r.finished_at,
       max(m.value) FILTER (WHERE m.predictor = 'model' AND m.split = 'valid') AS valid_mse,
       max(m.value) FILTER (WHERE m.predictor = 'model' AND m.split = 'test') AS test_mse,
       max(m.value) FILTER (WHERE m.predictor = 'naive' AND m.split = 'valid') AS naive_valid_mse,
       max(m.value) FILTER (WHERE m.predictor = 'naive' AND m.split = 'test') AS naive_test_mse
FROM runs r JOIN metrics m USING (run_id)
WHERE r.status = 'completed' AND m.metric = 'mse' AND m.horizon_step IS NULL
GROUP BY ALL;

CREATE OR REPLACE VIEW leaderboard AS
SELECT variant, dataset_id, horizon, run_id, valid_mse, test_mse, naive_valid_mse,
       valid_mse / naive_valid_mse AS ratio_to_naive, epochs, n_params, train_seconds, finished_at
FROM run_scores
QUALIFY row_number() OVER (PARTITION BY variant, dataset_id ORDER BY valid_mse, finished_at DESC, run_id) = 1
ORDER BY dataset_id, valid_mse;

CREATE OR REPLACE VIEW horizon_errors AS
SELECT r.variant, r.dataset_id, r.run_id, m.split, m.horizon_step,
       max(m.value) FILTER (WHERE m.metric = 'mse') AS mse,
       max(m.value) FILTER (WHERE m.metric = 'mae') AS mae,
       max(m.value) FILTER (WHERE m.metric = 'rmse') AS rmse
FROM runs r JOIN metrics m USING (run_id)
WHERE r.status = 'completed' AND m.predictor = 'model' AND m.horizon_step IS NOT NULL
GROUP BY ALL;

-- The scores are computed by seqcast.evaluation when a run is recorded and stored in the *_scores tables; the views
-- below select and join them (docs/results.md names each score's function).

-- one row per backtest and cutoff, and one over all its cutoffs (cutoff NULL); coverage and MSIS are over the
-- forecasts that have an interval: none at the oldest cutoff, whose intervals would have no earlier cutoff to be
-- calibrated on
CREATE OR REPLACE VIEW backtest_scores AS
SELECT b.dataset_id, b.variant, s.run_id, s.cutoff, s.smape, s.mase, s.owa, s.n_series, b.refit,
       s.coverage_80, s.msis_80, s.coverage_95, s.msis_95
FROM backtest_cutoff_scores s JOIN backtests b USING (run_id)
WHERE b.status = 'completed';

-- the same coverage and MSIS at every level a backtest chose (--level), one row per backtest, cutoff and level
CREATE OR REPLACE VIEW backtest_interval_scores AS
SELECT b.dataset_id, b.variant, s.run_id, s.cutoff, s.level, s.coverage, s.msis, s.n_forecasts, b.refit
FROM backtest_level_scores s JOIN backtests b USING (run_id)
WHERE b.status = 'completed';

-- one row per run and split of a last-horizon dataset. On the test split, the conformal intervals of the run's
-- backtest are scored on the same test values: the cutoff 0 of the newest completed backtest whose cutoff 0 this run
-- forecast (a model run), or, for a variant without a model, of that variant on the dataset with the same horizon;
-- a refit backtest comes first, as a model trained once has seen the earlier cutoffs' values its intervals are
-- calibrated on. Its intervals at cutoff 0 are calibrated on the older cutoffs only; NULL without such a backtest.
CREATE OR REPLACE VIEW benchmark_scores AS
WITH interval_backtest AS (
    SELECT r.run_id, b.run_id AS backtest_run_id
    FROM runs r JOIN backtests b
      ON b.status = 'completed' AND b.dataset_id = r.dataset_id
     AND (b.model_run_ids ->> '$[0]' = r.run_id
          OR (b.model_run_ids ->> '$[0]' IS NULL AND b.variant = r.variant AND b.horizon = r.horizon))
    QUALIFY row_number() OVER (PARTITION BY r.run_id ORDER BY b.refit DESC, b.finished_at DESC, b.run_id) = 1
)
SELECT r.dataset_id, r.variant, s.run_id, s.split, s.smape, s.mase, s.owa, s.n_series, s.naive2_smape,
       s.naive2_mase, i.backtest_run_id, t.coverage_80, t.msis_80, t.coverage_95, t.msis_95
FROM split_scores s JOIN runs r USING (run_id)
LEFT JOIN interval_backtest i ON i.run_id = s.run_id AND s.split = 'test'
LEFT JOIN backtest_scores t ON t.run_id = i.backtest_run_id AND t.cutoff = 0
WHERE r.status = 'completed';

-- the champion each dataset's forecasts come from now: its latest choice
CREATE OR REPLACE VIEW current_champions AS
SELECT * FROM champions
QUALIFY row_number() OVER (PARTITION BY dataset_id ORDER BY chosen_at DESC, choice_id DESC) = 1;

-- one row per forecast step whose actual has arrived: its latest scoring, so rescoring a forecast with a longer
-- (or corrected) file replaces the earlier score instead of counting it twice
CREATE OR REPLACE VIEW live_errors AS
SELECT * FROM forecast_errors
QUALIFY row_number() OVER (PARTITION BY run_id, series_id, timestamp ORDER BY scored_at DESC, score_run_id DESC) = 1;

-- one row per forecast run: its live MASE (every scored step of every series weighs the same, as in
-- backtest_scores), MAE and interval coverage over the actuals that have arrived
CREATE OR REPLACE VIEW live_scores AS
SELECT run_id, model_run_id, dataset_id, count(*) AS n_errors, count(DISTINCT series_id) AS n_series,
       avg(scaled_error) AS mase, avg(abs_error) AS mae,
       100 * avg(inside_80::INTEGER) AS coverage_80, 100 * avg(inside_95::INTEGER) AS coverage_95,
       min(timestamp) AS first_actual, max(timestamp) AS last_actual, max(scored_at) AS scored_at
FROM live_errors
GROUP BY run_id, model_run_id, dataset_id;

-- per dataset, the model serving it live beside its backtest: the current champion and its backtest MASE (the
-- champion's score); on a dataset without a champion, every model run whose forecasts were scored and the MASE of
-- its newest completed backtest over all cutoffs (the backtest that calibrates its intervals). live_mase is over
-- every scored step of that model run's forecasts of the dataset; retrain_dataset_id is the newest dataset an
-- ingest made of a file holding those actuals (else the dataset itself): the data a retraining learns from.
CREATE OR REPLACE VIEW live_vs_backtest AS
WITH live AS (
    SELECT dataset_id, model_run_id, count(*) AS n_errors, count(DISTINCT series_id) AS n_series,
           count(DISTINCT run_id) AS n_forecast_runs, avg(scaled_error) AS live_mase,
           100 * avg(inside_80::INTEGER) AS coverage_80, 100 * avg(inside_95::INTEGER) AS coverage_95,
           max(timestamp) AS last_actual, max(scored_at) AS scored_at,
           coalesce(arg_max(actuals_dataset_id, scored_at) FILTER (WHERE actuals_dataset_id IS NOT NULL),
                    dataset_id) AS retrain_dataset_id
    FROM live_errors GROUP BY dataset_id, model_run_id
),
newest_backtest AS (
    SELECT l.dataset_id, l.model_run_id, r.variant, b.run_id AS backtest_run_id
    FROM live l JOIN runs r ON r.run_id = l.model_run_id
    LEFT JOIN backtests b ON b.status = 'completed' AND b.dataset_id = r.dataset_id
         AND (b.model_run_ids ->> '$[0]' = l.model_run_id
              OR (b.model_run_ids ->> '$[0]' IS NULL AND b.variant = r.variant AND b.horizon = r.horizon))
    WHERE l.dataset_id NOT IN (SELECT dataset_id FROM current_champions)
    QUALIFY row_number() OVER (PARTITION BY l.dataset_id, l.model_run_id
                               ORDER BY b.finished_at DESC NULLS LAST, b.run_id) = 1
),
served AS (
    SELECT dataset_id, run_id AS model_run_id, variant, 'champion' AS basis, backtest_run_id, score AS backtest_mase
    FROM current_champions
    UNION ALL
    SELECT n.dataset_id, n.model_run_id, n.variant, 'newest backtest', n.backtest_run_id, s.mase
    FROM newest_backtest n LEFT JOIN backtest_scores s ON s.run_id = n.backtest_run_id AND s.cutoff IS NULL
)
SELECT s.dataset_id, s.model_run_id, s.variant, s.basis, s.backtest_run_id, s.backtest_mase, l.live_mase,
       l.live_mase / nullif(s.backtest_mase, 0) AS mase_ratio, l.n_errors, l.n_series, l.n_forecast_runs,
       l.coverage_80, l.coverage_95, l.last_actual, l.scored_at, l.retrain_dataset_id
FROM served s JOIN live l USING (dataset_id, model_run_id);

CREATE OR REPLACE VIEW series_predictions AS
SELECT r.variant, r.dataset_id, p.run_id, p.split, p.series_index, p.horizon_step, p.y_true, p.y_pred,
       p.y_pred - p.y_true AS error
FROM predictions p JOIN runs r USING (run_id);
"""

VIEW_NAMES = tuple(re.findall(r"^CREATE OR REPLACE VIEW (\w+)", VIEWS, re.MULTILINE))


def refuse_writes(sql: str) -> None:
    """Refuse anything but one statement that only reads (ValueError naming what was refused)."""
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise ValueError(f"give one statement at a time, got {len(statements)}")
    if statements[0].type not in READ_ONLY_STATEMENTS:
        raise ValueError(f"{statements[0].type.name} statements are refused: seqcast sql only reads (SELECT, "
                         f"PIVOT, EXPLAIN, DESCRIBE, SHOW, SUMMARIZE)")


def run_locked_down(con: duckdb.DuckDBPyConnection, sql: str, home, folders: tuple[str, ...]):
    """Run a user's statement on ``con`` once it may read only the store's files (``home`` and its ``folders``;
    relative paths resolve against ``home``) and its configuration is locked; return (column names, rows)."""
    con.execute("SET file_search_path = ?", [str(home)])
    con.execute("SET allowed_directories = ?", [[str(home), *(f"{folder}/" for folder in folders)]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return fetch(con, sql)


def fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None, home=None):
    """Run one statement on ``con`` (relative file paths resolving against ``home``, when given); return (column
    names, rows)."""
    if home is not None:
        con.execute("SET file_search_path = ?", [str(home)])
    cursor = con.execute(sql, params or [])
    columns = [d[0] for d in cursor.description] if cursor.description else []
    return columns, cursor.fetchall()
