"""Files the pipeline's workers read and write, named by URI and reached through Beam's FileSystems.

On a cluster the workers do not share the launcher's disk: event files arrive on ``gs://``,
``s3://`` or ``hdfs://``, and a worker's outputs (a batch's snapshot delta and dead letters)
must land where the launcher can fetch them. Everything a worker touches goes through
:class:`apache_beam.io.filesystems.FileSystems`, so a scheme Beam knows works unchanged; a plain
path is a local file, as before.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from graphrisk.errors import GraphRiskError

_CHUNK = 1 << 20
# What a batch's staging area holds: snapshot delta tables and dead letters.
_STAGED_SUFFIXES = (".parquet", ".jsonl")


class InputLocationError(GraphRiskError):
    """An input location cannot be listed or read (unknown scheme, missing, no permission)."""


def as_uri(location: str | Path) -> str:
    """A location as FileSystems takes it: URIs unchanged, local paths absolute."""
    text = str(location)
    if "://" in text:
        return text.rstrip("/")
    return str(Path(text).resolve())


def is_local(location: str | Path) -> bool:
    """Whether ``location`` is a plain local path (no scheme)."""
    return "://" not in str(location)


def join(root: str | Path, relpath: str) -> str:
    """``root`` and a ``/``-separated relative path, joined the way the root's scheme joins."""
    return FileSystems.join(as_uri(root), *relpath.split("/"))


def suffix(location: str) -> str:
    """The lower-cased extension of a file location (``.csv``)."""
    return posixpath.splitext(location)[1].lower()


def open_read(location: str | Path) -> BinaryIO:
    """Open one file for binary reading, never decompressing by its name."""
    return FileSystems.open(as_uri(location), compression_type=CompressionTypes.UNCOMPRESSED)


@contextmanager
def open_text(location: str | Path, **kwargs: str) -> Iterator[io.TextIOWrapper]:
    """Open one file as text (``io.TextIOWrapper`` keyword arguments pass through)."""
    raw = open_read(location)
    text = io.TextIOWrapper(raw, **kwargs)
    try:
        yield text
    finally:
        text.close()


def sha256(location: str | Path) -> str:
    """Hex SHA-256 of one file's bytes, streamed."""
    digest = hashlib.sha256()
    with open_read(location) as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FoundFile:
    """A file under an input root: its path relative to the root (``/``-separated) and its URI."""

    relpath: str
    uri: str


def list_files(root: str | Path, suffixes: tuple[str, ...]) -> list[FoundFile]:
    """Every file under ``root`` (recursively) whose extension is one of ``suffixes``, sorted.

    Raises:
        InputLocationError: the root cannot be listed (an unknown scheme, say).
    """
    base = as_uri(root)
    try:
        results = FileSystems.match([FileSystems.join(base, "**")])
    except Exception as exc:  # Beam raises BeamIOError or ValueError for unknown schemes
        raise InputLocationError(f"{root}: cannot list event files: {exc}") from exc
    prefix = base.rstrip("/") + "/"
    found = []
    for meta in (m for r in results for m in r.metadata_list):
        path = meta.path
        if not path.startswith(prefix) or suffix(path) not in suffixes:
            continue
        found.append(FoundFile(path[len(prefix) :], path))
    return sorted(found, key=lambda f: f.relpath)


def write_atomically(location: str | Path, data: bytes) -> None:
    """Write ``data`` to ``location`` so a reader sees the old file or the whole new one.

    Local files are written beside and renamed; object stores commit an object whole on close,
    and a rename there is a copy, so the bytes go straight to the object.
    """
    uri = as_uri(location)
    if is_local(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return
    with FileSystems.create(uri, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        fh.write(data)


def delete_if_exists(location: str | Path) -> None:
    """Remove one file if it is there."""
    uri = as_uri(location)
    if FileSystems.exists(uri):
        FileSystems.delete([uri])


def copy_tree(src_root: str, dst_root: Path) -> list[Path]:
    """Copy every file under ``src_root`` (any scheme) into the local ``dst_root``, atomically each."""
    copied = []
    for f in list_files(src_root, _STAGED_SUFFIXES):
        dst = dst_root / f.relpath
        with open_read(f.uri) as fh:
            write_atomically(dst, fh.read())
        copied.append(dst)
    return copied
