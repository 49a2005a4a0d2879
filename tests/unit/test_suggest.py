from __future__ import annotations

from sidecar.core.catalog import lookup
from sidecar.core.suggest import close_ids, same_tier


def test_close_ids_catch_typos_and_missing_pieces() -> None:
    known = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3", "o4-mini"]
    assert close_ids("gpt-4o-mni", known)[0] == "gpt-4o-mini"
    assert "gpt-4.1" in close_ids("gpt-4-1", known)
    assert close_ids("llama-70b", known) == []


def test_same_tier_prefers_capabilities_then_price() -> None:
    mini, haiku, opus, flash = (
        lookup("openai", "gpt-4o-mini"),
        lookup("anthropic", "claude-3-5-haiku"),
        lookup("anthropic", "claude-opus-4-1"),
        lookup("gemini", "gemini-2.0-flash"),
    )
    assert mini and haiku and opus and flash
    assert same_tier(mini, [opus, haiku, flash]) == flash  # nearest price, same capabilities
    assert same_tier(opus, [haiku, flash]) == haiku
    assert same_tier(None, [haiku, flash]) == haiku
    assert same_tier(mini, []) is None
