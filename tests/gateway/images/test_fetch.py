"""The guarded fetcher against a real HTTP server on loopback (allowlisted or not)."""

import asyncio

import pytest

from gateway.images import FetchPolicy, ImageError, ImageFetcher
from tests.plugins.media import png_bytes


def fetch(url: str, **policy) -> bytes:
    async def go() -> bytes:
        fetcher = ImageFetcher(FetchPolicy(**{"timeout_s": 2, "max_bytes": 100_000, "max_redirects": 2,
                                               **policy}))
        try:
            return await fetcher.fetch(url)
        finally:
            await fetcher.close()

    return asyncio.run(go())


def test_allowlisted_host_is_fetched(image_server):
    image = png_bytes()
    image_server.routes["/a.png"] = (200, {"Content-Type": "image/png"}, image)
    assert fetch(image_server.url("/a.png"), allow_hosts=frozenset({image_server.hostport})) == image


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.1", "[::1]"])
def test_loopback_is_refused_without_the_allowlist(image_server, host):
    image_server.routes["/a.png"] = (200, {}, png_bytes())
    with pytest.raises(ImageError) as caught:
        fetch(f"http://{host}:{image_server.port}/a.png")
    assert caught.value.code in ("image_url_blocked", "invalid_image_url", "image_fetch_failed")
    assert "non-public" in caught.value.message or "not allowed" in caught.value.message \
        or "canonical" in caught.value.message


def test_metadata_address_is_refused():
    with pytest.raises(ImageError) as caught:
        fetch("http://169.254.169.254/latest/meta-data/")
    assert caught.value.code == "image_url_blocked"
    assert caught.value.message.endswith("the gateway's setting VISIONRAG_FETCH_ALLOW_HOSTS=169.254.169.254 allows it")


def test_redirect_to_a_private_address_is_refused(image_server):
    # The first hop is allowed (by port), the redirect target is a different, private host.
    image_server.routes["/hop"] = (302, {"Location": "http://10.0.0.1/secret.png"}, b"")
    with pytest.raises(ImageError) as caught:
        fetch(image_server.url("/hop"), allow_hosts=frozenset({image_server.hostport}))
    assert caught.value.code == "image_url_blocked"


def test_redirects_are_followed_up_to_the_limit(image_server):
    image = png_bytes()
    image_server.routes["/1"] = (302, {"Location": "/2"}, b"")
    image_server.routes["/2"] = (301, {"Location": "/img"}, b"")
    image_server.routes["/img"] = (200, {}, image)
    allow = frozenset({image_server.hostport})
    assert fetch(image_server.url("/1"), allow_hosts=allow) == image
    with pytest.raises(ImageError, match="redirected more than 1"):
        fetch(image_server.url("/1"), allow_hosts=allow, max_redirects=1)


def test_body_over_the_byte_limit_is_refused(image_server):
    image_server.routes["/big"] = (200, {}, b"x" * 5000)
    with pytest.raises(ImageError) as caught:
        fetch(image_server.url("/big"), allow_hosts=frozenset({image_server.hostport}), max_bytes=1000)
    assert caught.value.code == "image_too_large"


def test_http_error_status_is_reported(image_server):
    with pytest.raises(ImageError, match="HTTP 404"):
        fetch(image_server.url("/missing"), allow_hosts=frozenset({image_server.hostport}))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "http:///nohost"])
def test_other_schemes_and_malformed_urls_are_refused(url):
    with pytest.raises(ImageError):
        fetch(url)


# What a refused or failed fetch tells the client: what failed, never what a name resolves to
# or the library's own message (addresses, errno text); those go to the gateway's log.
INTERNALS = ("127.0.0.1", "::1", "Errno", "errno", "Connect call failed", "Name or service", "ClientConnector")


def test_blocked_host_name_does_not_reveal_what_it_resolves_to(image_server, caplog):
    image_server.routes["/a.png"] = (200, {}, png_bytes())
    with caplog.at_level("WARNING", logger="visionrag.images"), pytest.raises(ImageError) as caught:
        fetch(f"http://localhost:{image_server.port}/a.png")
    assert caught.value.code == "image_url_blocked"
    assert caught.value.message == ("image URL host localhost resolves to a non-public address; "
                                    "the gateway's setting VISIONRAG_FETCH_ALLOW_HOSTS=localhost allows it")
    assert "127.0.0.1" in caplog.text or "::1" in caplog.text  # the operator still learns it


def test_refused_connection_is_reported_without_internals(caplog):
    from tests.plugins.gateway_server import free_port

    port = free_port()  # nothing listens there
    with caplog.at_level("INFO", logger="visionrag.images"), pytest.raises(ImageError) as caught:
        fetch(f"http://127.0.0.1:{port}/a.png", allow_hosts=frozenset({f"127.0.0.1:{port}"}))
    assert caught.value.code == "image_fetch_failed"
    assert caught.value.message == "could not fetch the image: its host refused or did not accept the connection"
    assert str(port) in caplog.text


def test_unresolvable_host_is_reported_without_internals():
    # `.invalid` never resolves (RFC 6761); allowlisted so that only resolution can fail.
    with pytest.raises(ImageError) as caught:
        fetch("http://nothing.invalid/a.png", allow_hosts=frozenset({"nothing.invalid"}))
    assert caught.value.code == "image_fetch_failed"
    assert caught.value.message == "could not fetch the image: its host name does not resolve"
    assert not any(fragment in caught.value.message for fragment in INTERNALS)
