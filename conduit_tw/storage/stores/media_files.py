"""
Media files on disk (docs/media.md, "Storage").

Every file lives under the media directory (C{[global.media] path},
default C{<database_path>/media}) and is named by the SHA-256 of its
I{key} (C{server_name 0xFF media_id} for an original, with the thumbnail
size and method appended for a thumbnail), spread over C{depth}
directories of C{length} hex characters (C{directory_structure}):
C{ab/cd/abcd...}. Names never depend on what a client sends, so they have
a fixed length and cannot traverse directories.

Writes are atomic: bytes go to a temporary file in C{<media>/tmp/} (same
file system), which is flushed, fsync'd and then renamed over the final
name (C{os.replace}), and the directory is fsync'd. A crash or a dropped
connection leaves at most a temporary file, which the next start-up
removes (L{MediaFiles.setup}); a final name always holds a whole file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from typing import BinaryIO, Callable

from twisted.internet.threads import deferToThread

from conduit_tw.storage.keys import join

#: Thumbnail key suffix: C{<width>x<height>-<method>[-animated]}.
ORIGINAL = b""


def media_key(server_name: str, media_id: str, variant: str = "") -> bytes:
    """The key a file is named after: original (C{variant=""}) or a thumbnail."""
    if variant:
        return join(server_name, media_id, variant)
    return join(server_name, media_id)


class UploadSpool:
    """
    A request body written straight to a temporary file in the media
    directory as it arrives (never held in memory). Used as a twisted.web
    request's C{content}: C{write}, C{seek}, C{read}, C{tell}, C{close}.

    Closing it before L{MediaFiles.commit} moved it into place deletes the
    temporary file: that is what happens when the connection drops or the
    request is refused.

    @ivar size: bytes written so far.
    """

    def __init__(self, path: str, check_space: Callable[[int], bool] | None = None) -> None:
        self.path = path
        self.size = 0
        self._file: BinaryIO = open(path, "w+b")
        self._committed = False
        self._moving = False
        self._check_space = check_space
        self._next_space_check = SPACE_CHECK_EVERY
        #: Set when the disk is about to run full while the body arrives.
        self.out_of_space = False

    def write(self, data: bytes) -> None:
        """Append a chunk of the body."""
        if self.out_of_space:
            return
        self.size += len(data)
        if self._check_space is not None and self.size >= self._next_space_check:
            self._next_space_check = self.size + SPACE_CHECK_EVERY
            if not self._check_space(SPACE_CHECK_EVERY):
                self.out_of_space = True
                return
        self._file.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        """See C{file.seek}."""
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        """See C{file.tell}."""
        return self._file.tell()

    def read(self, n: int = -1) -> bytes:
        """See C{file.read}."""
        return self._file.read(n)

    @property
    def closed(self) -> bool:
        """Whether the file was closed."""
        return self._file.closed

    def close(self) -> None:
        """Close; the temporary file is deleted unless it was committed."""
        if self._moving:
            # L{MediaFiles.commit}'s thread owns the file now and cleans up
            # itself if it fails (a connection lost meanwhile lands here).
            return
        if not self._file.closed:
            self._file.close()
        if not self._committed:
            self._committed = True  # only once
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def _sync_and_move(self, final: str) -> None:
        """Thread side of L{MediaFiles.commit}."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(self.path, final)
            self._committed = True
        except BaseException:
            self._moving = False
            self.close()
            raise
        _fsync_dir(os.path.dirname(final))


#: A chunked body (no declared length) re-checks free space this often.
SPACE_CHECK_EVERY = 4 * 1024 * 1024


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MediaFiles:
    """
    The media directory; see the module docstring.

    @param min_free: bytes that must stay free on the media file system
        after an upload; uploads that would eat into it are refused.
    """

    def __init__(
        self,
        root: str,
        length: int = 2,
        depth: int = 2,
        min_free: int = 64 * 1024 * 1024,
        disk_free: Callable[[str], int] | None = None,
    ) -> None:
        self.root = root
        self.tmp = os.path.join(root, "tmp")
        self._length = length
        self._depth = depth
        self.min_free = min_free
        #: C{path -> free bytes}; tests replace it.
        self.disk_free = disk_free or (lambda p: shutil.disk_usage(p).free)

    def setup(self) -> None:
        """Create the directories; remove temporary files a crash left."""
        os.makedirs(self.tmp, exist_ok=True)
        for name in os.listdir(self.tmp):
            try:
                os.unlink(os.path.join(self.tmp, name))
            except OSError:
                pass

    def path_for(self, key: bytes) -> str:
        """The file a key is stored in."""
        digest = hashlib.sha256(key).hexdigest()
        parts = [
            digest[i * self._length : (i + 1) * self._length] for i in range(self._depth)
        ]
        return os.path.join(self.root, *parts, digest)

    def has_space_for(self, size: int) -> bool:
        """Whether C{size} more bytes leave at least C{min_free} free."""
        try:
            return self.disk_free(self.root) - size >= self.min_free
        except OSError:
            return False

    def spool(self) -> UploadSpool:
        """A new temporary file for an incoming upload."""
        path = os.path.join(self.tmp, uuid.uuid4().hex + ".part")
        return UploadSpool(path, self.has_space_for)

    def commit(self, spool: UploadSpool, key: bytes):
        """
        Move a complete spool into place under C{key}, durably (in a
        thread: fsync blocks). @return: a Deferred firing with C{None}.
        """
        spool._moving = True
        return deferToThread(spool._sync_and_move, self.path_for(key))

    def write(self, key: bytes, data: bytes):
        """Store C{data} under C{key} atomically (thumbnails). @return: a Deferred."""
        spool = self.spool()
        try:
            spool.write(data)
        except BaseException:
            spool.close()
            raise
        return self.commit(spool, key)

    def open(self, key: bytes) -> BinaryIO | None:
        """The file of C{key} opened for reading, or None when absent."""
        try:
            return open(self.path_for(key), "rb")
        except FileNotFoundError:
            return None

    def remove(self, keys: list[bytes]) -> None:
        """Delete the files of C{keys} (missing ones are ignored)."""
        for key in keys:
            try:
                os.unlink(self.path_for(key))
            except FileNotFoundError:
                pass
