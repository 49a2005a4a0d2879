"""OpenRouter login by OAuth PKCE: `openrouter_auth_start`, `openrouter_auth_complete`, and the
loopback listener that finishes a login by itself.

`openrouter_auth_start` makes a verifier, its S256 challenge and a state (`core.pkce`) and answers
with the URL to open: `OPENROUTER_AUTH_URL?callback_url=...&code_challenge=...&code_challenge_method=S256`.
OpenRouter sends the browser back to `callback_url` with only `?code=...` added, so the state is
put into the callback URL's own query beforehand. Then either

- the host passed its own `callback_url` (a deep link such as `myapp://openrouter`): it receives
  `myapp://openrouter?state=S&code=C` and calls `openrouter_auth_complete {code, state}`; or
- the host passed none: the sidecar listens on a free 127.0.0.1 port
  (`http://127.0.0.1:PORT/callback?state=S`), takes the browser's redirect, makes the exchange,
  answers the browser with a small page, and tells the host with the notification
  `openrouter_auth/completed {state, ok, masked?, error?}`. One listener serves every pending
  login (the state in the callback says which), so a thousand starts hold one socket, not a
  thousand; it only answers `GET /callback` (bounded request size and time) and closes once no
  login is pending.

The exchange posts `{code, code_verifier, code_challenge_method: "S256"}` to
`{OPENROUTER_BASE_URL}/auth/keys`; the key it returns goes to the keychain (account "openrouter").
A login expires after 10 minutes (`SIDECAR_OAUTH_TTL_S` overrides it, for tests); an unknown or
mismatched state, a reused code, an expired or already-finished login are `oauth_failed`. The
verifier never leaves the process: it is not logged, returned or stored. The sidecar never opens a
browser itself: the host opens `auth_url`.

Must not know: stdin/stdout (notifications go through the `notify` callback the app wires).
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import anyio.abc
import msgspec

from sidecar import logs, redact
from sidecar.core import pkce
from sidecar.errors import ErrorKind, ProviderError, SidecarError
from sidecar.infra.audit import Audit
from sidecar.infra.keystore import KeyStore
from sidecar.providers.http import HttpClient, Timeouts
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext, Handler
from sidecar.services.keys import with_provider
from sidecar.wire.keys import (
    AuthCompletedParams,
    AuthCompleteParams,
    AuthCompleteResult,
    AuthStartParams,
    AuthStartResult,
)

PROVIDER: Final = "openrouter"
ACCOUNT: Final = "openrouter"
DEFAULT_AUTH_URL: Final = "https://openrouter.ai/auth"
COMPLETED: Final = "openrouter_auth/completed"
TTL_ENV: Final = "SIDECAR_OAUTH_TTL_S"

MAX_REQUEST_HEAD: Final = 8 * 1024
READ_TIMEOUT_S: Final = 10.0
EXCHANGE_GRACE_S: Final = 30.0
_EXCHANGE_TIMEOUTS: Final = Timeouts(connect_s=5.0, read_s=15.0, write_s=5.0, pool_s=5.0)

Notify = Callable[[str, Any], None]
_log = logs.get_logger("oauth")


def ttl_from_env(env: Mapping[str, str]) -> float:
    raw = env.get(TTL_ENV, "").strip()
    if not raw:
        return pkce.DEFAULT_TTL_S
    try:
        value = float(raw)
    except ValueError:
        return pkce.DEFAULT_TTL_S
    return value if value > 0 else pkce.DEFAULT_TTL_S


def _iso(ts: float) -> str:
    return (
        datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def with_query(url: str, **params: str) -> str:
    """`url` with `params` added to its query (existing parameters are kept)."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _oauth_failed(message: str, *, reason: str | None = None) -> SidecarError:
    return SidecarError(
        "oauth_failed", message, provider=PROVIDER, details={"reason": reason} if reason else None
    )


def _check_callback_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if not parts.scheme or any(c.isspace() for c in url) or parts.scheme.lower() in ("javascript", "data"):
        raise SidecarError(
            "invalid_request",
            "callback_url must be an absolute URL the browser can be sent back to, such as "
            "myapp://openrouter or http://localhost:3000/callback; or leave it out and the sidecar "
            "listens on 127.0.0.1 for the redirect itself.",
            field="callback_url",
        )
    return url


class OAuthService:
    def __init__(
        self,
        providers: ProviderRegistry,
        http: HttpClient,
        store: KeyStore,
        audit: Audit,
        *,
        notify: Notify,
        auth_url: str = DEFAULT_AUTH_URL,
        ttl_s: float = pkce.DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.providers = providers
        self.http = http
        self.store = store
        self.audit = audit
        self.notify = notify
        self.auth_url = auth_url
        self._clock = clock
        self.logins = pkce.PendingLogins(clock, random_bytes, ttl_s)
        self._listeners: dict[str, anyio.Event] = {}  # a pending listening login's stop, by state
        self._waiting: dict[str, pkce.PendingLogin] = {}  # the logins the listener serves, by state
        self._port: int | None = None  # the shared listener's port while it is open
        self._closing: anyio.Event | None = None  # set to close the shared listener
        self._opening = anyio.Lock()
        self._tg: anyio.abc.TaskGroup | None = None

    def handlers(self) -> dict[str, Handler]:
        return {"openrouter_auth_start": self.start, "openrouter_auth_complete": self.complete}

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the loopback listeners; runs until cancelled (the app runs it for the process's life)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    # -- methods -----------------------------------------------------------------------------------

    async def start(self, params: AuthStartParams, ctx: CallContext) -> AuthStartResult:
        # Fail now, not after the user has logged in, when the key could not be kept.
        try:
            await self.store.get(ACCOUNT)
        except SidecarError as exc:
            raise with_provider(exc, PROVIDER) from None
        if params.callback_url:
            base = _check_callback_url(params.callback_url)
            login = self.logins.start(lambda state: with_query(base, state=state))
        else:
            login = await self._start_listening()
        redact.remember(login.verifier)  # a second net: masked even if it ever reached a log line
        auth_url = with_query(
            self.auth_url,
            callback_url=login.callback_url,
            code_challenge=login.challenge,
            code_challenge_method="S256",
        )
        _log.info("openrouter login started", listening=login.listening)
        return AuthStartResult(
            auth_url=auth_url,
            state=login.state,
            callback_url=login.callback_url,
            expires_at=_iso(login.expires_at),
            listening=login.listening,
        )

    async def complete(self, params: AuthCompleteParams, ctx: CallContext) -> AuthCompleteResult:
        try:
            state = self.logins.resolve_state(params.state)
        except pkce.LoginError as exc:
            await self.audit.record("oauth_failed", PROVIDER, "error", exc.reason)
            raise _oauth_failed(exc.message, reason=exc.reason) from None
        try:
            masked = await self.finish(state, params.code)
        finally:
            stop = self._listeners.get(state)
            if stop is not None and self.logins.peek(state) is None:
                stop.set()  # the host ended a login the listener was waiting for
        return AuthCompleteResult(provider=PROVIDER, configured=True, masked=masked)

    async def finish(self, state: str, code: str) -> str:
        """Exchange `code` for the login `state`, store the key; returns the key masked."""
        code = code.strip()
        if not code:
            raise SidecarError(
                "invalid_request", "code is empty: pass the code the callback received.", field="code"
            )
        try:
            login = self.logins.take(state, code)
        except pkce.LoginError as exc:
            await self.audit.record("oauth_failed", PROVIDER, "error", exc.reason)
            _log.info("openrouter login refused", reason=exc.reason)
            raise _oauth_failed(exc.message, reason=exc.reason) from None
        try:
            key = await self._exchange(login, code)
            try:
                await self.store.set(ACCOUNT, key)
            except SidecarError as exc:
                raise SidecarError(
                    exc.kind,
                    "OpenRouter issued a key, but it could not be stored, so the login has no effect. "
                    + exc.message,
                    provider=PROVIDER,
                ) from None
        except SidecarError as exc:
            await self.audit.record("oauth_failed", PROVIDER, "error", exc.kind)
            _log.info("openrouter login failed", kind=exc.kind)
            raise
        await self.audit.record("oauth_completed", PROVIDER, "ok", "key stored in keychain")
        _log.info("openrouter login completed")
        return redact.mask(key)

    # -- the exchange ------------------------------------------------------------------------------

    async def _exchange(self, login: pkce.PendingLogin, code: str) -> str:
        from sidecar.providers.errors import provider_error
        from sidecar.providers.http import MAX_ERROR_BODY, read_body

        spec = self.providers.spec(PROVIDER)
        body = msgspec.json.encode(
            {"code": code, "code_verifier": login.verifier, "code_challenge_method": "S256"}
        )
        headers = {**spec.extra_headers, "accept": "application/json"}
        try:
            async with self.http.open(
                PROVIDER,
                "POST",
                spec.base_url.rstrip("/") + "/auth/keys",
                headers=headers,
                json_body=body,
                timeouts=_EXCHANGE_TIMEOUTS,
                chat=False,
                check=False,
            ) as response:
                status, answer_headers = response.status_code, response.headers
                content = await read_body(PROVIDER, response)
        except ProviderError as exc:  # the connection, not the answer
            raise SidecarError(
                exc.kind, f"{exc.message} The login has to be started again.", provider=PROVIDER
            ) from None
        if status >= 300:
            kind: ErrorKind | None = "oauth_failed" if status < 500 else None
            err = provider_error(
                PROVIDER, status, content[:MAX_ERROR_BODY], answer_headers, chat=False, kind=kind
            )
            suffix = "" if err.kind == "oauth_failed" else " The login has to be started again."
            raise ProviderError(
                err.kind,
                f"The login code was not accepted: {err.message}{suffix}"
                if err.kind == "oauth_failed"
                else err.message + suffix,
                provider=PROVIDER,
                status=status,
                retry_after_s=err.retry_after_s,
            )
        try:
            data = msgspec.json.decode(content)
        except msgspec.DecodeError:
            data = None
        key = data.get("key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise _oauth_failed("OpenRouter answered the login exchange without a key. Start a new login.")
        key = key.strip()
        redact.remember(key)
        return key

    # -- the loopback listener ---------------------------------------------------------------------

    async def _start_listening(self) -> pkce.PendingLogin:
        if self._tg is None:
            raise _oauth_failed(
                "The sidecar cannot listen for the browser's redirect right now; pass a callback_url and "
                "finish with openrouter_auth_complete."
            )
        port = await self._listen()
        login = self.logins.start(
            lambda state: f"http://127.0.0.1:{port}/callback?state={state}", listening=True
        )
        stop = anyio.Event()
        self._listeners[login.state] = stop
        self._waiting[login.state] = login
        self._tg.start_soon(self._await_login, login, stop)
        return login

    @property
    def listening_port(self) -> int | None:
        """The shared loopback listener's port, None while no login waits for the browser."""
        return self._port

    async def _listen(self) -> int:
        """The shared listener's port, opening it if no login is pending."""
        async with self._opening:
            if self._port is not None:
                return self._port
            assert self._tg is not None
            try:
                listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            except OSError as exc:
                raise _oauth_failed(
                    f"Could not listen on 127.0.0.1 for the browser's redirect ({type(exc).__name__}). "
                    "Pass a callback_url and finish with openrouter_auth_complete."
                ) from None
            port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
            closing = anyio.Event()
            self._port, self._closing = port, closing
            self._tg.start_soon(self._serve, listener, port, closing)
            return port

    async def _serve(self, listener: anyio.abc.Listener[Any], port: int, closing: anyio.Event) -> None:
        try:
            async with listener, anyio.create_task_group() as tg:

                async def on_connection(stream: anyio.abc.ByteStream) -> None:
                    try:
                        await self._on_connection(port, stream)
                    except Exception:  # one bad connection must not end the listener, or the app
                        _log.exception("loopback listener connection failed")

                tg.start_soon(listener.serve, on_connection)
                await closing.wait()
                tg.cancel_scope.cancel()
        except Exception:
            _log.exception("loopback listener failed")
        finally:
            if self._port == port:
                self._port = self._closing = None

    async def _await_login(self, login: pkce.PendingLogin, stop: anyio.Event) -> None:
        """Wait for one login to finish or expire; the last one pending closes the listener."""
        try:
            with anyio.move_on_after(max(0.0, login.expires_at - self._clock())):
                await stop.wait()
            if not stop.is_set():
                if self.logins.expire(login.state) is not None:
                    await self._expired(login)
                else:
                    # The browser's redirect came just in time: let its exchange finish.
                    with anyio.move_on_after(EXCHANGE_GRACE_S):
                        await stop.wait()
        finally:
            self._listeners.pop(login.state, None)
            self._waiting.pop(login.state, None)
            if not self._waiting and self._closing is not None:
                self._closing.set()
                self._port = self._closing = None

    async def _expired(self, login: pkce.PendingLogin) -> None:
        error = _oauth_failed(
            "The OpenRouter login expired before the browser came back. Start a new login.", reason="expired"
        )
        await self.audit.record("oauth_failed", PROVIDER, "error", "expired")
        _log.info("openrouter login expired")
        self.notify(COMPLETED, AuthCompletedParams(state=login.state, ok=False, error=error.data()))

    async def _on_connection(self, port: int, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            head: bytes | None = None
            with anyio.move_on_after(READ_TIMEOUT_S):
                head = await _read_head(stream)
            if head is None:
                await _respond(stream, 408, _page("Request timeout", "The request took too long."))
                return
            if len(head) > MAX_REQUEST_HEAD:
                await _respond(stream, 431, _page("Request too large", "The request was too large."))
                return
            status, page, finished = await self._callback(port, head)
            await _respond(stream, status, page)
        stop = self._listeners.get(finished) if finished else None
        if stop is not None:
            stop.set()

    async def _callback(self, port: int, head: bytes) -> tuple[int, str, str | None]:
        """The answer to the browser, and the state of the login it finished (if it did)."""
        request = _parse_head(head)
        if request is None:
            return 400, _page("Bad request", "The request could not be read."), None
        method, target, host = request
        parts = urlsplit(target)
        if method != "GET":
            return 405, _page("Method not allowed", "Only GET is answered here."), None
        if parts.path != "/callback":
            return 404, _page("Not found", "Nothing here."), None
        if host not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            return 400, _page("Bad request", "Unexpected Host header."), None
        query = parse_qs(parts.query, keep_blank_values=True)
        state = (query.get("state") or [""])[0]
        code = (query.get("code") or [""])[0]
        login = self._waiting.get(state)
        if login is None or not secrets.compare_digest(state.encode(), login.state.encode()):
            # Anyone on this machine can reach the port: a request without the right state must not
            # end the login the user is in the middle of.
            await self.audit.record("oauth_failed", PROVIDER, "error", "state_mismatch")
            _log.info("openrouter callback with a wrong state ignored")
            return (
                400,
                _failure_page("This link does not belong to the login in progress (state mismatch)."),
                None,
            )
        if not code:
            said = (query.get("error") or [""])[0]
            error = _oauth_failed(
                "OpenRouter sent the browser back without a code"
                + (f" (error: {redact.redact(said)[:100]})" if said else "")
                + ". Start a new login.",
                reason="no_code",
            )
            if self.logins.fail(login.state) is not None:
                await self.audit.record("oauth_failed", PROVIDER, "error", "no_code")
                self.notify(COMPLETED, AuthCompletedParams(state=login.state, ok=False, error=error.data()))
            return 400, _failure_page(error.message), login.state
        try:
            masked = await self.finish(login.state, code)
        except SidecarError as exc:
            self.notify(COMPLETED, AuthCompletedParams(state=login.state, ok=False, error=exc.data()))
            return (
                400 if exc.kind in ("oauth_failed", "invalid_request") else 502,
                _failure_page(exc.message),
                login.state,
            )
        self.notify(COMPLETED, AuthCompletedParams(state=login.state, ok=True, masked=masked))
        return (
            200,
            _page(
                "Logged in to OpenRouter",
                "The OpenRouter key is stored in this computer's keychain. You can close this window.",
            ),
            login.state,
        )


# -- a minimal HTTP/1.1 responder -------------------------------------------------------------------


async def _read_head(stream: anyio.abc.ByteStream) -> bytes:
    """The request line and headers, up to the blank line; stops a little past the size limit."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) <= MAX_REQUEST_HEAD:
        try:
            chunk = await stream.receive(4096)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            break
        data += chunk
    return data


def _parse_head(head: bytes) -> tuple[str, str, str] | None:
    try:
        text = head.decode("iso-8859-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    host = ""
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "host":
            host = value.strip().lower()
    return parts[0], parts[1], host


_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
}


async def _respond(stream: anyio.abc.ByteStream, status: int, page: str) -> None:
    body = page.encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Referrer-Policy: no-referrer\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    try:
        with anyio.move_on_after(READ_TIMEOUT_S):
            await stream.send(head + body)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _page(title: str, text: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{_escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32em;margin:4em auto;padding:0 1em}</style>"
        f"</head><body><h1>{_escape(title)}</h1><p>{_escape(text)}</p></body></html>"
    )


def _failure_page(message: str) -> str:
    return _page("OpenRouter login failed", f"{message} You can close this window.")
