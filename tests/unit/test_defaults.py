from __future__ import annotations

import pytest

from sidecar.core import defaults
from sidecar.errors import SidecarError
from sidecar.wire.chat import CompleteParams, Message

PROVIDERS = {"openai": 1, "ollama": 1, "mylab": 1}


def params(**kw: object) -> CompleteParams:
    return CompleteParams(messages=[Message(role="user", content="hi")], **kw)  # type: ignore[arg-type]


def test_provider_alone_is_recognised_only_without_a_model() -> None:
    assert defaults.provider_alone("openai:", PROVIDERS) == "openai"
    assert defaults.provider_alone(" openai ", PROVIDERS) == "openai"
    assert defaults.provider_alone("openai:gpt-4o", PROVIDERS) is None
    assert defaults.provider_alone("gpt-4o", PROVIDERS) is None
    assert defaults.provider_alone("nope:", PROVIDERS) is None


def test_default_model_for_prefers_the_configured_one() -> None:
    assert defaults.default_model_for("openai", "gpt-4.1") == "openai:gpt-4.1"
    assert defaults.default_model_for("openrouter", None) == "openrouter:openai/gpt-4o"
    with pytest.raises(SidecarError) as err:
        defaults.default_model_for("ollama", None)
    assert err.value.kind == "invalid_request" and err.value.field == "model"


def test_apply_fills_only_missing_fields() -> None:
    filled = defaults.apply(params(), model="openai:gpt-4o", temperature=0.3, max_tokens=9)
    assert (filled.model, filled.temperature, filled.max_tokens) == ("openai:gpt-4o", 0.3, 9)
    kept = defaults.apply(
        params(model="x:y", temperature=0.0, max_tokens=1), model="a:b", temperature=1.0, max_tokens=2
    )
    assert (kept.model, kept.temperature, kept.max_tokens) == ("x:y", 0.0, 1)
    with pytest.raises(SidecarError):
        defaults.apply(params(), model=None, temperature=None, max_tokens=None)
