"""Prefect deployments of seqcast's flows, built by functions (nothing is registered at import time)."""
