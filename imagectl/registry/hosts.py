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
    cause: BaseException | None = exc
    while cause is not None:
        text = str(cause)
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
            return (
                "it does not speak TLS; list a plain-HTTP registry in IMAGECTL_INSECURE_REGISTRIES"
            )
        cause = cause.__cause__ or cause.__context__
    return None
