"""Where task data lives: the :class:`Target` base and its backends.

Importing this package stays light: the S3 and GCS backends import
aiobotocore, gcsfs and aiohttp only when they first need a client (in a worker
thread), and the table backends (:mod:`asyncflow.targets.table`) import
duckdb, asyncpg and google-cloud-bigquery likewise, so ``import asyncflow``
never loads them.
"""

from ._probe import probe_many
from ._remote import RequestCounter, RequestRetry
from .base import Target
from .gcs import GCSConfig, GCSPrefixTarget, GCSTarget
from .local import LocalTarget
from .memory import MemoryStore, MemoryTarget
from .s3 import S3Config, S3PrefixTarget, S3Target
from .table import BigQueryTarget, DuckDBTarget, PostgresTarget, TableTarget

__all__ = [
    "BigQueryTarget",
    "DuckDBTarget",
    "GCSConfig",
    "GCSPrefixTarget",
    "GCSTarget",
    "LocalTarget",
    "MemoryStore",
    "MemoryTarget",
    "PostgresTarget",
    "RequestCounter",
    "RequestRetry",
    "S3Config",
    "S3PrefixTarget",
    "S3Target",
    "TableTarget",
    "Target",
    "probe_many",
]
