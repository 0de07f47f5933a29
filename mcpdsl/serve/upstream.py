"""How the MCP gateway calls a REST integration's upstream (`call METHOD "URL"`).

One `Upstreams` per gateway process holds the one shared `httpx.AsyncClient`
(HTTP/1.1, `httpx.Limits(max_connections=...)`, `trust_env=False` so no proxy or
certificate bundle comes from the environment, redirects never followed) and one
circuit breaker per integration.  `call(integration, args)` answers the parsed
JSON body, `$` of the integration's `map`, or raises `UpstreamError` whose
`reason` is one line safe to show the MCP client: never the upstream's body,
never a credential, never a stack trace.  docs/mcp-upstreams.md is the user's
account of the same rules.

**Arguments.**  Every `{name}` of the URL template is replaced by the argument
`name` percent-encoded with no safe character at all (`/ ? # @ % \\ : ;` and
CR/LF included), so an argument fills exactly one path segment (or one query
value) and can never change the scheme, host, port, path segments, query or
fragment; non-scalar values, empty path values and values that make a segment
`.` or `..` are refused (`bad-argument`), and the rendered URL's scheme, host
and port are checked against the template's after rendering (defence in depth:
the encoding alone already guarantees it).  Arguments that fill no placeholder
travel as query parameters for GET, HEAD, DELETE and OPTIONS (a list of scalars
repeats the parameter, an object or a nested list is sent as compact JSON) and
as the JSON object body for POST, PUT and PATCH.

**Headers.**  Only ours: `accept: application/json`, `accept-encoding:
identity`, `user-agent: mcpdsl/<version>`, `content-type` with a body, and the
integration's `auth` header, whose value is read from its declared secret
source (an environment variable, or a file read at call time so a rotated
secret is used without a restart).  Nothing of the MCP client's request, its
`Authorization` least of all, is a parameter of `call`, so nothing of it can
reach the upstream.

**Time.**  Each attempt is bounded by `per try timeout` (else the `timeout`),
the whole call with its retries and pauses by `timeout` (default
`DEFAULT_TIMEOUT`).  An attempt's bound is a real wall-clock bound on the
connection, request and the whole body (a slowly dripping upstream cannot
stretch it); the injected `clock` measures the deadline, `elapsed_ms` and the
breaker; the injected `sleep` waits between retries.

**Retries** follow Envoy's `retry_on` names (what the same clause compiles to
for a gateway route): `5xx` a 5xx answer or no answer at all (connect failure,
reset, per-try timeout); `gateway-error` 502/503/504 or no answer; `reset` no
answer (reset, read error, per-try timeout); `connect-failure` a failed or
timed-out connect; `retriable-4xx` 409; `refused-stream` a refused connection.
A request that may have reached the upstream is retried only when its method
is idempotent (GET, HEAD, PUT, DELETE, OPTIONS) or the integration says
`idempotent`; a failed connect never sent anything and is retried for any
method.  The n-th retry waits a random time in `[0, min(max, min * 2**(n-1)))`
(Envoy's full-jitter backoff; `backoff MIN..MAX`, default 25ms..250ms) drawn
from the injected `rng`, and never past the deadline.

**Breaker** (`breaker N failures open T`, `mcpdsl.serve.breaker`): N failed
calls in a row (after their retries; failed = timeout, connect failure, reset,
5xx) open the circuit for T seconds; then one probe is let through.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

from mcpdsl._version import __version__
from mcpdsl.ir import model as m
from mcpdsl.ir.paths import PLACEHOLDER
from mcpdsl.serve import breaker as br

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_TIMEOUT",
    "Kind",
    "UpstreamError",
    "UpstreamResult",
    "Upstreams",
    "render_url",
]

#: The whole call's deadline when the integration declares no `timeout` (seconds).
DEFAULT_TIMEOUT = 10.0
#: `backoff` when a `retry` declares none: Envoy's default base and cap (seconds).
DEFAULT_BACKOFF = (0.025, 0.25)
#: A secret file larger than this is refused rather than read into a header.
MAX_SECRET_BYTES = 64 * 1024
#: A rendered URL longer than this is refused: most servers answer 414 beyond 8 KiB.
MAX_URL_CHARS = 8 * 1024

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
QUERY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
#: The conditions a `retry` without `on [...]` retries on (as the language reference says).
DEFAULT_RETRY_ON = ("5xx",)

Kind = Literal[
    "timeout",
    "connect",
    "status",
    "breaker-open",
    "body-too-large",
    "not-json",
    "bad-argument",
    "secret-unavailable",
    "redirect",
]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class UpstreamResult:
    status: int  # HTTP status of the final attempt
    payload: Any  # parsed JSON body (the `$` of the integration's `map`); None for 204
    attempts: int
    elapsed_ms: float


class UpstreamError(Exception):
    """A call that produced no usable answer.

    `kind` is stable (the gateway maps it to metrics and MCP tool errors);
    `reason` is one line for the MCP client; `detail` is for the operator's log
    only (it may name the environment variable or file of a missing secret,
    never its value).
    """

    def __init__(
        self,
        kind: Kind,
        reason: str,
        *,
        status: int | None = None,
        attempts: int = 0,
        detail: str = "",
    ) -> None:
        super().__init__(reason)
        self.kind: Kind = kind
        self.reason = reason
        self.status = status
        self.attempts = attempts
        self.detail = detail

    def __str__(self) -> str:
        return self.reason


# ------------------------------------------------------------------ the URL


def _bad(reason: str) -> UpstreamError:
    return UpstreamError("bad-argument", reason)


def _scalar(name: str, value: Any) -> str:
    """The text of one scalar argument (JSON spelling for booleans and numbers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad(f"argument `{name}` is not a finite number")
        return json.dumps(value)
    if isinstance(value, str):
        return value
    raise _bad(f"argument `{name}` must be a string, number or boolean")


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    port = parsed.port if parsed.port is not None else _DEFAULT_PORTS.get(parsed.scheme)
    return parsed.scheme, parsed.host, port


def placeholders(template: str) -> tuple[str, ...]:
    """The argument names the URL template reads, in order (a name once)."""
    return tuple(dict.fromkeys(h[1:-1] for h in PLACEHOLDER.findall(template)))


def render_url(template: str, args: Mapping[str, Any]) -> str:
    """The template with every `{name}` replaced by the percent-encoded argument.

    Pure.  Raises `UpstreamError(kind="bad-argument")` for a missing, non-scalar
    or non-finite argument, an empty path value, a value that turns a path
    segment into `.` or `..` (a client or server would normalise it away), a
    URL longer than `MAX_URL_CHARS`, and - never for a policy that passed
    `mcpdsl check` - a template with a placeholder in its scheme or authority.

    >>> render_url("https://crm.example/api/customers/{id}", {"id": "../admin?x=1#f"})
    'https://crm.example/api/customers/..%2Fadmin%3Fx%3D1%23f'
    """
    scheme_end = template.find("://")
    if scheme_end < 0:
        raise _bad("the tool's upstream URL is not absolute")
    authority_end = len(template)
    for sep in "/?#":
        at = template.find(sep, scheme_end + 3)
        if at >= 0:
            authority_end = min(authority_end, at)
    query_start = template.find("?", authority_end)
    if query_start < 0:
        query_start = len(template)
    out: list[str] = []
    last = 0
    for hole in PLACEHOLDER.finditer(template):
        name = hole.group()[1:-1]
        if hole.start() < authority_end:
            raise _bad("the tool's upstream URL has a placeholder in its host")
        if name not in args:
            raise _bad(f"argument `{name}` is missing")
        text = _scalar(name, args[name])
        in_path = hole.start() < query_start
        if in_path and text == "":
            raise _bad(f"argument `{name}` is empty")
        try:
            encoded = quote(text, safe="", encoding="utf-8", errors="strict")
        except UnicodeEncodeError:
            raise _bad(f"argument `{name}` is not valid Unicode text") from None
        out.append(template[last : hole.start()])
        out.append(encoded)
        last = hole.end()
    out.append(template[last:])
    rendered = "".join(out)
    if len(rendered) > MAX_URL_CHARS:
        raise _bad(f"the arguments make a URL longer than {MAX_URL_CHARS} characters")
    _check_rendered(template, rendered)
    return rendered


def _path_of(url: str) -> str:
    after = url[url.find("://") + 3 :]
    start = min((i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after))
    rest = after[start:]
    return re.split(r"[?#]", rest, maxsplit=1)[0]


def _check_rendered(template: str, rendered: str) -> None:
    """Defence in depth: the rendered URL goes to the template's origin, same segments."""
    segments = _path_of(rendered).split("/")
    if any(seg in (".", "..") for seg in segments):
        raise _bad("the arguments make a path segment `.` or `..`")
    try:
        want = _origin(PLACEHOLDER.sub("x", template))
        got = _origin(rendered)
        raw_path = httpx.URL(rendered).raw_path.split(b"?", 1)[0]
    except (httpx.InvalidURL, ValueError, TypeError):
        raise _bad("the arguments do not make a valid URL") from None
    if got != want:
        raise _bad("the arguments would change the upstream's origin")
    if raw_path.count(b"/") != _path_of(template).count("/"):
        raise _bad("the arguments would change the upstream path")


# ---------------------------------------------------------- query and body


def _query(rest: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Arguments as query parameters: sorted by name, absent (None) ones left out."""
    params: list[tuple[str, str]] = []
    for name in sorted(rest):
        value = rest[name]
        if value is None:
            continue
        if isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
            params.extend((name, _scalar(name, v)) for v in value)
        elif isinstance(value, (str, int, float, bool)):
            params.append((name, _scalar(name, value)))
        else:
            params.append((name, _compact(name, value).decode("utf-8")))
    return tuple(params)


def _compact(name: str, value: Any) -> bytes:
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise _bad(f"argument `{name}` is not JSON") from None
    return text.encode("utf-8")


def _body(rest: Mapping[str, Any]) -> bytes:
    return _compact("body", dict(rest))


# ----------------------------------------------------------------- answers


class _TooLarge(Exception):
    pass


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys; ValueError otherwise.

    Deep nesting (RecursionError) and integers beyond Python's digit limit are
    ValueError too: the caller turns every one into `not-json`.
    """
    try:
        return json.loads(
            raw.decode("utf-8"),
            parse_constant=_refuse_constant,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, RecursionError, TypeError) as exc:
        raise ValueError(type(exc).__name__) from None


def _seconds(value: float) -> str:
    return f"{value:g}s" if value >= 1 else f"{value * 1000:g}ms"


@dataclass(frozen=True)
class _Failure:
    """One attempt that produced no usable answer, and what may follow from it."""

    kind: Kind
    reason: str
    status: int | None = None
    conditions: frozenset[str] = frozenset()  # the `retry on` names it matches
    sent: bool = True  # the request may have reached the upstream
    verdict: Literal["ok", "fail", "none"] = "fail"  # for the breaker

    def error(self, attempts: int) -> UpstreamError:
        return UpstreamError(self.kind, self.reason, status=self.status, attempts=attempts)


_NO_ANSWER = frozenset({"5xx", "gateway-error", "reset"})


def _status_failure(status: int) -> _Failure:
    conditions: set[str] = set()
    if 500 <= status <= 599:
        conditions.add("5xx")
    if status in (502, 503, 504):
        conditions.add("gateway-error")
    if status == 409:
        conditions.add("retriable-4xx")
    return _Failure(
        "status",
        f"upstream answered {status}",
        status=status,
        conditions=frozenset(conditions),
        verdict="fail" if status >= 500 else "ok",
    )


def _refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _transport_failure(exc: Exception, budget: float) -> _Failure:
    """What an exception of one attempt means (retry conditions, breaker verdict)."""
    if isinstance(exc, httpx.PoolTimeout):
        return _Failure("timeout", "too many upstream calls in flight", sent=False, verdict="none")
    if isinstance(exc, httpx.ConnectTimeout):
        return _Failure(
            "connect",
            "could not connect to the upstream (timed out)",
            conditions=_NO_ANSWER | {"connect-failure"},
            sent=False,
        )
    if isinstance(exc, httpx.ConnectError):
        refused = _refused(exc)
        return _Failure(
            "connect",
            "the upstream refused the connection"
            if refused
            else "could not connect to the upstream",
            conditions=_NO_ANSWER
            | {"connect-failure"}
            | ({"refused-stream"} if refused else set()),
            sent=False,
        )
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return _Failure(
            "timeout", f"upstream did not answer within {_seconds(budget)}", conditions=_NO_ANSWER
        )
    if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
        return _Failure("connect", "the upstream connection was reset", conditions=_NO_ANSWER)
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return _Failure("bad-argument", "the arguments do not make a valid URL", verdict="none")
    return _Failure("connect", "the upstream call failed", verdict="none")


# --------------------------------------------------------------- the caller

OnResult = Callable[[str, str, float], None]


class Upstreams:
    """The gateway's calls to REST upstreams: one client, one breaker per integration.

    `rng` draws the backoff jitter (inject a seeded `random.Random` in tests);
    `on_result(integration, outcome, elapsed_seconds)` is called after every call
    with outcome "ok" or the error's kind, and `counts()` keeps the same tally.
    An injected `client` is used as is (its owner closes it and chooses its
    limits, proxies and TLS); without one, `Upstreams` makes and closes its own.
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_body_bytes: int = 1 << 20,
        max_connections: int = 100,
        rng: random.Random | None = None,
        on_result: OnResult | None = None,
    ) -> None:
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
            ),
            http1=True,
            http2=False,
            trust_env=False,
            follow_redirects=False,
        )
        self._env: Mapping[str, str] = os.environ if env is None else env
        self._clock = clock
        self._sleep = sleep
        self._max_body = max_body_bytes
        self._rng = rng or random.Random()
        self._on_result = on_result
        self._breakers: dict[str, br.BreakerState] = {}
        self._open_for: dict[str, float] = {}
        self._counts: Counter[tuple[str, str]] = Counter()

    async def __aenter__(self) -> Upstreams:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    # ------------------------------------------------------------ observing

    def counts(self) -> dict[tuple[str, str], int]:
        """Calls so far by (integration, outcome), sorted; outcome "ok" or an error kind."""
        return dict(sorted(self._counts.items()))

    def breaker_state(self, integration_name: str) -> Literal["closed", "open", "half-open"]:
        """The breaker of `package.name` (or of the only integration called `name`) now."""
        key = integration_name
        if key not in self._breakers:
            matches = [k for k in self._breakers if k.rsplit(".", 1)[-1] == integration_name]
            if len(matches) != 1:
                return "closed"
            key = matches[0]
        return br.state_at(self._breakers[key], self._clock(), self._open_for[key])

    # --------------------------------------------------------------- calling

    async def call(self, integration: m.Integration, args: Mapping[str, Any]) -> UpstreamResult:
        """Call the integration's upstream with the tool arguments `args`.

        Raises `UpstreamError` for every failure; nothing else escapes but
        cancellation.
        """
        start = self._clock()
        try:
            result = await self._call(integration, args, start)
        except UpstreamError as exc:
            self._record(integration.qualified, exc.kind, start)
            raise
        self._record(integration.qualified, "ok", start)
        return result

    def _record(self, name: str, outcome: str, start: float) -> None:
        self._counts[(name, outcome)] += 1
        if self._on_result is not None:
            self._on_result(name, outcome, self._clock() - start)

    async def _call(
        self, integration: m.Integration, args: Mapping[str, Any], start: float
    ) -> UpstreamResult:
        if integration.upstream != "rest":
            raise _bad("this tool has no REST upstream")
        if any(not isinstance(k, str) for k in args):
            raise _bad("argument names must be strings")
        method = integration.method.upper()
        url = render_url(integration.url, args)
        used = set(placeholders(integration.url))
        rest = {k: v for k, v in args.items() if k not in used}
        params = _query(rest) if method in QUERY_METHODS else None
        content = None if method in QUERY_METHODS else _body(rest)
        headers = {
            "accept": "application/json",
            "accept-encoding": "identity",
            "user-agent": f"mcpdsl/{__version__}",
        }
        if content is not None:
            headers["content-type"] = "application/json"
        if integration.auth is not None:
            name, value = self._credential(integration.auth)
            headers[name] = value

        key = integration.qualified
        ticket: br.Ticket | None = None
        if integration.breaker is not None:
            open_for = float(integration.breaker.open_for)
            self._open_for[key] = open_for
            state, ticket = br.admit(self._breakers.get(key, br.BreakerState()), start, open_for)
            self._breakers[key] = state
            if ticket is None:
                raise UpstreamError(
                    "breaker-open", "the upstream is failing; calls are paused (circuit open)"
                )
        try:
            outcome, attempts = await self._attempts(
                integration, method, url, params, content, headers, start
            )
        except BaseException:
            if ticket is not None:
                self._breakers[key] = br.abandon(self._breakers[key], ticket)
            raise
        if ticket is not None and integration.breaker is not None:
            verdict = "ok" if isinstance(outcome, tuple) else outcome.verdict
            if verdict == "none":
                self._breakers[key] = br.abandon(self._breakers[key], ticket)
            else:
                self._breakers[key] = br.settle(
                    self._breakers[key],
                    ticket,
                    ok=verdict == "ok",
                    now=self._clock(),
                    failures=integration.breaker.failures,
                    open_for=float(integration.breaker.open_for),
                )
        if isinstance(outcome, _Failure):
            raise outcome.error(attempts)
        status, payload = outcome
        return UpstreamResult(
            status=status,
            payload=payload,
            attempts=attempts,
            elapsed_ms=(self._clock() - start) * 1000.0,
        )

    def _credential(self, auth: m.UpstreamAuth) -> tuple[str, str]:
        """The auth header (name, value) from the declared secret; never logged."""
        secret = auth.secret
        unavailable = "the upstream credential is not available"
        if secret.source == "env":
            value = self._env.get(secret.name)
            if value is None:
                raise UpstreamError(
                    "secret-unavailable", unavailable, detail=f"env `{secret.name}` is not set"
                )
        else:
            try:
                with open(secret.name, "rb") as fh:
                    raw = fh.read(MAX_SECRET_BYTES + 1)
            except OSError as exc:
                raise UpstreamError(
                    "secret-unavailable",
                    unavailable,
                    detail=f"file `{secret.name}` cannot be read ({exc.strerror or 'error'})",
                ) from None
            if len(raw) > MAX_SECRET_BYTES:
                raise UpstreamError(
                    "secret-unavailable",
                    unavailable,
                    detail=f"file `{secret.name}` is larger than {MAX_SECRET_BYTES} bytes",
                )
            try:
                value = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise UpstreamError(
                    "secret-unavailable", unavailable, detail=f"file `{secret.name}` is not UTF-8"
                ) from None
        where = f"{secret.source} `{secret.name}`"
        if not _HEADER_VALUE.fullmatch(value):
            raise UpstreamError(
                "secret-unavailable",
                unavailable,
                detail=f"{where} is empty or not a valid header value",
            )
        header = auth.header.lower()
        if not _TOKEN.fullmatch(header):
            raise UpstreamError(
                "secret-unavailable", unavailable, detail=f"`{header}` is not a header name"
            )
        return header, (f"Bearer {value}" if auth.scheme == "bearer" else value)

    async def _attempts(
        self,
        integration: m.Integration,
        method: str,
        url: str,
        params: tuple[tuple[str, str], ...] | None,
        content: bytes | None,
        headers: dict[str, str],
        start: float,
    ) -> tuple[tuple[int, Any] | _Failure, int]:
        """Attempts until an answer, a failure not to retry, or the deadline."""
        retry = integration.retry
        retries = retry.attempts if retry is not None else 0
        on = frozenset((retry.on or DEFAULT_RETRY_ON) if retry is not None else ())
        idempotent = (
            integration.idempotent
            if integration.idempotent is not None
            else method in IDEMPOTENT_METHODS
        )
        total = float(integration.timeout) if integration.timeout is not None else DEFAULT_TIMEOUT
        per_try = (
            float(retry.per_try_timeout)
            if retry is not None and retry.per_try_timeout is not None
            else total
        )
        deadline = start + total
        attempt = 0
        while True:
            attempt += 1
            budget = min(per_try, deadline - self._clock())
            if budget <= 0:
                return _Failure(
                    "timeout", f"upstream did not answer within {_seconds(total)}"
                ), attempt - 1
            outcome = await self._attempt(method, url, params, content, headers, budget)
            if not isinstance(outcome, _Failure):
                return outcome, attempt
            if (
                attempt > retries
                or not (outcome.conditions & on)
                or (outcome.sent and not idempotent)
            ):
                return outcome, attempt
            pause = self._backoff(retry, attempt)
            if self._clock() + pause >= deadline:
                return outcome, attempt
            await self._sleep(pause)

    def _backoff(self, retry: m.Retry | None, n: int) -> float:
        """The pause before the n-th retry: full jitter below an exponential ceiling."""
        low, high = DEFAULT_BACKOFF
        if retry is not None and retry.backoff_min is not None:
            low = float(retry.backoff_min)
            high = float(retry.backoff_max) if retry.backoff_max is not None else low * 10
        ceiling = min(max(high, low), low * 2 ** min(n - 1, 30))
        return self._rng.uniform(0.0, ceiling)

    async def _attempt(
        self,
        method: str,
        url: str,
        params: tuple[tuple[str, str], ...] | None,
        content: bytes | None,
        headers: dict[str, str],
        budget: float,
    ) -> tuple[int, Any] | _Failure:
        """One request, bounded by `budget` seconds from connect to the last body byte."""
        try:
            async with asyncio.timeout(budget):
                return await self._exchange(method, url, params, content, headers, budget)
        except _TooLarge:
            return _Failure(
                "body-too-large",
                f"upstream answer is larger than {self._max_body} bytes",
                verdict="ok",
            )
        except (TimeoutError, httpx.HTTPError) as exc:
            return _transport_failure(exc, budget)

    async def _exchange(
        self,
        method: str,
        url: str,
        params: tuple[tuple[str, str], ...] | None,
        content: bytes | None,
        headers: dict[str, str],
        budget: float,
    ) -> tuple[int, Any] | _Failure:
        async with self._client.stream(
            method,
            url,
            params=params or None,
            content=content,
            headers=headers,
            timeout=httpx.Timeout(budget),
            follow_redirects=False,
        ) as response:
            status = response.status_code
            if 300 <= status <= 399:
                return _Failure(
                    "redirect",
                    f"upstream answered {status} (redirects are not followed)",
                    status=status,
                    verdict="ok",
                )
            if not 200 <= status <= 299:
                return _status_failure(status)
            raw = await self._read(response)
        if not raw and status in (204, 205):
            return status, None
        try:
            return status, parse_json(raw)
        except ValueError:
            return _Failure(
                "not-json",
                f"upstream answered {status} with a body that is not JSON",
                status=status,
                verdict="ok",
            )

    async def _read(self, response: httpx.Response) -> bytes:
        """The body, at most `max_body_bytes`: beyond, stop reading (the connection closes)."""
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > self._max_body:
            raise _TooLarge
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_body:
                raise _TooLarge
        return bytes(body)
