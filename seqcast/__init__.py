"""seqcast: batch forecasting with the sequence models of HOML ch. 15, orchestrated by Prefect."""

__version__ = "0.1.0"
