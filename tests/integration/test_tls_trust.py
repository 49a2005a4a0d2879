"""What the upstream pools trust: a server whose certificate no trusted authority signed is
refused before a request (and its key) is sent, and `SSL_CERT_FILE` adds an authority, as a
company's TLS-inspecting proxy needs. Against a real TLS server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from sidecar.errors import ProviderError
from sidecar.providers.http import HttpClient, read_body
from tests.tls import https_server, make_certificate

ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 7\r\nconnection: close\r\n\r\ntrusted"
)
FETCH = """
import sys, anyio
from sidecar.providers.http import HttpClient, read_body

async def main() -> None:
    http = HttpClient("test")
    async with http.open("openai", "GET", sys.argv[1], chat=False) as response:
        sys.stdout.write((await read_body("openai", response)).decode())
    await http.aclose()

anyio.run(main)
"""


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    return make_certificate(tmp_path)


@pytest.fixture
def server(certificate: tuple[str, str]) -> Iterator[str]:
    with https_server(*certificate, ANSWER) as url:
        yield url


def test_a_certificate_no_trusted_authority_signed_is_refused(server: str) -> None:
    http = HttpClient("test")

    async def fetch() -> bytes:
        async with http.open("openai", "GET", server + "/v1/models", chat=False) as response:
            return await read_body("openai", response)

    with pytest.raises(ProviderError) as caught:
        anyio.run(fetch)
    assert caught.value.kind == "network_error"
    assert "certificate" in str(caught.value).lower()
    anyio.run(http.aclose)


def test_ssl_cert_file_adds_an_authority(server: str, certificate: tuple[str, str]) -> None:
    env = {**os.environ, "SSL_CERT_FILE": certificate[0]}
    done = subprocess.run(
        [sys.executable, "-c", FETCH, server + "/v1/models"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout == b"trusted"
