"""Persistence: datasets as Parquet, trained models as .keras + manifest, results as a Parquet record + DuckDB."""
