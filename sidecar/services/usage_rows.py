"""What the ledger keeps of one finished request: its row (`row_for`), and an audit row per failed
try that was followed by another (`notes_for`: `fallback` to another model, `retry` of the same).

Must not know: how rows are queued or committed, budgets, stdin/stdout.
"""

from __future__ import annotations

import itertools
import json

from sidecar.infra.ledger import AuditNote, Row
from sidecar.services.outcome import Outcome


def row_for(outcome: Outcome, ts: float, client: str | None) -> Row:
    """The ledger row of `outcome`, finished at `ts` (Unix seconds), for gateway client `client`."""
    usage = outcome.usage
    if usage is None:
        inp = out = cache_read = cache_write = reasoning = None
    else:
        inp, out = usage.input_tokens, usage.output_tokens
        cache_read, cache_write = usage.cache_read_tokens, usage.cache_write_tokens
        reasoning = usage.reasoning_tokens
    return Row(
        ts,
        outcome.method,
        outcome.provider,
        outcome.model,
        outcome.status,
        round(outcome.latency_ms, 3),
        outcome.error_kind,
        inp,
        out,
        cache_read,
        cache_write,
        reasoning,
        outcome.usage_estimated,
        outcome.cost_usd,
        outcome.pricing_date,
        len(outcome.attempts) or 1,
        outcome.run_id,
        outcome.tag,
        client,
        outcome.reason,
        outcome.cache_hit,
        outcome.saved_usd,
        outcome.router,
    )


def notes_for(outcome: Outcome, ts: float) -> list[AuditNote]:
    """An audit row per failed try followed by another: "fallback" when the next try is another
    model, "retry" when it is the same one again."""
    notes = []
    for failed, following in itertools.pairwise(outcome.attempts):
        if failed.ok:
            continue
        source, target = f"{failed.provider}:{failed.model}", f"{following.provider}:{following.model}"
        detail = {"from": source, "to": target, "error": failed.error}
        event = "retry" if source == target else "fallback"
        notes.append(AuditNote(ts, event, failed.provider, failed.error or "error", json.dumps(detail)))
    return notes
