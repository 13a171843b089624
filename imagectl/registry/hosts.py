"""Which scheme and which TLS trust to use for a registry host.

Loopback hosts (``localhost``, ``127.0.0.0/8``, ``[::1]``) and the configured
insecure registries speak plain HTTP, everything else HTTPS, as docker does. A
loopback registry that does serve TLS (a test registry) is listed in
``tls_registries``. TLS trust: an explicit CA file, else ``SSL_CERT_FILE`` /
``REQUESTS_CA_BUNDLE``, else the system store plus certifi; in every case plus
docker's ``/etc/docker/certs.d/<host:port>/*.crt`` (and ``*.cert``/``*.key``
client certificates).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Collection, Mapping
from pathlib import Path

import certifi

from imagectl.errors import RegistryError

DEFAULT_CERTS_DIR = Path("/etc/docker/certs.d")


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (with or without a port)."""
    name = _hostname(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def choose_scheme(host: str, insecure: Collection[str], tls: Collection[str]) -> str:
    """``https`` or ``http`` for a registry host (``host[:port]``).

    `tls` wins (a loopback registry that serves TLS), then `insecure` and loopback
    hosts speak plain HTTP; everything else HTTPS. Entries match with or without port.
    """
    names = {host, _hostname(host)}
    if names & set(tls):
        return "https"
    if names & set(insecure) or is_loopback(host):
        return "http"
    return "https"


def ssl_context(
    host: str, ca_file: Path | None, certs_dir: Path, env: Mapping[str, str]
) -> ssl.SSLContext:
    """The TLS context for `host` (``host:port``): CA file or environment, plus certs.d.

    Raises:
        RegistryError: a configured certificate file cannot be loaded.
    """
    cafile = ca_file or env.get("SSL_CERT_FILE") or env.get("REQUESTS_CA_BUNDLE")
    try:
        if cafile:
            ctx = ssl.create_default_context(cafile=str(cafile))
        else:
            ctx = ssl.create_default_context()  # the system store, like docker
            ctx.load_verify_locations(cafile=certifi.where())
        host_dir = certs_dir / host
        if host_dir.is_dir():  # docker's /etc/docker/certs.d/<host:port>/ convention
            for crt in sorted(host_dir.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(crt))
            for cert in sorted(host_dir.glob("*.cert")):
                ctx.load_cert_chain(str(cert), str(cert.with_suffix(".key")))
    except (OSError, ssl.SSLError) as exc:
        raise RegistryError(f"cannot load TLS certificates for {host}: {exc}") from exc
    return ctx


def tls_hint(exc: BaseException) -> str | None:
    """A hint for a TLS failure (untrusted certificate, plain HTTP spoken), or None."""
    cause: BaseException | None = exc
    while cause is not None:
        text = str(cause)
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in text:
            return (
                "its TLS certificate is not trusted; give the CA with ca_file, "
                "SSL_CERT_FILE/REQUESTS_CA_BUNDLE or <certs dir>/<host:port>/ca.crt"
            )
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
            return "it does not speak TLS; list a plain-HTTP registry in insecure_registries"
        cause = cause.__cause__ or cause.__context__
    return None
