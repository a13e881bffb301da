"""What names a journal: a PostgreSQL URL, else an SQLite file path.

Standard library only, so that telling the two apart (the runner does, for
every run) loads neither backend.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Final

__all__ = ["SCHEMES", "describe", "is_postgres_url", "redacted"]

SCHEMES: Final = ("postgresql://", "postgres://")
"""URL schemes of a PostgreSQL journal."""


def is_postgres_url(journal: object) -> bool:
    """Whether ``journal`` (a path or a URL) names a PostgreSQL database."""
    return isinstance(journal, str) and journal.lower().startswith(SCHEMES)


def redacted(url: str) -> str:
    """``url`` without its password (for messages, reprs and pages)."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("://", 1)[0] + "://<unparsable URL>"
    if password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def describe(where: str | os.PathLike[str]) -> str:
    """How to show ``where`` (a path, or a URL without its password)."""
    return redacted(os.fspath(where)) if is_postgres_url(where) else os.fspath(where)
