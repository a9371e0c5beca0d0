"""The M3 benchmark's last stage: read its runs' scores from DuckDB, publish the leaderboard and its chart."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from seqcast.evaluation.m3_benchmark import Anchor, leaderboard
from seqcast.reporting.plots import plot_benchmark_smape
from seqcast.reporting.report import benchmark_markdown
from seqcast.storage.home import current_store

BENCHMARK_KEY = "seqcast-m3-benchmark"
CHART_KEY = "seqcast-m3-benchmark-chart"


@task(name="publish-benchmark", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def publish_benchmark(runs: list[dict], anchors: list[Anchor]) -> list[dict]:
    """Publish the benchmark's table (test split, per subset and overall) and a chart of its sMAPE as artifacts.

    ``runs``: one dict per forecast run (subset, variant, run_id, state, wall_s, epochs); return the table.
    """
    results = current_store().results
    run_ids = [run["run_id"] for run in runs if run["run_id"]]
    table = leaderboard(runs, results.benchmark_scores(run_ids), results.series_scores(run_ids), anchors)
    create_table_artifact(table, key=BENCHMARK_KEY,
                          description="M3 benchmark, test split: sMAPE, MASE and OWA per subset and overall")
    title = "M3 benchmark: test sMAPE by variant and subset"
    create_markdown_artifact(benchmark_markdown(title, table, plot_benchmark_smape(table, title)), key=CHART_KEY,
                             description="M3 benchmark: chart of test sMAPE by variant and subset, and the table")
    get_run_logger().info("published %d benchmark rows as artifacts %s and %s", len(table), BENCHMARK_KEY, CHART_KEY)
    return table
