"""seqcast: batch forecasting with the sequence models of HOML ch. 15, orchestrated by Prefect.

The library's calls (``seqcast.app.api``) load on first use, so that importing seqcast or one of its core modules
touches neither Prefect nor TensorFlow::

    import seqcast

    fc = seqcast.forecast(df, ["stats_theta"], h=18, level=[80, 95])
"""

__version__ = "0.1.0"
__all__ = ["forecast", "cross_validation", "ingest", "run", "sql"]


def __getattr__(name: str):
    if name in __all__:
        from seqcast.app import api

        return getattr(api, name)
    raise AttributeError(f"module 'seqcast' has no attribute {name!r}")
