"""Where task data lives: the :class:`Target` base and its backends.

Importing this package stays light: the S3 and GCS backends import
aiobotocore, gcsfs and aiohttp only when they first need a client (in a worker
thread), and the table backends (:mod:`asyncflow.targets.table`) import
duckdb, asyncpg and google-cloud-bigquery likewise, so ``import asyncflow``
never loads them.
"""

import typing as _typing

from .._lazy import lazy_names as _lazy_names
from .base import Target
from .local import LocalTarget
from .memory import MemoryStore, MemoryTarget

if _typing.TYPE_CHECKING:
    from ._probe import probe_many
    from ._remote import RequestCounter, RequestRetry
    from .gcs import GCSConfig, GCSPrefixTarget, GCSTarget
    from .s3 import S3Config, S3PrefixTarget, S3Target
    from .table import BigQueryTarget, DuckDBTarget, PostgresTarget, TableTarget

# The S3, GCS and table targets' modules are imported when first used.
__getattr__, __dir__ = _lazy_names(
    __name__,
    {
        "probe_many": "._probe",
        **dict.fromkeys(("RequestCounter", "RequestRetry"), "._remote"),
        **dict.fromkeys(("GCSConfig", "GCSPrefixTarget", "GCSTarget"), ".gcs"),
        **dict.fromkeys(("S3Config", "S3PrefixTarget", "S3Target"), ".s3"),
        **dict.fromkeys(
            ("BigQueryTarget", "DuckDBTarget", "PostgresTarget", "TableTarget"), ".table"
        ),
    },
)

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
