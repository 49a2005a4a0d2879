"""Deterministic embeddings shared by the provider fakes: the same text gives the same vector from
every provider (8 dimensions by default, unit length), and the same token count (words + 1)."""

from __future__ import annotations

import base64
import hashlib
import math
import struct

DIMENSIONS = 8


def vector(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


def tokens(text: str) -> int:
    return len(text.split()) + 1


def as_base64(values: list[float]) -> str:
    """OpenAI's `encoding_format: "base64"`: little-endian float32 values."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
