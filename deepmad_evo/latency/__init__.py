"""Latency on the user's own device: op tables measured by ``profile``, a vectorised model, budgets (numpy only)."""
