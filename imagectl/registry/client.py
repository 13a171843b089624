"""`RegistryClient`: the OCI distribution API operations imagectl needs.

Thread-safe: one client serves every thread of a run; `resolve_many` fans out
over a bounded thread pool and the session bounds the requests in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Unpack

import httpx

from imagectl.domain.reference import (
    TAG_RE,
    InvalidReferenceError,
    Reference,
    is_repository_path,
)
from imagectl.errors import AuthError, ImagectlError, RegistryError
from imagectl.registry.credentials import CredentialSource, DefaultCredentials
from imagectl.registry.jsondoc import load_object
from imagectl.registry.limits import Body, Limits, RegistryLimitError
from imagectl.registry.manifests import (
    DEFAULT_PLATFORM,
    MANIFEST_ACCEPT,
    ManifestInfo,
    OciConfig,
    OciManifest,
    checked_digest,
    checked_media_type,
    compute_digest,
    config_digest_of,
    image_config_from,
    select_platform,
    verify_digest,
)
from imagectl.registry.session import RegistrySession, SessionOptions, server_message
from imagectl.textsafe import clean

_MAX_INDEX_DEPTH = 2


class RegistryClient:
    """A client for OCI/docker registries (distribution API v2).

    Args:
        credentials: where credentials come from (default: the docker config, read when
            a registry first asks for a login).
        transport: an httpx transport for every request (tests: ``httpx.MockTransport``).
        insecure_registries: hosts (``host`` or ``host:port``) reached over plain HTTP.
        tls_registries: hosts reached over HTTPS even though they are loopback
            (``localhost``/``127.0.0.0/8``/``[::1]`` speak plain HTTP otherwise).
        ca_file: CA bundle to trust instead of ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``/the
            system store.
        certs_dir: docker's per-host certificate directory (``<dir>/<host:port>/ca.crt``).
        timeout: seconds for connecting and for each read or write.
        retry: retry policy for 429, 5xx and connection failures.
        max_concurrency: requests in flight at once, and threads of `resolve_many`.
        sleep: how to wait between retries (tests inject a recorder).
        rand: random numbers in [0, 1) for backoff jitter.
        clock: monotonic seconds, for token expiry.
        limits: body sizes, deadlines and the page cap (default: `Limits.from_env()`).
    """

    def __init__(
        self,
        *,
        credentials: CredentialSource | None = None,
        limits: Limits | None = None,
        **options: Unpack[SessionOptions],
    ) -> None:
        self._session = RegistrySession(
            credentials if credentials is not None else DefaultCredentials(),
            limits=limits if limits is not None else Limits.from_env(),
            **options,
        )
        self._single_post: dict[str, bool] = {}  # registry -> takes a single-POST upload

    def __repr__(self) -> str:
        return f"RegistryClient(requests={self.request_count})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._session.close()

    @property
    def request_count(self) -> int:
        """HTTP requests made so far (token requests, retries and redirects included)."""
        return self._session.request_count

    @property
    def limits(self) -> Limits:
        """The body sizes, deadlines and page cap in force."""
        return self._session.limits

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Registry requests inside the block end by the phase deadline (``planning``)."""
        with self._session.phase(name):
            yield

    def _url(self, ref: Reference, path: str) -> str:
        return f"{self._session.base_url(ref.api_host)}/v2/{ref.repository}/{path}"

    def _call(
        self, method: str, ref: Reference, path: str, actions: str, subject: str, **kw: Any
    ) -> httpx.Response:
        url = path if "://" in path else self._url(ref, path)
        scope = f"repository:{ref.repository}:{actions}"
        return self._session.request(method, ref.registry, url, scope=scope, subject=subject, **kw)

    def head_manifest(self, ref: Reference) -> ManifestInfo | None:
        """Digest, media type and size of the manifest `ref` names; None if there is none."""
        path, subject = f"manifests/{ref.identifier}", f"HEAD manifest {ref}"
        accept = {"Accept": MANIFEST_ACCEPT}
        response = self._call("HEAD", ref, path, "pull", subject, expect={200, 404}, headers=accept)
        if response.status_code == 404:
            return None
        digest = checked_digest(response.headers.get("docker-content-digest"), subject)
        if not digest:  # optional header: the bytes decide
            return self.get_manifest(ref).info
        if ref.digest is not None and digest != ref.digest:
            raise RegistryError(f"{subject}: the registry names digest {digest}")
        media_type = checked_media_type(response.headers.get("content-type", ""), subject)
        length = response.headers.get("content-length", "")
        return ManifestInfo(digest, media_type, int(length) if length.isdigit() else 0)

    def get_manifest(self, ref: Reference) -> OciManifest:
        """The manifest or index `ref` names, its digest verified against its bytes.

        Raises:
            RegistryError: missing, unreadable, or the bytes do not match the digest that the
                registry or the reference names.
        """
        subject = f"GET manifest {ref}"
        path, accept = f"manifests/{ref.identifier}", {"Accept": MANIFEST_ACCEPT}
        response = self._call(
            "GET", ref, path, "pull", subject, expect={200}, headers=accept, body=Body.MANIFEST
        )
        raw = response.content
        try:
            manifest = OciManifest.from_bytes(raw, response.headers.get("content-type", ""))
        except RegistryError as exc:
            raise RegistryError(f"{subject}: {exc}") from exc
        for expected in (response.headers.get("docker-content-digest"), ref.digest):
            if expected:
                manifest = replace(manifest, digest=verify_digest(raw, expected, subject))
        return manifest

    def get_blob(self, ref: Reference, digest: str) -> bytes:
        """The blob `digest` of `ref`'s repository, verified against its digest."""
        subject = f"GET blob {digest} of {ref.name}"
        response = self._call(
            "GET",
            ref,
            f"blobs/{digest}",
            "pull",
            subject,
            expect={200},
            follow_redirects=True,
            body=Body.CONFIG,
        )
        verify_digest(response.content, digest, subject)
        return response.content

    def has_blob(self, ref: Reference, digest: str) -> bool:
        """Whether `ref`'s repository holds the blob `digest` (HEAD)."""
        subject = f"HEAD blob {digest} of {ref.name}"
        path = f"blobs/{digest}"
        response = self._call("HEAD", ref, path, "pull", subject, expect={200, 404})
        return response.status_code == 200

    def mount_blob(self, ref: Reference, digest: str, source: Reference) -> bool:
        """Mount the blob `digest` of `source`'s repository into `ref`'s (same registry).

        Returns:
            True when the registry mounted it (201); False when it would rather take an
            upload (202: the caller uploads; the started upload is abandoned).
        """
        if source.registry != ref.registry:
            return False
        subject = f"mount blob {digest} from {source.name} into {ref.name}"
        path = f"blobs/uploads/?mount={digest}&from={source.repository}"
        response = self._call("POST", ref, path, "pull,push", subject, expect={201, 202})
        return response.status_code == 201

    def push_blob(self, ref: Reference, data: bytes) -> str:
        """Upload `data` as one blob into `ref`'s repository (monolithic POST then PUT).

        Returns:
            The blob's digest.
        """
        digest = compute_digest(data)
        subject = f"upload blob {digest} to {ref.name}"
        started = self._call("POST", ref, "blobs/uploads/", "pull,push", subject, expect={202})
        location = started.headers.get("location", "")
        if not location:
            raise RegistryError(f"{subject}: the registry gave no upload location")
        url = str(started.url.join(location))
        url += ("&" if "?" in url else "?") + f"digest={digest}"
        headers = {"Content-Type": "application/octet-stream"}
        self._call(
            "PUT", ref, url, "pull,push", subject, expect={201}, headers=headers, content=data
        )
        return digest

    def push_small_blob(self, ref: Reference, data: bytes) -> str:
        """Upload a small blob (an image config) in one request when the registry can.

        A POST carrying the bytes and ``?digest=`` is the OCI spec's single-request
        upload (201). A registry that only starts an upload session (202: the reference
        registry does) gets one PUT of the bytes at the location it gave, and is
        remembered: its later uploads start with a bare POST. One request, else two
        (three once, for a registry that refuses the single POST outright: 400/404/405).

        Returns:
            The blob's digest.
        """
        digest = compute_digest(data)
        subject = f"upload blob {digest} to {ref.name}"
        headers = {"Content-Type": "application/octet-stream"}
        single = self._single_post.get(ref.registry, True)
        started = self._call(
            "POST",
            ref,
            f"blobs/uploads/?digest={digest}" if single else "blobs/uploads/",
            "pull,push",
            subject,
            expect={201, 202, 400, 404, 405} if single else {202},
            headers=headers,
            content=data if single else None,
        )
        if started.status_code in (400, 404, 405):  # the single POST is optional: refused
            self._single_post[ref.registry] = False
            return self.push_small_blob(ref, data)
        if started.status_code == 201:
            confirmed = checked_digest(started.headers.get("docker-content-digest"), subject)
            if confirmed and confirmed != digest:
                raise RegistryError(f"{subject}: the registry stored {confirmed}, not {digest}")
            return digest
        self._single_post[ref.registry] = False
        url = _upload_put_url(started, digest, subject)
        self._call(
            "PUT", ref, url, "pull,push", subject, expect={201}, headers=headers, content=data
        )
        return digest

    def image_config(self, ref: Reference, platform: str = DEFAULT_PLATFORM) -> OciConfig:
        """Labels and digests of the image `ref` names; for an index, its `platform` image."""
        manifest = self.get_manifest(ref)
        index_digest: str | None = None
        for _ in range(_MAX_INDEX_DEPTH):
            if not manifest.is_index:
                break
            index_digest = index_digest or manifest.digest
            entry = select_platform(manifest, platform)
            manifest = self.get_manifest(ref.with_digest(str(entry["digest"])))
        config_digest = config_digest_of(manifest, str(ref))
        blob = self.get_blob(ref, config_digest)
        return image_config_from(manifest, blob, index_digest, platform, str(ref))

    def put_manifest(self, ref: Reference, manifest: OciManifest) -> str:
        """Store `manifest` under `ref`'s tag (its blobs must be in the repository).

        Returns:
            The manifest digest, which the registry must confirm.
        """
        subject = f"PUT manifest {ref}"
        if not manifest.media_type:
            raise RegistryError(f"{subject}: the manifest has no media type")
        response = self._call(
            "PUT",
            ref,
            f"manifests/{ref.identifier}",
            "pull,push",
            subject,
            expect={200, 201, 202},
            headers={"Content-Type": manifest.media_type},
            content=manifest.raw,
        )
        confirmed = checked_digest(response.headers.get("docker-content-digest"), subject)
        if confirmed:
            verify_digest(manifest.raw, confirmed, subject)
        return manifest.digest

    def put_blob(self, ref: Reference, data: bytes) -> str:
        """Upload `data` as a blob of `ref`'s repository (skipped when it is there already).

        Returns:
            The blob digest, which the registry must confirm.
        """
        digest = compute_digest(data)
        subject = f"PUT blob {digest} of {ref.name}"
        head = self._call("HEAD", ref, f"blobs/{digest}", "pull,push", subject, expect={200, 404})
        if head.status_code == 200:
            return digest
        started = self._call("POST", ref, "blobs/uploads/", "pull,push", subject, expect={202})
        location = started.headers.get("location", "")
        if not location:
            raise RegistryError(f"{subject}: the registry gave no upload location")
        url = httpx.URL(self._url(ref, "blobs/uploads/")).join(location)
        url = url.copy_merge_params({"digest": digest})
        done = self._call(
            "PUT",
            ref,
            str(url),
            "pull,push",
            subject,
            expect={201},
            headers={"Content-Type": "application/octet-stream"},
            content=data,
        )
        confirmed = done.headers.get("docker-content-digest")
        if confirmed and confirmed != digest:
            raise RegistryError(f"{subject}: the registry stored {confirmed}, not {digest}")
        return digest

    def retag(self, src: Reference, tag: str) -> str:
        """Point `tag` (same repository) at the manifest `src` names; no blob is re-uploaded."""
        return self.put_manifest(src.with_tag(tag), self.get_manifest(src))

    def list_tags(self, ref: Reference, page_size: int | None = None) -> list[str]:
        """All tags of `ref`'s repository, sorted; an unknown repository has none.

        Args:
            ref: any reference into the repository (its tag and digest are ignored).
            page_size: ask for pages of this many tags (``n=``); ``Link`` headers are followed,
                on the registry's own origin only, for at most `Limits.max_pages` pages.

        Raises:
            RegistryError: a tag outside the tag grammar, a reply that is no tag list, a
                link to another origin, or more pages than the cap.
        """
        first = self._url(ref, "tags/list") + (f"?n={page_size}" if page_size else "")
        subject = f"GET tags of {ref.name}"
        tags: set[str] = set()
        scope = f"repository:{ref.repository}:pull"
        for response in self._pages(ref.registry, first, subject, scope, {200, 404}):
            if response.status_code != 200:
                return sorted(tags)
            tags.update(_strings(response.content, "tags", subject, TAG_RE.fullmatch, "tag"))
        return sorted(tags)

    def list_repositories(self, ref: Reference) -> set[str] | None:
        """Every repository of `ref`'s registry (`/v2/_catalog`), or None when not offered.

        Many registries (Docker Hub among them) do not serve the catalog or not to
        every user: None then means "unknown", never "empty". A hostile reply (a link
        to another origin, too many pages, a body past its limit, a name outside the
        repository grammar) is an error, not "unknown".
        """
        first = f"{self._session.base_url(ref.api_host)}/v2/_catalog?n=1000"
        subject = f"GET catalog of {ref.registry}"
        repositories: set[str] = set()
        try:
            pages = self._pages(
                ref.registry, first, subject, "registry:catalog:*", {200, 401, 403, 404, 405}
            )
            for response in pages:
                if response.status_code != 200:
                    return None
                names = _strings(
                    response.content, "repositories", subject, is_repository_path, "repository"
                )
                repositories.update(names)
        except RegistryLimitError:
            raise
        except ImagectlError:
            return None
        return repositories

    def _pages(
        self, registry: str, first: str, subject: str, scope: str, expect: set[int]
    ) -> Iterator[httpx.Response]:
        """Each page of a listing: ``Link: <…>; rel="next"`` followed on the registry's own
        origin only, at most `Limits.max_pages` pages; a status other than 200 ends it."""
        url, seen = first, set[str]()
        cap = self._session.limits.max_pages
        while url and url not in seen:
            if len(seen) >= cap:
                raise RegistryLimitError(
                    f"{subject}: registry {registry} has more than {cap} pages "
                    "(the page cap, IMAGECTL_MAX_PAGES)"
                )
            seen.add(url)
            response = self._session.request(
                "GET",
                registry,
                url,
                scope=scope,
                subject=subject,
                expect=expect,
                body=Body.LISTING,
            )
            yield response
            if response.status_code != 200:
                return
            link = response.links.get("next", {}).get("url")
            url = self._next_page(response, link, registry, subject) if link else ""

    def _next_page(self, response: httpx.Response, link: str, registry: str, subject: str) -> str:
        try:
            target = response.url.join(link)
        except httpx.InvalidURL:
            raise RegistryError(f"{subject}: registry {registry} sent an invalid Link") from None
        if not self._session.is_registry_origin(target, registry):
            raise RegistryLimitError(
                f"{subject}: registry {registry} sent a Link to another origin "
                f"({clean(target.copy_with(query=None, fragment=None), 200)}); "
                "refusing to follow it"
            )
        return str(target)

    def delete_manifest(self, ref: Reference) -> None:
        """Delete the manifest `ref` pins by digest (every tag pointing at it goes too).

        Raises:
            InvalidReferenceError: `ref` has no digest.
            RegistryError: the registry refused, e.g. because it has deletion disabled.
        """
        if ref.digest is None:
            raise InvalidReferenceError(f"deleting needs a reference by digest, not {ref}")
        subject = f"DELETE manifest {ref.name}@{ref.digest}"
        expect = {200, 202, 204, 400, 405}
        path = f"manifests/{ref.digest}"
        response = self._call("DELETE", ref, path, "delete", subject, expect=expect)
        if response.status_code < 400:
            return
        said = server_message(response)
        if response.status_code == 405 or "UNSUPPORTED" in said:
            raise RegistryError(
                f"{subject}: registry {ref.registry} has deletion disabled "
                f"(HTTP {response.status_code}: {said}); the reference registry enables it "
                "with storage.delete.enabled: true"
            )
        raise self._session.failure(response, subject, ref.registry)

    def resolve_many(self, refs: Iterable[Reference]) -> dict[Reference, ManifestInfo | None]:
        """HEAD every distinct reference once, concurrently.

        Returns:
            Each reference mapped to its manifest info, or None when it does not exist.

        Raises:
            RegistryError: one or more references failed (all failures are listed).
        """
        unique = list(dict.fromkeys(refs))
        if not unique:
            return {}
        found: dict[Reference, ManifestInfo | None] = {}
        failed: list[tuple[Reference, ImagectlError]] = []
        workers = min(self._session.max_concurrency, len(unique))
        with ThreadPoolExecutor(workers, thread_name_prefix="imagectl-resolve") as pool:
            futures = [(ref, pool.submit(self.head_manifest, ref)) for ref in unique]
            for ref, future in futures:
                try:
                    found[ref] = future.result()
                except ImagectlError as exc:
                    failed.append((ref, exc))
        if len(failed) == 1:
            raise failed[0][1]
        if failed:
            kind = AuthError if all(isinstance(e, AuthError) for _, e in failed) else RegistryError
            lines = "\n".join(f"  {ref}: {exc}" for ref, exc in failed)
            raise kind(f"{len(failed)} of {len(unique)} references could not be resolved:\n{lines}")
        return found


def _upload_put_url(started: httpx.Response, digest: str, subject: str) -> str:
    """The URL that completes the upload `started` opened, with ``digest=`` added.

    The reference registry answers with an absolute URL on its own origin (or, with
    ``relativeurls``, an absolute path) carrying a long ``_state`` token: it is used, or
    joined, by text (an `httpx.URL` join and parameter merge parse that URL twice more,
    0.4–0.6 ms of CPU per upload here). Other forms go through `httpx.URL.join`.
    """
    location: str = started.headers.get("location", "")
    if not location:
        raise RegistryError(f"{subject}: the registry gave no upload location")
    origin = f"{started.url.scheme}://{started.url.netloc.decode('ascii')}"
    if "#" not in location and location.startswith(origin + "/"):
        url = location
    elif location.startswith("/") and not location.startswith("//") and "#" not in location:
        url = origin + location
    else:
        url = str(started.url.join(location).copy_with(fragment=None))
    return url + ("&" if "?" in url else "?") + f"digest={digest}"


def _strings(
    raw: bytes, key: str, subject: str, grammar: Callable[[str], object], kind: str
) -> list[str]:
    """The list of strings under `key` of a listing page, each within `grammar`."""
    data = load_object(raw, subject)
    values = data.get(key) or []
    if not isinstance(values, list):
        raise RegistryError(f"{subject}: '{key}' is not a list")
    for value in values:
        if not isinstance(value, str) or not grammar(value):
            raise RegistryLimitError(
                f"{subject}: the registry lists an invalid {kind} {clean(value, 100)!r}"
            )
    return values
