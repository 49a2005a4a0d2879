"""The models a client key may use, in the shape each SDK's model routes parse: OpenAI's
`{object: "list", data: [Model]}` and one `Model`, Anthropic's page of `ModelInfo` and one
`ModelInfo` (display name, context window and output limit from the catalog).

Pure: no I/O.

Must not know: HTTP, how the list is made, providers' wire formats.
"""

from __future__ import annotations

from typing import Any

from sidecar.gateway.openai_types import Model, ModelList
from sidecar.wire.catalog import ModelEntry


def openai_list(entries: list[ModelEntry]) -> ModelList:
    return ModelList(data=[Model(id=e.model) for e in entries])


def openai_model(entry: ModelEntry) -> Model:
    return Model(id=entry.model)


def anthropic_model(entry: ModelEntry) -> dict[str, Any]:
    """A model in Anthropic's `ModelInfo` shape (the catalog knows no release date: the epoch)."""
    info: dict[str, Any] = {
        "type": "model",
        "id": entry.model,
        "display_name": entry.display_name or entry.model,
        "created_at": "1970-01-01T00:00:00Z",
    }
    if entry.context_window:
        info["max_input_tokens"] = entry.context_window
    if entry.max_output_tokens:
        info["max_tokens"] = entry.max_output_tokens
    return info


def anthropic_list(entries: list[ModelEntry]) -> dict[str, Any]:
    """Anthropic's model page: every model in one page."""
    return {
        "data": [anthropic_model(e) for e in entries],
        "has_more": False,
        "first_id": entries[0].model if entries else None,
        "last_id": entries[-1].model if entries else None,
    }
