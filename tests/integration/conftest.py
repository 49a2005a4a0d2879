"""Fixtures the integration tests share: `gw`, the gateway in front of the fake upstreams
(`gateway_harness`)."""

from tests.integration.gateway_harness import fakes, gw

__all__ = ["fakes", "gw"]
