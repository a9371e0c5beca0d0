"""Forecasting models: the registry of Keras builders by variant name, their custom layers, the statistical
baselines and the ensembles."""
