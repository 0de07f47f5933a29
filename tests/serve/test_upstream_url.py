"""`render_url`: an argument fills one path segment and never moves the call elsewhere."""

from __future__ import annotations

import math
import re
import string
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpdsl.serve.upstream import MAX_URL_CHARS, UpstreamError, placeholders, render_url

TEMPLATES = (
    "https://crm.example/api/v2/customers/{id}",
    "https://crm.example:8443/api/{id}/orders",
    "http://10.0.0.7/items/{id}.json",
    "http://crm.example/search?q={id}&limit=5",
    "http://[::1]:9000/v{id}/x",
)

REFUSED_IN_PATH = ("", ".", "..")
UNRESERVED = set(string.ascii_letters + string.digits + "-._~")


def _origin(url: str) -> tuple[str, str, int | None]:
    u = httpx.URL(url)
    return u.scheme, u.host, u.port


def _refused(template: str, value: str) -> bool:
    """What render_url must refuse: the rules of its docstring, spelled independently."""
    in_path = template.index("{id}") < template.find("?") if "?" in template else True
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return True
    prefix, suffix = template.split("{id}")
    segment = prefix.rsplit("/", 1)[-1] + value + re.split("[/?]", suffix, maxsplit=1)[0]
    if in_path and (value == "" or segment in (".", "..")):
        return True
    return len(template) - 4 + len(quote(value, safe="")) > MAX_URL_CHARS


@given(template=st.sampled_from(TEMPLATES), value=st.text() | st.sampled_from(REFUSED_IN_PATH))
def test_render_keeps_origin_and_round_trips(template: str, value: str) -> None:
    """Any text: refused exactly when the rules say, else same origin and recoverable."""
    try:
        url = render_url(template, {"id": value})
    except UpstreamError as exc:
        assert exc.kind == "bad-argument"
        assert _refused(template, value), (value, exc.reason)
        return
    assert not _refused(template, value)
    assert _origin(url) == _origin(template.replace("{id}", "x"))
    prefix, suffix = template.split("{id}")
    assert url.startswith(prefix) and url.endswith(suffix)
    encoded = url[len(prefix) : len(url) - len(suffix)]
    assert set(encoded) <= UNRESERVED | {"%"}
    assert unquote(encoded, errors="strict") == value
    # one segment: the rendered path has exactly as many `/` as the template's
    path = httpx.URL(url).raw_path.split(b"?")[0]
    assert path.count(b"/") == httpx.URL(template.replace("{id}", "x")).raw_path.split(b"?")[
        0
    ].count(b"/")


@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,5}){1,2}", fullmatch=True),
    port=st.none() | st.integers(1, 65535),
    value=st.text(min_size=1).filter(lambda v: v not in (".", "..")),
    other=st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False)),
)
def test_origin_never_changes(
    scheme: str, host: str, port: int | None, value: str, other: object
) -> None:
    base = f"{scheme}://{host}" + (f":{port}" if port else "")
    template = base + "/a/{x}/b/{y}"
    try:
        url = render_url(template, {"x": value, "y": other})
    except UpstreamError as exc:
        assert exc.kind == "bad-argument"
        return
    want = httpx.URL(base + "/")
    got = httpx.URL(url)
    assert (got.scheme, got.host, got.port) == (want.scheme, want.host, want.port)
    assert got.raw_path.count(b"/") == 4
    assert got.fragment == "" and got.query == b""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("../admin", "..%2Fadmin"),
        ("..%2Fadmin", "..%252Fadmin"),
        ("@evil.com", "%40evil.com"),
        ("a/b", "a%2Fb"),
        ("#frag", "%23frag"),
        ("?x=1", "%3Fx%3D1"),
        ("a\r\nX-Injected: 1", "a%0D%0AX-Injected%3A%201"),
        ("\\..\\", "%5C..%5C"),
        ("é", "%C3%A9"),
        ("...", "..."),
        (42, "42"),
        (True, "true"),
        (1.5, "1.5"),
    ],
)
def test_encoded_values(value: object, expected: str) -> None:
    assert (
        render_url("https://h.example/c/{id}", {"id": value}) == f"https://h.example/c/{expected}"
    )


@pytest.mark.parametrize(
    "value",
    ["", ".", "..", None, {"a": 1}, [1], math.nan, math.inf, b"raw", "\ud800", "a" * MAX_URL_CHARS],
)
def test_refused_values(value: object) -> None:
    with pytest.raises(UpstreamError) as info:
        render_url("https://h.example/c/{id}", {"id": value})
    assert info.value.kind == "bad-argument"
    assert "\n" not in info.value.reason


def test_dots_made_of_two_placeholders_are_refused() -> None:
    with pytest.raises(UpstreamError, match=re.escape("`.` or `..`")):
        render_url("https://h.example/c/{a}{b}/d", {"a": ".", "b": "."})


def test_missing_argument_and_host_placeholder() -> None:
    with pytest.raises(UpstreamError, match="`id` is missing"):
        render_url("https://h.example/c/{id}", {})
    with pytest.raises(UpstreamError, match="host"):
        render_url("https://{tenant}.example/c", {"tenant": "evil.com#"})


def test_query_placeholder_may_be_empty_or_dots() -> None:
    assert render_url("http://h/s?q={q}", {"q": ""}) == "http://h/s?q="
    assert render_url("http://h/s?q={q}", {"q": ".."}) == "http://h/s?q=.."


def test_placeholders() -> None:
    assert placeholders("http://h/{a}/{b}/{a}") == ("a", "b")


def test_transport_failures_classified_as_envoy_retry_on() -> None:
    """Failures no loopback socket can produce on demand (a connect timeout, a full pool)."""
    from mcpdsl.serve.upstream import _transport_failure

    connect_timeout = _transport_failure(httpx.ConnectTimeout("t"), 1.0)
    assert connect_timeout.kind == "connect" and not connect_timeout.sent
    assert connect_timeout.conditions == {"connect-failure", "5xx", "gateway-error", "reset"}
    refused = httpx.ConnectError("x")
    refused.__cause__ = ConnectionRefusedError(111, "refused")
    assert "refused-stream" in _transport_failure(refused, 1.0).conditions
    pool = _transport_failure(httpx.PoolTimeout("p"), 1.0)
    assert (pool.kind, pool.verdict, pool.conditions) == ("timeout", "none", frozenset())
    read = _transport_failure(httpx.ReadTimeout("r"), 0.25)
    assert (read.kind, read.reason, read.sent) == (
        "timeout",
        "upstream did not answer within 250ms",
        True,
    )
    assert _transport_failure(httpx.RemoteProtocolError("r"), 1.0).conditions == {
        "5xx",
        "gateway-error",
        "reset",
    }
