"""Forecasting in production: the latest windows, conformal intervals, the champion, live scoring of actuals."""
