"""Which scheme and which TLS trust to use for a registry host.

Docker's rule: a registry is spoken to over HTTPS. A loopback registry
(``localhost``, ``127.0.0.0/8``, ``[::1]``) is tried over HTTPS first and falls
back to plain HTTP when it does not speak TLS; a registry declared insecure
(``IMAGECTL_INSECURE_REGISTRIES``) speaks plain HTTP; a registry listed in
``tls_registries`` speaks HTTPS only. TLS trust is loaded only for an https
origin: an explicit CA file, else ``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE``,
else the system store plus certifi; in every case plus docker's
``/etc/docker/certs.d/<host:port>/*.crt`` (and ``*.cert``/``*.key`` client
certificates).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Collection, Mapping
from pathlib import Path

from imagectl.errors import RegistryError

DEFAULT_CERTS_DIR = Path("/etc/docker/certs.d")


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (with or without a port)."""
    name = _hostname(host).lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def choose_schemes(host: str, insecure: Collection[str], tls: Collection[str]) -> tuple[str, ...]:
    """The schemes to try for a registry host (``host[:port]``), in order.

    `tls` wins (HTTPS only), then `insecure` (plain HTTP only); a loopback host
    tries HTTPS, then plain HTTP; everything else HTTPS only. Entries match with or
    without port.
    """
    names = {host, _hostname(host)}
    if names & set(tls):
        return ("https",)
    if names & set(insecure):
        return ("http",)
    if is_loopback(host):
        return ("https", "http")
    return ("https",)


def choose_scheme(host: str, insecure: Collection[str], tls: Collection[str]) -> str:
    """The first scheme to try for a registry host (see `choose_schemes`)."""
    return choose_schemes(host, insecure, tls)[0]


def ssl_context(
    host: str, ca_file: Path | None, certs_dir: Path, env: Mapping[str, str]
) -> ssl.SSLContext:
    """The TLS context for `host` (``host:port``): CA file or environment, plus certs.d.

    Raises:
        RegistryError: a configured certificate file cannot be loaded.
    """
    if is_loopback(host) and speaks_tls(host) is False:
        # The https probe of a plain-HTTP loopback registry: its handshake fails on the
        # server's first bytes, before any certificate is looked at, so no trust is loaded
        # (the CA bundle costs ~50 ms of CPU per run). Verification stays on: should a TLS
        # server appear there meanwhile, the handshake fails as untrusted, never passes.
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    import certifi  # only an https origin needs the CA bundle

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


def speaks_tls(host: str, timeout: float = 2.0) -> bool | None:
    """Whether the server at `host` (``host:port``, a loopback one) answers a TLS
    handshake: True, False (it answers, but not in TLS: a plain-HTTP server), or None
    when it cannot be told (refused, timed out, no port). No certificate is checked
    and no HTTP request is sent: one TCP connection, one ClientHello."""
    name = _hostname(host)
    port_text = host.rsplit(":", 1)[1] if host.count(":") == 1 or host.startswith("[") else ""
    if not port_text.isdigit():
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((name, int(port_text)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=name),
        ):
            return True
    except ssl.SSLError as exc:
        return False if _not_tls(exc) else None
    except OSError:
        return None


def _not_tls(exc: BaseException) -> bool:
    """True when `exc` (or a cause) is what a TLS client sees from a plain-HTTP server."""
    cause: BaseException | None = exc
    while cause is not None:
        text = str(cause)
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def is_untrusted_certificate(exc: BaseException) -> bool:
    """True when `exc` (or a cause) is a failed TLS certificate verification."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def tls_hint(exc: BaseException, host: str = "<host:port>") -> str | None:
    """A hint for a TLS failure (untrusted certificate, plain HTTP spoken), or None."""
    if is_untrusted_certificate(exc):
        return (
            "its TLS certificate is not trusted; give its CA in SSL_CERT_FILE "
            f"(or REQUESTS_CA_BUNDLE), or as /etc/docker/certs.d/{host}/ca.crt"
        )
    if _not_tls(exc):
        return "it does not speak TLS; list a plain-HTTP registry in IMAGECTL_INSECURE_REGISTRIES"
    return None
