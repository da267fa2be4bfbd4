"""Writing export files: rows as CSV (or bare lines) into parts that respect a
row and a byte limit, each part starting with its header, all under the
exports directory.

Rows are written as they come (the selectors stream them), so a million rows
never sit in memory; the byte limit is checked on the encoded line before it is
written, so no part ever exceeds it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

FLUSH_BYTES = 1 << 20


def exports_dir() -> Path:
    """Where run files go: ``CDP["EXPORTS_DIR"]``, else MEDIA_ROOT/exports, else
    var/exports (git-ignored)."""
    configured = settings.CDP.get("EXPORTS_DIR")
    if configured:
        return Path(configured)
    if settings.MEDIA_ROOT:
        return Path(settings.MEDIA_ROOT) / "exports"
    return Path(settings.BASE_DIR) / "var" / "exports"


@dataclass
class Part:
    name: str
    path: Path
    rows: int = 0
    size: int = 0
    sha256: str = ""


@dataclass
class SplitWriter:
    """Parts named ``<stem>_001<suffix>``, ``<stem>_002<suffix>``, ...; a file
    that needed only one part is renamed ``<stem><suffix>`` when closed.

    ``header`` lines (already formatted, without line ends) start every part;
    ``csv_rows``: rows are CSV fields (quoted where needed), else bare values."""

    directory: Path
    stem: str
    suffix: str
    header: Sequence[str] = ()
    max_rows: int = 10**12
    max_bytes: int = 10**15
    csv_rows: bool = True
    line_end: str = "\n"
    encoding: str = "utf-8"
    parts: list[Part] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file: io.BufferedWriter | None = None
        self._hash = hashlib.sha256()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator=self.line_end)
        self._header = b"".join((h + self.line_end).encode(self.encoding) for h in self.header)
        if len(self._header) >= self.max_bytes:
            raise ValueError("the header alone exceeds the file size limit")

    def _open(self) -> None:
        self._close_part()
        n = len(self.parts) + 1
        name = f"{self.stem}_{n:03d}{self.suffix}"
        part = Part(name=name, path=self.directory / name)
        self._file = open(part.path, "wb")  # noqa: SIM115 (closed in _close_part)
        self._hash = hashlib.sha256()
        self.parts.append(part)
        if self._header:
            self._write(self._header)

    def _write(self, data: bytes) -> None:
        # Buffered here in blocks of about a megabyte: a write and a hash update
        # per row cost more than the row at a million rows.
        assert self._file is not None
        self._pending.append(data)
        self._pending_size += len(data)
        self.parts[-1].size += len(data)
        if self._pending_size >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            assert self._file is not None
            block = b"".join(self._pending)
            self._file.write(block)
            self._hash.update(block)
            self._pending = []
            self._pending_size = 0

    def _close_part(self) -> None:
        if self._file is not None:
            self._flush()
            self._file.close()
            self._file = None
            self.parts[-1].sha256 = self._hash.hexdigest()

    def format_row(self, row: Sequence[str] | str) -> str:
        """The row as ``write`` would write it, without its line end."""
        if not self.csv_rows:
            return str(row)
        self._csv.writerow(row)
        line = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return line[: -len(self.line_end)]

    def write(self, row: Sequence[str] | str) -> None:
        self.write_lines([self.format_row(row)])

    def write_lines(self, lines: Iterable[str]) -> None:
        """Rows already formatted (``format_row``, or CSV quoted where needed
        by whoever made them), without their line ends."""
        end, encoding = self.line_end, self.encoding
        max_rows, max_bytes = self.max_rows, self.max_bytes
        room = max_bytes - len(self._header)
        for line in lines:
            data = (line + end).encode(encoding)
            size = len(data)
            if size > room:
                raise ValueError("one row exceeds the file size limit")
            part = self.parts[-1] if self.parts else None
            if (
                part is None
                or self._file is None
                or part.rows >= max_rows
                or part.size + size > max_bytes
            ):
                self._open()
                part = self.parts[-1]
            self._pending.append(data)
            self._pending_size += size
            part.size += size
            part.rows += 1
            if self._pending_size >= FLUSH_BYTES:
                self._flush()

    def close(self) -> list[Part]:
        """Close the last part; with no row at all, one part with just the header."""
        if not self.parts:
            self._open()
        self._close_part()
        if len(self.parts) == 1:
            only = self.parts[0]
            name = f"{self.stem}{self.suffix}"
            os.replace(only.path, self.directory / name)
            only.name, only.path = name, self.directory / name
        return self.parts
