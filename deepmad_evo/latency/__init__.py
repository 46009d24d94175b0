"""Latency on the user's own device: op tables measured by ``profile``, a vectorised model, budgets (numpy only).

``profile`` (the timing itself) imports torch lazily; everything exported here is numpy-only.
"""

from .model import FORMS, LatencyModel, model_for
from .table import LatencyTable, LatencyTableError, Settings, format_time, load_table, parse_time

__all__ = ["FORMS", "LatencyModel", "LatencyTable", "LatencyTableError", "Settings", "format_time", "load_table",
           "model_for", "parse_time"]
