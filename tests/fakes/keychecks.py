"""Minimal fakes of the key-check routes of Gemini and Ollama, for the key validation tests.

What it is for: until full Gemini and Ollama fakes exist, the validation tests need only one route
of each, answered with the real bodies (Gemini's `models.list`, Ollama's `/api/version`):

* ``FakeGeminiModels``: ``GET /v1beta/models`` with the key in ``x-goog-api-key`` (or ``?key=``).
  A wrong key is **HTTP 400** ``INVALID_ARGUMENT`` with ``ErrorInfo.reason = API_KEY_INVALID``; no
  key is 403 ``PERMISSION_DENIED``; ``rate_limited`` makes it answer the recorded 429
  ``RESOURCE_EXHAUSTED`` body (``tests/fixtures/gemini-429-error.json``) instead.
* ``FakeOllamaVersion``: ``GET /api/version`` → ``{"version": "..."}``; Ollama has no keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.fakes.http import FakeUpstream, RecordedRequest, Reply, json_reply

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"
GEMINI_VALID_KEY = "AIzaSyFakeValidKey0123456789abcdefghi"

GEMINI_BAD_KEY_BODY: dict[str, Any] = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": "API key not valid. Please pass a valid API key.",
            },
        ],
    }
}

GEMINI_NO_KEY_BODY: dict[str, Any] = {
    "error": {
        "code": 403,
        "message": "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
        "status": "PERMISSION_DENIED",
    }
}

GEMINI_MODEL: dict[str, Any] = {
    "name": "models/gemini-2.5-flash",
    "version": "001",
    "displayName": "Gemini 2.5 Flash",
    "description": "Stable version of Gemini 2.5 Flash.",
    "inputTokenLimit": 1048576,
    "outputTokenLimit": 65536,
    "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent"],
    "temperature": 1,
    "topP": 0.95,
    "topK": 64,
    "maxTemperature": 2,
    "thinking": True,
}


class FakeGeminiModels(FakeUpstream):
    def __init__(self, valid_keys: Iterable[str] = (GEMINI_VALID_KEY,)) -> None:
        super().__init__()
        self.valid_keys = set(valid_keys)
        self.rate_limited = False
        self.route("GET", "/v1beta/models", self._models)

    def _models(self, req: RecordedRequest) -> Reply:
        key = req.headers.get("x-goog-api-key") or req.query.get("key")
        if not key:
            return json_reply(403, GEMINI_NO_KEY_BODY)
        if key not in self.valid_keys:
            return json_reply(400, GEMINI_BAD_KEY_BODY)
        if self.rate_limited:
            body = json.loads((FIXTURES_DIR / "gemini-429-error.json").read_text())
            return json_reply(429, body)
        return json_reply(
            200, {"models": [GEMINI_MODEL], "nextPageToken": "Ch9tb2RlbHMvZ2VtaW5pLTIuNS1mbGFzaA=="}
        )


class FakeOllamaVersion(FakeUpstream):
    def __init__(self, version: str = "0.12.6") -> None:
        super().__init__()
        self.version = version
        self.route("GET", "/api/version", lambda req: json_reply(200, {"version": self.version}))
