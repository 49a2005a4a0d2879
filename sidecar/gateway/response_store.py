"""The Responses API's stored responses (`store`, on by default): what `previous_response_id`
continues from and `GET`/`DELETE /v1/responses/{id}` read and remove.

Each entry holds the conversation up to and including that response, as the sidecar's messages
(what the next request puts before its own input), and the response object as it was answered.
Kept in memory only, never on disk (they hold prompts and answers): they go when the gateway
stops, and the least recently used go first past `MAX_ENTRIES` or `MAX_BYTES`, or once older than
`TTL_S` (one larger than `MAX_BYTES` alone is not kept). An entry belongs to the client key that
made it (by the key's id, which survives a rename or a rotation); another key is told it does not
exist.

Must not know: HTTP, the Responses API's shapes, how a request is run.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any, Final

MAX_ENTRIES: Final = 1_000
MAX_BYTES: Final = 64 * 1024 * 1024
TTL_S: Final = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Stored:
    owner: str
    conversation: list[dict[str, Any]]
    response: bytes  # the response object's JSON
    size: int  # what counts against MAX_BYTES
    at: float


class ResponseStore:
    def __init__(
        self, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES, ttl_s: float = TTL_S
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._entries: collections.OrderedDict[str, Stored] = collections.OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(
        self, response_id: str, owner: str, conversation: list[dict[str, Any]], response: bytes, size: int
    ) -> None:
        """Keep a response; `size` is the conversation's encoded size (the response's is added)."""
        self.delete(response_id, owner)
        entry = Stored(owner, conversation, response, size + len(response), time.monotonic())
        if entry.size > self.max_bytes:  # kept, it would push out everything else
            return
        self._entries[response_id] = entry
        self._bytes += entry.size
        while self._entries and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
            self._drop(next(iter(self._entries)))

    def get(self, response_id: str, owner: str) -> Stored | None:
        """The entry, if it exists, is `owner`'s and is not too old."""
        entry = self._entries.get(response_id)
        if entry is None or entry.owner != owner:
            return None
        if time.monotonic() - entry.at > self.ttl_s:
            self._drop(response_id)
            return None
        self._entries.move_to_end(response_id)
        return entry

    def delete(self, response_id: str, owner: str) -> bool:
        entry = self._entries.get(response_id)
        if entry is None or entry.owner != owner:
            return False
        self._drop(response_id)
        return True

    def _drop(self, response_id: str) -> None:
        entry = self._entries.pop(response_id)
        self._bytes -= entry.size
