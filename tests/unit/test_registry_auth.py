"""Authentication: challenges, bearer tokens cached per scope, one re-auth, basic auth."""

from __future__ import annotations

import httpx
import pytest

from imagectl.errors import AuthError, RegistryError
from imagectl.registry import Credentials, RegistryClient, StaticCredentials, parse_reference
from imagectl.registry.auth import Challenge, parse_challenges
from tests.fixtures.fake_registry import FakeRegistry

REF = parse_reference("registry.test/acme/app:1")
OTHER = parse_reference("registry.test/acme/other:1")
USER, PASSWORD = "alice", "pa55word-canary"


def bearer_registry() -> FakeRegistry:
    fake = FakeRegistry(auth="bearer", users={USER: PASSWORD})
    fake.add_image("acme/app", "1")
    fake.add_image("acme/other", "1")
    return fake


def client_for(
    fake: FakeRegistry, creds: Credentials | None = None, **kw: object
) -> RegistryClient:
    mapping = {"registry.test": creds} if creds is not None else {}
    return RegistryClient(
        credentials=StaticCredentials(mapping),
        transport=fake.transport,
        sleep=lambda _: None,
        **kw,  # type: ignore[arg-type]
    )


def test_challenges_are_parsed_with_quoted_commas_and_several_schemes() -> None:
    header = (
        'Bearer realm="https://auth.test/token",service="registry.test",'
        'scope="repository:acme/app:pull,push", Basic realm="say \\"hi\\""'
    )
    assert parse_challenges([header]) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.test/token",
                "service": "registry.test",
                "scope": "repository:acme/app:pull,push",
            },
        ),
        Challenge("basic", {"realm": 'say "hi"'}),
    ]
    assert parse_challenges(["Basic realm=simple", "Negotiate"]) == [
        Challenge("basic", {"realm": "simple"}),
        Challenge("negotiate", {}),
    ]


def test_bearer_tokens_are_cached_per_scope() -> None:
    fake = bearer_registry()
    with client_for(fake, Credentials(USER, PASSWORD)) as client:
        assert client.head_manifest(REF) is not None
        assert client.request_count == 3  # 401, token, retry
        assert client.head_manifest(REF) is not None
        assert client.get_manifest(REF).digest
        assert client.request_count == 5  # the cached token is sent up front
        assert client.head_manifest(OTHER) is not None
        assert client.request_count == 7  # a new scope: token fetched up front, no 401
        client.retag(REF, "2")
    assert fake.token_requests == [
        ["repository:acme/app:pull"],
        ["repository:acme/other:pull"],
        ["repository:acme/app:pull,push"],
    ]


def test_concurrent_requests_for_one_scope_fetch_one_token() -> None:
    fake = bearer_registry()
    refs = [REF.with_tag(str(n)) for n in range(16)]
    for ref in refs:
        fake.add_image("acme/app", str(ref.tag))
    with client_for(fake, Credentials(USER, PASSWORD), max_concurrency=8) as client:
        found = client.resolve_many(refs)
    assert all(found.values())
    assert fake.token_requests == [["repository:acme/app:pull"]]


def test_exactly_one_reauth_after_a_401() -> None:
    fake = bearer_registry()
    with client_for(fake, Credentials(USER, PASSWORD)) as client:
        client.head_manifest(REF)
        fake.revoked.add("tok1")  # the registry stops accepting the cached token
        before = client.request_count
        assert client.head_manifest(REF) is not None
        assert client.request_count - before == 3  # 401, new token, retry
        fake.revoked.update(f"tok{n}" for n in range(2, 10))  # and every token after it
        before = client.request_count
        with pytest.raises(AuthError, match=r"refused user 'alice'"):
            client.head_manifest(REF)
        assert client.request_count - before == 3  # no second re-auth, no loop


def test_tokens_expire_on_the_injected_clock() -> None:
    fake = bearer_registry()
    now = [1000.0]
    with client_for(fake, Credentials(USER, PASSWORD), clock=lambda: now[0]) as client:
        client.head_manifest(REF)
        now[0] += 100
        client.head_manifest(REF)
        assert len(fake.token_requests) == 1
        now[0] += 300  # past expires_in (300 s) minus the safety margin
        client.head_manifest(REF)
        assert len(fake.token_requests) == 2


def test_token_server_refusal_is_an_auth_error() -> None:
    fake = bearer_registry()
    with (
        client_for(fake, Credentials(USER, "wrong")) as client,
        pytest.raises(AuthError, match=r"token server https://auth\.test/token refused"),
    ):
        client.head_manifest(REF)


def test_identity_tokens_use_the_oauth2_refresh_grant() -> None:
    fake = FakeRegistry(auth="bearer", users={"<token>": "refresh-canary"})
    fake.add_image("acme/app", "1")
    methods: list[str] = []

    def spy(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            methods.append(request.method)
        return fake.handle(request)

    creds = Credentials(identity_token="refresh-canary")
    client = RegistryClient(
        credentials=StaticCredentials({"registry.test": creds}), transport=httpx.MockTransport(spy)
    )
    with client:
        assert client.head_manifest(REF) is not None
    assert methods == ["POST"]


def test_basic_auth_is_sent_up_front_once_known() -> None:
    fake = FakeRegistry(auth="basic", users={USER: PASSWORD})
    fake.add_image("acme/app", "1")
    with client_for(fake, Credentials(USER, PASSWORD)) as client:
        assert client.head_manifest(REF) is not None
        assert client.request_count == 2
        assert client.head_manifest(OTHER) is None
        assert client.request_count == 3


def test_basic_auth_wrong_password_and_missing_credentials() -> None:
    fake = FakeRegistry(auth="basic", users={USER: PASSWORD})
    with client_for(fake, Credentials(USER, "wrong")) as client:
        with pytest.raises(AuthError, match=r"registry registry.test refused user 'alice'"):
            client.head_manifest(REF)
        assert client.request_count == 2
    with (
        client_for(fake) as client,
        pytest.raises(AuthError, match=r"no credentials.*docker login registry.test"),
    ):
        client.head_manifest(REF)


def test_anonymous_bearer_tokens_are_fetched_without_credentials() -> None:
    fake = FakeRegistry(auth="bearer")  # no users: the token endpoint serves anonymous pulls
    fake.add_image("acme/app", "1")
    with client_for(fake) as client:
        assert client.head_manifest(REF) is not None
        assert client.head_manifest(REF) is not None
        assert client.request_count == 4
    assert fake.token_requests == [["repository:acme/app:pull"]]


def test_an_invalid_token_realm_is_reported_not_retried() -> None:
    def bad_realm(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="/token"'})

    client = RegistryClient(
        credentials=StaticCredentials({}), transport=httpx.MockTransport(bad_realm)
    )
    with client, pytest.raises(RegistryError, match=r"invalid token realm '/token'"):
        client.head_manifest(REF)
    assert client.request_count == 1
