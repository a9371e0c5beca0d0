"""Training Keras models and forecasting with them: fitting pairs, early stopping, divergence, iterated forecasts."""
