"""`GET /openapi.json`: an OpenAPI 3.1 document of the gateway's routes, generated from the same
Structs the routes decode and encode with.

Must not know: HTTP serving, providers.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from sidecar import __version__
from sidecar.gateway import anthropic_api, openai_types, responses_types

_REF = "#/components/schemas/{name}"


def _json(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": _REF.format(name=name)}}}}


def _sse(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/event-stream": {"schema": {"type": "string"}}}}


@cache
def document() -> dict[str, Any]:
    types: list[Any] = [
        openai_types.ChatCompletionRequest,
        openai_types.ChatCompletion,
        openai_types.CompletionRequest,
        openai_types.TextCompletion,
        responses_types.ResponsesRequest,
        responses_types.Response,
        openai_types.ModelList,
        openai_types.EmbeddingRequest,
        openai_types.EmbeddingList,
        anthropic_api.MessagesRequest,
        anthropic_api.ResponseMessage,
    ]
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    errors = {
        status: {"description": what}
        for status, what in (
            ("400", "Malformed JSON or an invalid request"),
            ("401", "Missing or invalid client key"),
            ("403", "The client key may not use this model"),
            ("404", "Unknown model"),
            ("413", "Request body over the size limit"),
            ("429", "A limit or budget stops the request (see Retry-After)"),
            ("502", "The upstream provider failed"),
            ("503", "The upstream provider cannot be reached, or has no key"),
            ("504", "The upstream provider timed out"),
        )
    }

    def post(request: str, response: str, summary: str) -> dict[str, Any]:
        ok = {"description": "The answer (SSE when `stream` is true)", **_json(response)}
        ok["content"].update(_sse("")["content"])
        return {
            "post": {"summary": summary, "requestBody": _json(request), "responses": {"200": ok, **errors}}
        }

    return {
        "openapi": "3.1.0",
        "info": {"title": "llm-sidecar gateway", "version": __version__},
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            "/v1/chat/completions": post(
                "ChatCompletionRequest", "ChatCompletion", "OpenAI Chat Completions"
            ),
            "/v1/completions": post("CompletionRequest", "TextCompletion", "OpenAI legacy Completions"),
            "/v1/responses": post("ResponsesRequest", "Response", "OpenAI Responses"),
            "/v1/responses/input_tokens": {
                "post": {
                    "summary": "Count a Responses request's input tokens",
                    "requestBody": _json("ResponsesRequest"),
                    "responses": {
                        "200": {"description": "{object: response.input_tokens, input_tokens}"},
                        **errors,
                    },
                }
            },
            "/v1/responses/{response_id}": {
                "parameters": [
                    {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "get": {
                    "summary": "A stored response",
                    "responses": {
                        "200": {"description": "ok", **_json("Response")},
                        "404": {"description": "No such response for this key"},
                    },
                },
                "delete": {
                    "summary": "Delete a stored response",
                    "responses": {
                        "200": {"description": "deleted"},
                        "404": {"description": "No such response for this key"},
                    },
                },
            },
            "/v1/responses/{response_id}/input_items": {
                "parameters": [
                    {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                ],
                "get": {
                    "summary": "The input items of a stored response, a page at a time",
                    "responses": {
                        "200": {"description": "{object: list, data, first_id, last_id, has_more}"},
                        "404": {"description": "No such response for this key"},
                    },
                },
            },
            "/v1/messages": post("MessagesRequest", "ResponseMessage", "Anthropic Messages"),
            "/v1/embeddings": post("EmbeddingRequest", "EmbeddingList", "OpenAI Embeddings"),
            "/v1/models": {
                "get": {
                    "summary": "Models the client key may use",
                    "responses": {"200": {"description": "ok", **_json("ModelList")}},
                }
            },
            "/v1/models/{model}": {
                "get": {
                    "summary": "One model the client key may use",
                    "parameters": [
                        {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {"description": "ok", **_json("Model")},
                        "404": {"description": "Unknown or not this key's"},
                    },
                }
            },
            "/health": {
                "get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "ok"}}}
            },
        },
    }
