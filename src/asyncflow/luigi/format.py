"""How a Luigi target's bytes are read and written: text, raw bytes, gzip, bzip2.

``LocalTarget(path, format=luigi.format.Gzip)`` writes gzip-compressed bytes;
formats chain with ``>>`` (``UTF8 >> Gzip`` writes text, gzip-compressed).
A format wraps the target's atomic binary file: closing the outermost file
finishes every layer and then commits the write; leaving a ``with`` block
through an exception discards it. Compression runs in-process (the gzip and
bz2 modules), not through external programs as Luigi does.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import locale
from collections.abc import Iterator
from types import TracebackType
from typing import IO, Any, Protocol

__all__ = [
    "UTF8",
    "Bzip2",
    "Bzip2Format",
    "ChainFormat",
    "Format",
    "Gzip",
    "GzipFormat",
    "MixedUnicodeBytes",
    "Nop",
    "NopFormat",
    "SysNewLine",
    "Text",
    "TextFormat",
    "get_default_format",
]


class Sink(Protocol):
    """The binary end of a write: ``write``, then ``close`` (commit) or ``abort``."""

    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class Writer:
    """A file being written through one format layer.

    Reads like a file (every other attribute is the layer's own); ``close()``
    finishes the layer and closes the one below (the last commits);
    ``abort()`` discards the whole write. As a context manager it closes on
    success and aborts on an exception.
    """

    def __init__(self, top: IO[Any], below: Sink, finish: Any = None) -> None:
        self._top = top
        self._below = below
        self._finish = finish
        self.closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._top, name)

    def write(self, data: Any) -> int:
        return self._top.write(data)

    def writelines(self, lines: Any) -> None:
        self._top.writelines(lines)

    def flush(self) -> None:
        self._top.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self._finish is not None:
                self._finish()
        except BaseException:
            self._below.abort()
            raise
        self._below.close()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self._below.abort()

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close() is discarded, never committed (as in Luigi).
        if not getattr(self, "closed", True):
            with contextlib.suppress(Exception):
                self.abort()


class Format:
    """A way of reading and writing a target's bytes."""

    input = "bytes"
    output = "bytes"

    def pipe_reader(self, input_pipe: Any) -> Any:
        return input_pipe

    def pipe_writer(self, output_pipe: Any) -> Any:
        return output_pipe

    def __rshift__(self, other: Format) -> ChainFormat:
        return ChainFormat(self, other)


class NopFormat(Format):
    """Raw bytes."""


class TextFormat(Format):
    """Text, encoded with ``encoding`` (default: the locale's, as in Luigi)."""

    input = "unicode"

    def __init__(self, encoding: str | None = None, newline: str | None = None) -> None:
        self.encoding = encoding
        self.newline = newline

    def _encoding(self) -> str:
        return self.encoding or locale.getpreferredencoding(False)

    def pipe_reader(self, input_pipe: Any) -> Any:
        return io.TextIOWrapper(input_pipe, encoding=self._encoding(), newline=self.newline)

    def pipe_writer(self, output_pipe: Any) -> Any:
        text = io.TextIOWrapper(
            _Unclosable(output_pipe),  # type: ignore[type-var]
            encoding=self._encoding(),
            newline=self.newline,
        )

        def finish() -> None:
            text.flush()
            text.detach()

        return Writer(text, output_pipe, finish)


class MixedUnicodeBytesFormat(TextFormat):
    """Text or bytes alike (text is encoded)."""

    def pipe_writer(self, output_pipe: Any) -> Any:
        encoding = self._encoding()

        class _Mixed(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, data: Any) -> int:
                if isinstance(data, str):
                    data = data.encode(encoding)
                output_pipe.write(data)
                return len(data)

        return Writer(_Mixed(), output_pipe)  # type: ignore[arg-type]


class GzipFormat(Format):
    """gzip-compressed bytes."""

    def __init__(self, compression_level: int | None = None) -> None:
        self.compression_level = compression_level

    def pipe_reader(self, input_pipe: Any) -> Any:
        return _Closing(gzip.GzipFile(fileobj=input_pipe, mode="rb"), input_pipe)  # type: ignore[arg-type]

    def pipe_writer(self, output_pipe: Any) -> Any:
        # gzip's own default level, and no time stamp: the same data gives the same file.
        level = 6 if self.compression_level is None else int(self.compression_level)
        compressed = gzip.GzipFile(
            fileobj=_Unclosable(output_pipe), mode="wb", compresslevel=level, mtime=0
        )
        return Writer(compressed, output_pipe, compressed.close)  # type: ignore[arg-type]


class Bzip2Format(Format):
    """bzip2-compressed bytes."""

    def pipe_reader(self, input_pipe: Any) -> Any:
        return _Closing(bz2.BZ2File(input_pipe, mode="rb"), input_pipe)

    def pipe_writer(self, output_pipe: Any) -> Any:
        compressed = bz2.BZ2File(_Unclosable(output_pipe), mode="wb")
        return Writer(compressed, output_pipe, compressed.close)


class ChainFormat(Format):
    """Formats applied in turn: ``A >> B`` writes through A, then B, then the target."""

    def __init__(self, *formats: Format) -> None:
        self.formats = formats
        self.input = formats[0].input
        self.output = formats[-1].output

    def pipe_reader(self, input_pipe: Any) -> Any:
        for fmt in reversed(self.formats):
            input_pipe = fmt.pipe_reader(input_pipe)
        return input_pipe

    def pipe_writer(self, output_pipe: Any) -> Any:
        for fmt in reversed(self.formats):
            output_pipe = fmt.pipe_writer(output_pipe)
        return output_pipe


class _Unclosable(io.RawIOBase):
    """A writable view of a sink that a layer may close without committing it."""

    def __init__(self, sink: Any) -> None:
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sink.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        flush = getattr(self._sink, "flush", None)
        if flush is not None:
            flush()


class _Closing(io.BufferedIOBase):
    """A reading layer that also closes the layer below when closed."""

    def __init__(self, top: IO[bytes], below: IO[bytes]) -> None:
        self._top = top
        self._below = below

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._top.read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self._top.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self._top.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._top)

    def close(self) -> None:
        if not self.closed:
            try:
                self._top.close()
            finally:
                self._below.close()
                super().close()


Text = TextFormat()
UTF8 = TextFormat(encoding="utf8")
Nop = NopFormat()
SysNewLine = TextFormat()
Gzip = GzipFormat()
Bzip2 = Bzip2Format()
MixedUnicodeBytes = MixedUnicodeBytesFormat()


def get_default_format() -> Format:
    """Text in the locale's encoding, as Luigi's targets default to."""
    return Text
