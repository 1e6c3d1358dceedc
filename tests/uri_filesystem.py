"""A Beam FileSystem for a URI scheme, backed by a local folder: the refresh's remote-storage path, testable.

``graphrisktest://bucket/key`` is ``ROOT/bucket/key``. Like gs:// and s3:// it has no
directories (``has_dirs`` is False) and is reached only through Beam's FileSystems, so a
``pathlib`` call anywhere on the path fails instead of quietly reading the local disk.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

SCHEME = "graphrisktest"


class PrefixedLocalFileSystem(LocalFileSystem):
    """``graphrisktest://`` URIs mapped onto :attr:`root` (set by the test)."""

    root: ClassVar[Path | None] = None

    @classmethod
    def scheme(cls) -> str:
        return SCHEME

    def _local(self, uri: str) -> str:
        assert self.root is not None, "set PrefixedLocalFileSystem.root first"
        prefix = f"{SCHEME}://"
        if not uri.startswith(prefix):
            raise ValueError(f"not a {SCHEME} URI: {uri}")
        return str(self.root / uri[len(prefix) :])

    def _uri(self, local: str) -> str:
        assert self.root is not None
        return f"{SCHEME}://" + Path(local).relative_to(self.root).as_posix()

    def join(self, basepath: str, *paths: str) -> str:
        return posixpath.join(basepath, *paths)

    def split(self, path: str) -> tuple[str, str]:
        head, tail = posixpath.split(path)
        return head, tail

    def has_dirs(self) -> bool:
        return False

    def mkdirs(self, path: str) -> None:
        Path(self._local(path)).mkdir(parents=True, exist_ok=True)

    def _list(self, dir_or_prefix: str) -> Iterator[FileMetadata]:
        local = Path(self._local(dir_or_prefix))
        base = local if local.is_dir() else local.parent
        for p in sorted(base.rglob("*")):
            if p.is_file() and str(p).startswith(str(local)):
                st = p.stat()
                yield FileMetadata(self._uri(str(p)), st.st_size, st.st_mtime)

    def create(self, path: str, mime_type: str = "application/octet-stream",
               compression_type: str = CompressionTypes.AUTO) -> Any:  # fmt: skip
        Path(self._local(path)).parent.mkdir(parents=True, exist_ok=True)  # objects need no folders
        return super().create(self._local(path), mime_type, compression_type)

    def open(self, path: str, mime_type: str = "application/octet-stream",
             compression_type: str = CompressionTypes.AUTO) -> Any:  # fmt: skip
        return super().open(self._local(path), mime_type, compression_type)

    def copy(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        super().copy(
            [self._local(s) for s in source_file_names], [self._local(d) for d in destination_file_names]
        )

    def rename(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        super().rename(
            [self._local(s) for s in source_file_names], [self._local(d) for d in destination_file_names]
        )

    def exists(self, path: str) -> bool:
        return super().exists(self._local(path))

    def size(self, path: str) -> int:
        return super().size(self._local(path))

    def last_updated(self, path: str) -> float:
        return super().last_updated(self._local(path))

    def checksum(self, path: str) -> str:
        return super().checksum(self._local(path))

    def metadata(self, path: str) -> FileMetadata:
        meta = super().metadata(self._local(path))
        return FileMetadata(path, meta.size_in_bytes, meta.last_updated_in_seconds)

    def delete(self, paths: list[str]) -> None:
        super().delete([self._local(p) for p in paths])
