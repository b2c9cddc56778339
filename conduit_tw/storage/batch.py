"""
L{WriteBatch}: the plain list-of-changes L{IWriteBatch} that every backend
(ours and third parties') can hand out from C{batch()} and read back by
iterating it.
"""

from __future__ import annotations

from typing import Iterator

from zope.interface import implementer

from conduit_tw.storage.interfaces import IWriteBatch

Change = tuple[str, bytes, "bytes | None"]


@implementer(IWriteBatch)
class WriteBatch:
    """
    An ordered list of changes for L{IKeyValueDatabase.write}.

    Values are not checked here (that would cost on every change); the
    backend refuses a bad one at write time, atomically.

    @ivar ops: the changes, as C{(tree, key, value)}; C{value} is C{None}
        for a delete.
    """

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[Change] = []

    def put(self, tree: str, key: bytes, value: bytes) -> None:
        """Set C{key} to C{value} in the tree named C{tree}."""
        if value is None:
            # None means "delete" in L{ops}; never let it in by accident.
            raise TypeError("WriteBatch.put: value must be bytes, not None")
        self.ops.append((tree, key, value))

    def delete(self, tree: str, key: bytes) -> None:
        """Remove C{key} from the tree named C{tree} (no error if absent)."""
        self.ops.append((tree, key, None))

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self) -> Iterator[Change]:
        return iter(self.ops)

    def __repr__(self) -> str:
        return f"<WriteBatch of {len(self.ops)} changes>"
