"""Ways on from an error, as pure choices: model ids close to one a provider did not know, and an
alternative model of about the same price on another provider.

Must not know: I/O, which providers have keys (the caller passes the candidates).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence

from sidecar.core.catalog import ModelInfo


def close_ids(wanted: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to `n` known ids that look like `wanted` (a typo, a missing date suffix, a dot for a dash)."""
    pool = sorted(set(known))
    found = difflib.get_close_matches(wanted, pool, n=n, cutoff=0.6)
    if not found:
        loose = wanted.replace(".", "-").lower()
        found = [k for k in pool if k.startswith(loose) or loose.startswith(k)][:n]
    return found


def same_tier(original: ModelInfo | None, candidates: Sequence[ModelInfo]) -> ModelInfo | None:
    """The candidate whose price is nearest the original's (by ratio of input + output price),
    preferring one with the same capabilities; without an original price, the first candidate."""
    if not candidates:
        return None
    if original is None:
        return candidates[0]

    def price(info: ModelInfo) -> float:
        return max(info.input_per_mtok + info.output_per_mtok, 1e-6)

    target = price(original)

    def distance(info: ModelInfo) -> tuple[int, float]:
        missing = len(original.capabilities - info.capabilities)
        return (missing, abs(math.log(price(info) / target)))

    return min(candidates, key=distance)
