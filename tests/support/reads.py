"""Network reads for property tests: pieces of a stream, mostly one a read, some merged, some cut.

A read that is exactly one piece is what the transport's and the SSE decoder's shortcuts look
for; merged and cut reads are what they must leave to the general path.
"""

from __future__ import annotations

from typing import Callable

MERGE, CUT = 3, 2  # the values of `merges` that join a piece to the next / cut it in two


def as_reads(pieces: list[bytes], merges: list[int], cut_at: Callable[[int], int]) -> list[bytes]:
    """`pieces` as reads, by `merges` (one value a read, 0 or 1 when it runs out: keep the piece
    whole); `cut_at(n)` picks where a read of n bytes is cut, 1 to n - 1."""
    reads, i = [], 0
    for merge in merges + [0] * len(pieces):
        if i >= len(pieces):
            break
        read = b"".join(pieces[i:i + 1 + (merge == MERGE)])
        i += 1 + (merge == MERGE)
        if merge == CUT and len(read) > 1:
            cut = cut_at(len(read))
            reads += [read[:cut], read[cut:]]
        else:
            reads.append(read)
    return reads
