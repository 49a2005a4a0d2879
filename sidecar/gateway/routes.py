"""The `/v1` routes: each reads its request in its API's shape (OpenAI's Chat Completions, legacy
Completions, Responses, Embeddings and Models; Anthropic's Messages and token count), admits it,
calls the same handler the stdio face calls (`complete`, `stream`, `embed`, `count_tokens`,
`list_models`, `router_list`) and answers in the shape that API's official SDK parses. `TABLE`
lists them with their dialect (the error shape). The Responses API's stored responses are the
gateway's own (`response_store`).

Must not know: HTTP framing (`exchange` does it), providers' wire formats.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, Protocol, TypeVar

import msgspec

from sidecar.core.client_access import allowed
from sidecar.errors import field_path
from sidecar.gateway import (
    anthropic_api,
    model_lists,
    openai_api,
    openai_stream,
    openai_types,
    responses_api,
    responses_items,
    responses_stream,
    responses_types,
)
from sidecar.gateway.errors import Dialect, HttpError, InvalidRequest
from sidecar.gateway.exchange import Call, Exchange, complete_params
from sidecar.gateway.response_store import Stored
from sidecar.services.client_keys import ClientKeyRecord
from sidecar.wire.base import Empty
from sidecar.wire.catalog import ListModelsParams, ListModelsResult, ModelEntry
from sidecar.wire.chat import ChatResult, CompleteParams, CountTokensResult
from sidecar.wire.embed import EmbedParams, EmbedResult
from sidecar.wire.routers import RouterListResult

_PROMETHEUS: Final = b"text/plain; version=0.0.4; charset=utf-8"
_json = msgspec.json.Encoder()
_Request = TypeVar("_Request", bound="_OpenAIGeneration")


async def _models(ex: Exchange) -> list[ModelEntry]:
    """The models and routers the calling key may use (a router as an entry of its own name)."""
    key = await ex.authenticate()
    handlers = ex.gw.backend.handlers
    result = await handlers["list_models"](ListModelsParams(), Call(ex.id, None))
    assert isinstance(result, ListModelsResult)
    entries = [m for m in result.models if allowed(key.allow, m.model)]
    routers = await handlers["router_list"](Empty(), Call(ex.id, None))
    assert isinstance(routers, RouterListResult)
    for r in routers.routers:
        name = f"router:{r.name}"
        if allowed(key.allow, name):
            entries.append(
                ModelEntry(model=name, provider="router", id=r.name, display_name=f"Router {r.name}")
            )
    return entries


def _speaks_anthropic(ex: Exchange) -> bool:
    """An Anthropic client: its SDK sends `anthropic-version` with every request; OpenAI's never."""
    return any(name == b"anthropic-version" for name, _ in ex.scope["headers"])


async def models(ex: Exchange) -> None:
    anthropic = _speaks_anthropic(ex)
    if anthropic:
        ex.dialect = "anthropic"  # its errors too
    entries = await _models(ex)
    if anthropic:
        await ex.send_json(200, model_lists.anthropic_list(entries))
    else:
        await ex.send_json(200, model_lists.openai_list(entries))


async def model(ex: Exchange) -> None:
    """One model of the list (the SDKs' `models.retrieve`); 404 for one the key may not use."""
    anthropic = _speaks_anthropic(ex)
    if anthropic:
        ex.dialect = "anthropic"  # its errors too
    wanted = ex.scope["path_params"]["model"]
    entry = next((e for e in await _models(ex) if e.model == wanted), None)
    if entry is None:
        raise HttpError(
            404, "model_not_found", f"The model '{wanted}' does not exist or this key may not use it."
        )
    if anthropic:
        await ex.send_json(200, model_lists.anthropic_model(entry))
    else:
        await ex.send_json(200, model_lists.openai_model(entry))


async def metrics(ex: Exchange) -> None:
    await ex.authenticate()
    await ex.send_bytes(200, ex.gw.backend.prometheus().encode(), _PROMETHEUS)


@contextlib.contextmanager
def _refused_as_400() -> Iterator[None]:
    """What a route's translation cannot translate is a 400 naming the field."""
    try:
        yield
    except InvalidRequest as exc:
        raise HttpError(400, "invalid_request", str(exc), param=exc.param) from None


class _OpenAIGeneration(Protocol):
    """What the chat and the legacy completions request share."""

    model: str
    stream: bool
    stream_options: openai_types.StreamOptions | None


async def _generate(
    ex: Exchange,
    request_type: type[_Request],
    to_params: Callable[[_Request, str], dict[str, Any]],
    respond: Callable[[ChatResult], msgspec.Struct],
    *,
    legacy: bool,
) -> None:
    """A chat or a legacy completion: the same `complete`/`stream` call, each in its own shape."""
    raw = await ex.body()
    key = await ex.authenticate()
    req = ex.decode(raw, request_type)
    model = await ex.admit(key, req.model)
    with _refused_as_400():
        params = complete_params(to_params(req, model))
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        encoder = openai_stream.ChunkEncoder(req.model, include_usage=include_usage, legacy=legacy)
        await ex.relay(params, encoder.event, encoder.finish, encoder.error)
        return
    await ex.send_json(200, respond(await ex.call(params)))


async def chat(ex: Exchange) -> None:
    await _generate(
        ex,
        openai_types.ChatCompletionRequest,
        openai_api.to_params,
        lambda result: openai_api.response(result, response_id=openai_api.new_id(), created=int(time.time())),
        legacy=False,
    )


async def completions(ex: Exchange) -> None:
    await _generate(
        ex,
        openai_types.CompletionRequest,
        openai_api.completion_to_params,
        lambda result: openai_api.text_response(
            result, response_id=openai_api.new_id("cmpl-"), created=int(time.time())
        ),
        legacy=True,
    )


def _continued(
    ex: Exchange, req: responses_types.ResponsesRequest, key: ClientKeyRecord
) -> list[dict[str, Any]]:
    """The conversation of the stored response the request continues, then the request's own."""
    before: list[dict[str, Any]] | None = None
    if req.previous_response_id is not None:
        previous = ex.gw.responses.get(req.previous_response_id, key.id)
        if previous is None:
            missing = _not_found(req.previous_response_id, "Previous ")
            raise HttpError(404, "previous_response_not_found", missing, param="previous_response_id")
        before = previous.conversation
    with _refused_as_400():
        return responses_api.conversation(req, before)


async def responses(ex: Exchange) -> None:
    raw = await ex.body()
    key = await ex.authenticate()
    req = ex.decode(raw, responses_types.ResponsesRequest)
    model = await ex.admit(key, req.model)
    store = ex.gw.responses
    turns = _continued(ex, req, key)
    with _refused_as_400():
        params = complete_params(responses_api.to_params(req, model, turns))
    answer: responses_types.Response | None
    if req.stream:
        encoder = responses_stream.ResponseEncoder(req)
        await ex.relay(params, encoder.event, encoder.finish, encoder.error)
        answer = encoder.final
    else:
        result = await ex.call(params)
        answer = responses_api.response(
            req, result, response_id=openai_api.new_id("resp_"), created_at=int(time.time())
        )
        await ex.send_json(200, answer)
    if answer is not None and answer.store and ex.result is not None:
        kept = [*turns, responses_api.assistant_message(ex.result)]
        encoded = _json.encode(answer)
        store.put(answer.id, key.id, kept, encoded, len(raw) + len(encoded))


async def response_input_tokens(ex: Exchange) -> None:
    """OpenAI's count of a Responses request's input tokens (`responses.input_tokens.count`)."""
    raw = await ex.body()
    key = await ex.authenticate()
    req = ex.decode(raw, responses_types.ResponsesRequest)
    model = await ex.place(key, req.model)
    turns = _continued(ex, req, key)
    with _refused_as_400():
        params = complete_params(responses_api.to_params(req, model, turns))
    counted = await _count(ex, params)
    await ex.send_json(200, {"object": "response.input_tokens", "input_tokens": counted})


async def _count(ex: Exchange, params: CompleteParams) -> int:
    result = await ex.run_method("count_tokens", params)
    assert isinstance(result, CountTokensResult)
    return result.input_tokens


def _not_found(response_id: str, what: str = "") -> str:
    return f"{what}Response with id '{response_id}' not found (the gateway keeps responses in memory)."


async def _stored(ex: Exchange) -> tuple[str, Stored]:
    """The stored response the path names, when it is the calling key's (a 404 otherwise)."""
    key = await ex.authenticate()
    response_id = ex.scope["path_params"]["response_id"]
    kept = ex.gw.responses.get(response_id, key.id)
    if kept is None:
        raise HttpError(404, "not_found", _not_found(response_id))
    return response_id, kept


async def response_get(ex: Exchange) -> None:
    _, kept = await _stored(ex)
    await ex.send_bytes(200, kept.response, b"application/json")


async def response_input_items(ex: Exchange) -> None:
    """The items that went into a stored response (`responses.input_items.list`), a page at a time."""
    response_id, kept = await _stored(ex)
    query = urllib.parse.parse_qs(ex.scope.get("query_string", b"").decode("latin-1"))
    items = responses_items.input_items(response_id, kept.conversation[:-1])  # its own answer last
    with _refused_as_400():
        listed = responses_items.page(items, query)
    await ex.send_json(200, listed)


async def response_delete(ex: Exchange) -> None:
    key = await ex.authenticate()
    response_id = ex.scope["path_params"]["response_id"]
    if not ex.gw.responses.delete(response_id, key.id):
        raise HttpError(404, "not_found", _not_found(response_id))
    await ex.send_json(200, {"id": response_id, "object": "response", "deleted": True})


async def embeddings(ex: Exchange) -> None:
    raw = await ex.body()
    key = await ex.authenticate()
    req = ex.decode(raw, openai_types.EmbeddingRequest)
    model = await ex.admit(key, req.model)
    if model.startswith("router:"):
        raise HttpError(
            400, "invalid_request", "Routers choose chat models; name an embeddings model.", param="model"
        )
    try:
        params = msgspec.convert(openai_api.embed_params(req, model), EmbedParams)
    except msgspec.ValidationError as exc:
        raise HttpError(
            400, "invalid_request", f"Invalid request: {exc}", param=field_path(str(exc))
        ) from None
    result = await ex.run_method("embed", params)
    assert isinstance(result, EmbedResult)
    ex.usage = (result.provider, result.model, result.usage.input_tokens, 0, result.cost_usd)
    listed = openai_api.embedding_list(
        result.embeddings,
        f"{result.provider}:{result.model}",
        result.usage.input_tokens,
        base64=req.encoding_format == "base64",
    )
    await ex.send_json(200, listed)


async def messages(ex: Exchange) -> None:
    raw = await ex.body()
    key = await ex.authenticate()
    req = ex.decode(raw, anthropic_api.MessagesRequest)
    model = await ex.admit(key, req.model)
    with _refused_as_400():
        params = complete_params(anthropic_api.to_params(req, model))
    if req.stream:
        encoder = anthropic_api.EventEncoder(req.model, sign_thinking=anthropic_api.signs_thinking(model))
        await ex.relay(params, encoder.event, encoder.finish, encoder.error)
        return
    result = await ex.call(params)
    await ex.send_json(200, anthropic_api.response(result, response_id=anthropic_api.new_id()))


async def count_tokens(ex: Exchange) -> None:
    """Anthropic's token count, for any model (`count_tokens`: exact where the provider counts)."""
    raw = await ex.body()
    key = await ex.authenticate()
    req = ex.decode(raw, anthropic_api.CountTokensRequest)
    model = await ex.place(key, req.model)
    with _refused_as_400():
        params = complete_params(anthropic_api.count_params(req, model))
    await ex.send_json(200, {"input_tokens": await _count(ex, params)})


Route = Callable[[Exchange], Awaitable[None]]

TABLE: Final[dict[tuple[str, str], tuple[Route, Dialect]]] = {
    ("GET", "/v1/models"): (models, "openai"),
    ("GET", "/v1/models/{model:path}"): (model, "openai"),
    ("GET", "/metrics"): (metrics, "openai"),
    ("POST", "/v1/chat/completions"): (chat, "openai"),
    ("POST", "/v1/completions"): (completions, "openai"),
    ("POST", "/v1/responses"): (responses, "openai"),
    ("POST", "/v1/responses/input_tokens"): (response_input_tokens, "openai"),
    ("GET", "/v1/responses/{response_id}"): (response_get, "openai"),
    ("DELETE", "/v1/responses/{response_id}"): (response_delete, "openai"),
    ("GET", "/v1/responses/{response_id}/input_items"): (response_input_items, "openai"),
    ("POST", "/v1/embeddings"): (embeddings, "openai"),
    ("POST", "/v1/messages"): (messages, "anthropic"),
    ("POST", "/v1/messages/count_tokens"): (count_tokens, "anthropic"),
}
"""(method, path) → the route and its error dialect. A path with a `{parameter}` is reached
through Starlette's router, which puts it in `scope["path_params"]`."""
