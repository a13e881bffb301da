"""Warehouse tables as targets: :class:`TableTarget` and its backends.

=====================  ==========================  ==============================
backend                class                       extra
=====================  ==========================  ==============================
DuckDB (a local file)  :class:`DuckDBTarget`       ``asyncflow[duckdb]``
PostgreSQL             :class:`PostgresTarget`     ``asyncflow[postgres]``
BigQuery               :class:`BigQueryTarget`     ``asyncflow[bigquery]``
=====================  ==========================  ==============================

A target is complete when its marker row is there, written with the data
(see :mod:`asyncflow.targets.table.base`); a load under a journal lease is
fenced by its token in ``asyncflow_fence`` (DuckDB, PostgreSQL). Importing
this package imports no driver: each backend imports its own on first use.
"""

from .base import DEFAULT_FENCE_TABLE, DEFAULT_MARKER_TABLE, TableTarget
from .bigquery import BigQueryTarget
from .duckdb import DuckDBTarget
from .postgres import PostgresTarget

__all__ = [
    "DEFAULT_FENCE_TABLE",
    "DEFAULT_MARKER_TABLE",
    "BigQueryTarget",
    "DuckDBTarget",
    "PostgresTarget",
    "TableTarget",
]
