"""The safety net behind hidden and private parameters: masking known secrets in text.

asyncflow never renders the value of a hidden or private parameter (see
:meth:`asyncflow.Task.public_params`). User code may still log one by accident,
or put it in an exception message. While a run goes on, the text forms of its
tasks' secrets are therefore known here, in a context variable (so two runs in
one process keep theirs apart, and a task body's worker thread sees its run's),
and :func:`redact` replaces them, and the cloud credentials of the environment,
with :data:`MASK`; the logging set-up of :func:`asyncflow.logging.configure_logging`
applies it to every record it writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

__all__ = [
    "CREDENTIAL_VARIABLES",
    "MASK",
    "describe",
    "known_secrets",
    "redact",
    "remember",
    "scope",
]

MASK: Final = "***"
"""What stands for a hidden value wherever asyncflow shows or stores one."""

CREDENTIAL_VARIABLES: Final = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
"""Environment variables holding cloud credentials that the S3 target reads."""

_MIN_LENGTH: Final = 4
# Shorter values (a hidden flag's "true", a port "5432" stays) would mask unrelated
# text everywhere and protect next to nothing.


class _Known:
    """The secrets of one run, and the forms to search for, recomputed only when it grew."""

    __slots__ = ("_forms", "_size", "texts")

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = {text for text in texts if len(text) >= _MIN_LENGTH}
        self._forms: list[str] = []
        self._size = 0

    def forms(self) -> list[str]:
        if self._size != len(self.texts):
            texts = set(self.texts)  # a copy: a worker thread may add meanwhile
            self._forms, self._size = _forms_of(texts), len(texts)
        return self._forms


_known: ContextVar[_Known | None] = ContextVar("asyncflow_known_secrets", default=None)


@contextmanager
def scope(texts: Iterable[str] = ()) -> Iterator[None]:
    """Within the block (a run), secrets passed to :func:`remember` are known to :func:`redact`."""
    token = _known.set(_Known(texts))
    try:
        yield
    finally:
        _known.reset(token)


def active() -> bool:
    """Whether a :func:`scope` is open: only then is it worth listing a task's secrets."""
    return _known.get() is not None


def remember(texts: Iterable[str]) -> None:
    """Add secret texts to the open :func:`scope` (none open: nothing to do)."""
    known = _known.get()
    if known is not None:
        known.texts.update(text for text in texts if len(text) >= _MIN_LENGTH)


def texts_of(value: object, text: str) -> Iterator[str]:
    """``text`` (a value's text form) and the strings inside a list or dict value.

    A hidden ``DictParameter`` may be logged as a dict, not as its JSON form.
    """
    yield text
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item is not value:
                yield item
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, tuple | list):
            stack.extend(item)


def known_secrets(extra: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """The secrets to mask now, each also as JSON and ``repr()`` would escape it.

    ``extra``, the credential variables of ``environ`` (default: ``os.environ``,
    read at each call: credentials may be set after logging is), and the open
    scope's. Each group longest first, so that a secret containing another is
    masked whole. The cost of masking grows with the number of distinct secrets
    of a run (usually a few: one password shared by every task).
    """
    env = os.environ if environ is None else environ
    more = [text for text in extra if len(text) >= _MIN_LENGTH]
    for name in CREDENTIAL_VARIABLES:
        value = env.get(name)
        if value and len(value) >= _MIN_LENGTH:
            more.append(value)
    known = _known.get()
    forms = known.forms() if known is not None else []
    return _forms_of(set(more)) + forms if more else forms


def _forms_of(texts: set[str]) -> list[str]:
    forms = set(texts)
    for secret in texts:
        forms.add(json.dumps(secret)[1:-1])  # JSON logs escape quotes, backslashes, non-ASCII
        forms.add(repr(secret)[1:-1])
    return sorted(forms, key=len, reverse=True)


def describe(error: BaseException) -> str:
    """``Type: message`` of an error for a log record, known secrets masked (the
    message is often the task body's own text)."""
    text = f"{type(error).__name__}: {error}"
    secrets = known_secrets()
    return redact(text, secrets) if secrets else text


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by :data:`MASK`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
