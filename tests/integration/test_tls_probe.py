"""The https probe of a loopback registry loads TLS trust only when the server speaks TLS.

That both kinds still answer through the client, with the same request count, is
`test_registry_auth_modes.test_a_loopback_registry_is_tried_over_https_first_as_docker_does`.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from devenv.registry import RegistryServer
from imagectl.registry.hosts import speaks_tls, ssl_context
from tests.fixtures.registry import TlsRegistry

NO_CERTS = Path("/nonexistent/certs.d")


def _trusted(context: ssl.SSLContext) -> int:
    return int(context.cert_store_stats()["x509_ca"])


def test_a_plain_http_loopback_registry_gets_no_trust_loaded(registry: RegistryServer) -> None:
    assert speaks_tls(registry.host) is False
    context = ssl_context(registry.host, None, NO_CERTS, {})
    assert _trusted(context) == 0
    assert context.verify_mode == ssl.CERT_REQUIRED  # verification stays on


def test_a_tls_loopback_registry_gets_its_trust(tls_registry: TlsRegistry) -> None:
    host = tls_registry.server.host
    assert speaks_tls(host) is True
    context = ssl_context(host, Path(tls_registry.ca_file), NO_CERTS, {})
    assert _trusted(context) == 1


def test_unknown_answers_load_trust_as_before() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert speaks_tls(f"127.0.0.1:{port}") is None  # nothing listens: refused
    assert speaks_tls("localhost") is None  # no port
    context = ssl_context(f"127.0.0.1:{port}", None, NO_CERTS, {})
    assert _trusted(context) > 0  # the system store and certifi, as before
