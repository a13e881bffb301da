"""Reading stored values back strictly: a value that does not decode is damage.

SQLite checks the structure of a file, not what our columns hold: a flipped
byte in a status or in a JSON text reads back as a wrong value, not as an
error. So every row the journal reads goes through these decoders. One that
fails raises :class:`Undecodable` naming the row and the column, which
:func:`rows_of` turns into a :class:`~asyncflow.errors.JournalError` naming
the file too, with the way out (:data:`RECOVER`).
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Final, TypeVar

from ..errors import JournalError

__all__ = [
    "MOVE_ASIDE",
    "RECOVER",
    "Undecodable",
    "damaged",
    "integer",
    "is_damage",
    "json_params",
    "json_texts",
    "member",
    "optional_real",
    "optional_text",
    "real",
    "rows_of",
    "text",
]

E = TypeVar("E", bound=enum.Enum)

MOVE_ASIDE: Final = (
    "to go on, move the file aside (a new journal starts empty; the outputs remain the "
    "truth of what is done)"
)
RECOVER: Final = f"`asyncflow journal check {{path}}` tells what is damaged; {MOVE_ASIDE}"
"""How to get out of a damaged journal (format with ``path``)."""


class Undecodable(ValueError):
    """A stored value that is not what its column holds."""

    def __init__(self, column: str, value: object, expected: str) -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = f"{shown[:77]}..."
        super().__init__(f"{column} {shown} is not {expected}")


def damaged(path: Path, problem: str) -> JournalError:
    """The error for a journal file found damaged: ``problem``, then how to recover."""
    error = JournalError(f"{path}: damaged journal: {problem}; {RECOVER.format(path=path)}")
    error.add_note(_DAMAGE)
    return error


def is_damage(error: JournalError) -> bool:
    """Whether ``error`` came from :func:`damaged`."""
    return _DAMAGE in getattr(error, "__notes__", ())


_DAMAGE: Final = "The journal file is damaged."


@contextlib.contextmanager
def rows_of(path: Path, row: str) -> Iterator[None]:
    """Decode ``row`` (e.g. ``"runs row 'r1'"``) of the journal at ``path``.

    Raises:
        JournalError: a value of the row does not decode.
    """
    try:
        yield
    except Undecodable as exc:
        raise damaged(path, f"{row}: {exc}") from exc


def member(kind: type[E], value: object, column: str) -> E:
    """The member of ``kind`` stored as ``value``."""
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(str(m.value) for m in kind)
        raise Undecodable(column, value, f"one of {names}") from None


def text(value: object, column: str) -> str:
    if isinstance(value, str):
        return value
    raise Undecodable(column, value, "text")


def real(value: object, column: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise Undecodable(column, value, "a number")


def optional_real(value: object, column: str) -> float | None:
    return None if value is None else real(value, column)


def optional_text(value: object, column: str) -> str | None:
    return None if value is None else text(value, column)


def integer(value: object, column: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise Undecodable(column, value, "an integer")


def json_texts(value: object, column: str) -> list[str]:
    """A JSON array of strings."""
    found = _json(value, column)
    if isinstance(found, list) and all(isinstance(item, str) for item in found):
        return found
    raise Undecodable(column, value, "a JSON array of texts")


def json_params(value: object, column: str) -> dict[str, str]:
    """A JSON object of texts (parameter name -> value)."""
    found = _json(value, column)
    if isinstance(found, dict) and all(isinstance(item, str) for item in found.values()):
        return found
    raise Undecodable(column, value, "a JSON object of texts")


def _json(value: object, column: str) -> object:
    if not isinstance(value, str):
        raise Undecodable(column, value, "JSON text")
    try:
        return json.loads(value)
    except ValueError:
        raise Undecodable(column, value, "JSON text") from None
