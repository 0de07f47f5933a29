#!/usr/bin/env python3
"""Walk through the MCP gateway of `mcpdsl serve`: agents reach tools only through policy.

    python examples/mcp-gateway/walkthrough.py [--port 8181] [--upstream-port 9181] [--workdir DIR]

What it does, on loopback only (README.md shows the output):

1. copies this example's tree into a work directory and puts a key made for this
   run in the copy's `keys/jwks.json` (the test IdP: its private half signs the
   agents' tokens with PyJWT and never leaves the work directory);
2. starts the demo upstream (`upstream.py`) and `mcpdsl serve` on the copy with
   `--mcp-resource http://127.0.0.1:PORT/mcp` and a decision log, the upstream
   credentials in the gateway's environment only;
3. with the official MCP SDK client (Streamable HTTP): a request without a token,
   the tool lists of two agents, a call with its mapped result, two denials with
   their reasons, invalid arguments, a step-up (the challenge, then success with
   a second-factor token) and a rate-limit hit; then asks the upstream what it saw;
4. stops the gateway and checks the decision log with `mcpdsl logs verify`.

Each step checks what it shows: the script exits 1 at the first step that does
not behave as described (and keeps the work directory to look at), 2 when it
cannot start (a port in use, a missing package), 0 when every step did.  It
stops the processes it started, whatever happens.

Why a copy with a fresh key rather than a committed private key: a signing key
in git is a credential anyone can use against a deployment that kept the demo
JWKS, and secret scanners rightly flag it.  The committed `keys/jwks.json` is
a public key whose private half was discarded, so the tree checks and builds
from a fresh clone, and nobody can mint tokens it accepts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ISSUER = "https://idp.helpdesk.example"  # the `issuer` of provider demo-idp (policy.mcp)
KID = "walkthrough"
GATEWAY_PORT = 8181
UPSTREAM_PORT = 9181  # the port of the `call` URLs in tools.mcp
SUPPORT, SALES = "support-agent", "sales-agent"
START_TIMEOUT = 60.0


class StepFailed(Exception):
    """A step did not behave as the walk-through says it does."""


class CannotStart(Exception):
    """The walk-through cannot run here (a port in use, a package missing)."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise StepFailed(what)


# ------------------------------------------------------------------ output


@dataclass
class Report:
    """Prints the steps; counts them."""

    steps: int = 0

    def step(self, title: str) -> None:
        self.steps += 1
        print(f"\n{self.steps}. {title}", flush=True)

    @staticmethod
    def line(text: str) -> None:
        print(f"   {text}", flush=True)

    @staticmethod
    def ok(text: str) -> None:
        print(f"   ok: {text}", flush=True)


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


# ------------------------------------------------------------------ ports and processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port(wanted: int, flag: str) -> int:
    """`wanted` if nothing listens there (0: any free port); else CannotStart."""
    if wanted == 0:
        return _free_port()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", wanted))
        except OSError:
            raise CannotStart(
                f"port {wanted} on 127.0.0.1 is in use: stop what listens there, "
                f"or pass {flag} 0 (any free port)"
            ) from None
    return wanted


@dataclass
class Processes:
    """The children this script started; `stop` ends them (SIGTERM, then SIGKILL)."""

    running: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        self.running.append((name, proc))

    def get(self, name: str) -> subprocess.Popen[bytes]:
        return next(p for n, p in self.running if n == name)

    def stop(self, name: str, timeout: float = 30.0) -> int:
        proc = self.get(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait(timeout)

    def stop_all(self) -> None:
        for name, _ in reversed(self.running):
            with contextlib.suppress(Exception):
                self.stop(name, 15)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Poll `url` until it answers 200; CannotStart if the process exits or time runs out."""
    import httpx

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CannotStart(f"{what} exited ({proc.returncode}):\n{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise CannotStart(f"{what} did not answer {url} within {START_TIMEOUT:g} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------ the test IdP


@dataclass(frozen=True)
class Idp:
    """The demo identity provider of this run: one RSA key, tokens for the gateway's resource."""

    key: Any
    resource: str

    @staticmethod
    def fresh(resource: str) -> Idp:
        from cryptography.hazmat.primitives.asymmetric import rsa

        return Idp(rsa.generate_private_key(65537, 2048), resource)

    def jwks(self) -> dict[str, Any]:
        import jwt

        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update({"kid": KID, "use": "sig", "alg": "RS256"})
        return {"keys": [public]}

    def private_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def token(self, agent: str, *, mfa: bool = False) -> str:
        """An agent's access token for the gateway; `amr` says whether a second factor was used."""
        import jwt

        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": agent,
            "aud": self.resource,
            "iat": now,
            "exp": now + 600,
            "amr": ["pwd", "mfa"] if mfa else ["pwd"],
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KID})


# ------------------------------------------------------------------ the MCP client


async def with_session(url: str, token: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """One MCP session of the official SDK client (Streamable HTTP) with this bearer token."""
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {"authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await work(session)


async def call(url: str, token: str, tool: str, arguments: dict[str, Any]) -> Any:
    async def work(session: Any) -> Any:
        return await session.call_tool(tool, arguments)

    return await with_session(url, token, work)


async def tool_names(url: str, token: str) -> list[str]:
    async def work(session: Any) -> list[str]:
        return [t.name for t in (await session.list_tools()).tools]

    return await with_session(url, token, work)


def _text(result: Any) -> str:
    return str(result.content[0].text) if result.content else ""


# ------------------------------------------------------------------ the steps


@dataclass
class Walk:
    """The steps, in order; each prints what it shows and checks it."""

    report: Report
    idp: Idp
    mcp_url: str
    upstream_url: str
    expected_log: list[tuple[str, str, str]] = field(default_factory=list)

    def expect_logged(self, agent: str, tool: str, result: str) -> None:
        self.expected_log.append((f"agent:{agent}", tool, result))

    def upstream_audit(self) -> dict[str, int]:
        import httpx

        return dict(httpx.get(self.upstream_url + "/_audit", timeout=10).json())

    async def no_token(self) -> None:
        import httpx

        self.report.step("A request without a token is refused (OAuth 2.1 resource server)")
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        headers = {"accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(self.mcp_url, json=body, headers=headers)
        challenge = response.headers.get("www-authenticate", "")
        self.report.line(f"POST /mcp without Authorization -> {response.status_code}")
        self.report.line(f"WWW-Authenticate: {challenge}")
        check(response.status_code == 401, f"expected 401, got {response.status_code}")
        check(
            challenge.startswith("Bearer ") and "resource_metadata=" in challenge,
            "the 401 carries no Bearer challenge with resource_metadata",
        )
        metadata = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
        async with httpx.AsyncClient(timeout=30) as client:
            document = (await client.get(metadata)).json()
        self.report.line(f"GET {metadata} -> {_compact(document)}")
        check(document.get("resource") == self.idp.resource, "metadata names another resource")
        check(document.get("authorization_servers") == [ISSUER], "metadata lists other issuers")
        self.report.ok("401 with the challenge; the metadata names the resource and the IdP")

    async def listing(self) -> None:
        self.report.step("tools/list: each agent sees only the tools it may call")
        support = await tool_names(self.mcp_url, self.idp.token(SUPPORT))
        sales = await tool_names(self.mcp_url, self.idp.token(SALES))
        self.report.line(f"{SUPPORT:<14} -> {', '.join(support)}")
        self.report.line(f"{SALES:<14} -> {', '.join(sales)}")
        check(support == ["crm.lookup", "kb.search", "tickets.create"], f"{SUPPORT}: {support}")
        check(sales == ["kb.search"], f"{SALES}: {sales}")
        self.report.ok("different lists, from the same policy")

    async def mapped_call(self) -> None:
        self.report.step("tools/call crm.lookup: the upstream's record, mapped")
        result = await call(
            self.mcp_url, self.idp.token(SUPPORT), "crm.lookup", {"customer_id": "c-1042"}
        )
        self.report.line(f'{SUPPORT} crm.lookup {{"customer_id": "c-1042"}}')
        self.report.line(f"-> {_compact(result.structured_content)}")
        check(not result.is_error, f"the call failed: {_text(result)}")
        want = {"id": "c-1042", "name": "Ada Lovelace", "tier": "gold", "open_tickets": 2}
        check(result.structured_content == want, f"expected {want}")
        check(json.loads(_text(result)) == want, "the text content is not the mapped JSON")
        check("notes" not in _text(result) and "@" not in _text(result), "unmapped fields leaked")
        self.expect_logged(SUPPORT, "crm.lookup", "ok")
        self.report.ok("four mapped fields; the record's email and notes stay upstream")

    async def denials(self) -> None:
        self.report.step("Denials: a tool error with the reason; the upstream is not called")
        before = self.upstream_audit()["requests"]
        sales = await call(
            self.mcp_url, self.idp.token(SALES), "crm.lookup", {"customer_id": "c-1042"}
        )
        self.report.line(f'{SALES} crm.lookup {{"customer_id": "c-1042"}} -> {_text(sales)}')
        vip = await call(
            self.mcp_url, self.idp.token(SUPPORT), "crm.lookup", {"customer_id": "vip-7"}
        )
        self.report.line(f'{SUPPORT} crm.lookup {{"customer_id": "vip-7"}} -> {_text(vip)}')
        check(sales.is_error and _text(sales) == "denied: no rule allows this request",
              f"{SALES}: {_text(sales)!r}")  # fmt: skip
        check(vip.is_error and _text(vip) == "denied by desk/vip", f"vip: {_text(vip)!r}")
        check(self.upstream_audit()["requests"] == before, "a denied call reached the upstream")
        self.expect_logged(SALES, "crm.lookup", "denied")
        self.expect_logged(SUPPORT, "crm.lookup", "denied")
        self.report.ok("no rule allows the sales agent; rule desk/vip reads args.customer_id")

    async def invalid(self) -> None:
        from mcp.shared.exceptions import MCPError

        self.report.step("Arguments are checked against the tool's input schema")

        async def work(session: Any) -> MCPError | None:
            try:  # caught inside the session: its task group would wrap it otherwise
                await session.call_tool("crm.lookup", {"customer_id": 1042})
            except MCPError as exc:
                return exc
            return None

        exc = await with_session(self.mcp_url, self.idp.token(SUPPORT), work)
        check(exc is not None, "a number for a string field was accepted")
        assert exc is not None
        self.report.line(
            f'crm.lookup {{"customer_id": 1042}} -> MCP error {exc.code}: {exc.message}'
        )
        check(exc.code == -32602, f"expected -32602 (invalid params), got {exc.code}")
        check(exc.data == {"field": "customer_id"}, f"the error names {exc.data}")
        self.report.ok("invalid params naming the field; refused before any decision")

    async def step_up(self) -> None:
        self.report.step("Step-up: tickets.create needs a second factor")
        args = {"customer_id": "c-1042", "subject": "Refund for order 7781"}
        weak = await call(self.mcp_url, self.idp.token(SUPPORT), "tickets.create", args)
        meta = weak.meta or {}
        challenge = str(meta.get("mcpdsl/www-authenticate", ""))
        self.report.line(f"{SUPPORT} (amr: pwd)      tickets.create -> {_text(weak)}")
        self.report.line(f"   challenge: {challenge}")
        check(weak.is_error and _text(weak) == "required: mfa", f"got {_text(weak)!r}")
        check('error="insufficient_user_authentication"' in challenge, "no RFC 9470 challenge")
        check('acr_values="mfa"' in challenge, "the challenge does not ask for mfa")
        strong = await call(self.mcp_url, self.idp.token(SUPPORT, mfa=True), "tickets.create", args)
        self.report.line(
            f"{SUPPORT} (amr: pwd, mfa) tickets.create -> {_compact(strong.structured_content)}"
        )
        want = {"ticket": "T-1001", "status": "OPEN", "priority": "normal"}
        check(not strong.is_error and strong.structured_content == want, f"expected {want}")
        self.expect_logged(SUPPORT, "tickets.create", "step_up")
        self.expect_logged(SUPPORT, "tickets.create", "ok")
        self.report.ok("the challenge, then the ticket once the token proves mfa")

    async def rate_limit(self) -> None:
        self.report.step("Rate limit: kb.search allows 3 at once (limit 60/h burst 3)")
        token = self.idp.token(SALES)

        async def four(session: Any) -> list[Any]:
            return [await session.call_tool("kb.search", {"query": "refund"}) for _ in range(4)]

        results = await with_session(self.mcp_url, token, four)
        for n, result in enumerate(results, 1):
            shown = _text(result) if result.is_error else _compact(result.structured_content)
            self.report.line(f'{SALES} kb.search {{"query": "refund"}} #{n} -> {shown}')
        check(
            all(not r.is_error and r.structured_content == {"query": "refund", "hits": 2}
                for r in results[:3]),
            "the first three searches should pass",
        )  # fmt: skip
        last = results[3]
        check(
            last.is_error and _text(last).startswith("rate limited by integration"),
            f"the fourth search should be limited, got {_text(last)!r}",
        )
        for _ in range(3):
            self.expect_logged(SALES, "kb.search", "ok")
        self.expect_logged(SALES, "kb.search", "limited")
        self.report.ok("the fourth call is refused before it reaches the upstream")

    def upstream_saw(self) -> None:
        self.report.step("What the upstream saw")
        audit = self.upstream_audit()
        self.report.line(_compact(audit))
        ok_calls = sum(1 for _, _, result in self.expected_log if result == "ok")
        check(audit["requests"] == ok_calls, f"expected {ok_calls} upstream requests")
        check(audit["foreign_credentials"] == 0, "an agent's credential reached the upstream")
        self.report.ok(f"{ok_calls} requests, one per allowed call; none carried an agent's token")

    def decision_log(self, log: Path, env: dict[str, str]) -> None:
        self.report.step("The decision log: one line per call, hash-chained")
        lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if x]
        calls = [x for x in lines if x.get("transport") == "mcp"]
        for x in calls:
            self.report.line(f"{x['principal']:<20} {x['tool']:<15} {x['result']}")
        got = [(x["principal"], x["tool"], x["result"]) for x in calls]
        check(got == self.expected_log, f"expected {self.expected_log}")
        check(all(x.get("args_digest", "").startswith("sha256:") for x in calls),
              "a line lacks the argument digest")  # fmt: skip
        verify = subprocess.run(
            [sys.executable, "-m", "mcpdsl", "logs", "verify", str(log)],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        self.report.line(f"$ mcpdsl logs verify {log.name}")
        for text in (verify.stdout + verify.stderr).strip().splitlines():
            self.report.line(f"  {text}")
        check(verify.returncode == 0, f"mcpdsl logs verify exited {verify.returncode}")
        self.report.ok("the chain verifies")


# ------------------------------------------------------------------ setup and main


def prepare_tree(work: Path, idp: Idp, upstream_port: int) -> Path:
    """A copy of the example's policy files, with this run's JWKS (and upstream port)."""
    tree = work / "tree"
    (tree / "keys").mkdir(parents=True)
    for source in sorted(HERE.glob("*.mcp")):
        text = source.read_text(encoding="utf-8")
        if upstream_port != UPSTREAM_PORT:
            text = text.replace(f"127.0.0.1:{UPSTREAM_PORT}/", f"127.0.0.1:{upstream_port}/")
        (tree / source.name).write_text(text, encoding="utf-8")
    (tree / "keys" / "jwks.json").write_text(json.dumps(idp.jwks(), indent=2) + "\n")
    key = work / "demo-signing-key.pem"  # test material of this run only
    key.write_bytes(idp.private_pem())
    key.chmod(0o600)
    return tree


def _reason(exc: BaseException) -> str:
    """The innermost error of an exception group (the SDK's task groups wrap them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, StepFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _imports() -> None:
    """Fail early, with what to install, if a package the walk-through uses is missing."""
    missing = []
    for module in ("mcp", "httpx", "httpx2", "jwt", "cryptography", "uvicorn", "starlette"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise CannotStart(
            f"missing Python packages ({', '.join(missing)}): install mcpdsl first, "
            "`pip install .` from the repository root"
        )


async def _walk(walk: Walk) -> None:
    await walk.no_token()
    await walk.listing()
    await walk.mapped_call()
    await walk.denials()
    await walk.invalid()
    await walk.step_up()
    await walk.rate_limit()


@contextlib.contextmanager
def _workdir(given: str | None) -> Iterator[tuple[Path, Callable[[], None]]]:
    """The work directory and a function that keeps it (a temporary one is removed otherwise)."""
    if given is not None:
        path = Path(given).resolve()
        if path.exists() and any(path.iterdir()):
            raise CannotStart(f"--workdir {given}: not empty")
        path.mkdir(parents=True, exist_ok=True)
        yield path, lambda: None
        return
    path = Path(tempfile.mkdtemp(prefix="mcp-gateway-walk."))
    keep = [False]
    try:
        yield path, lambda: keep.__setitem__(0, True)
    finally:
        if not keep[0]:
            shutil.rmtree(path, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    _imports()
    gateway_port = _port(args.port, "--port")
    upstream_port = _port(args.upstream_port, "--upstream-port")
    resource = f"http://127.0.0.1:{gateway_port}/mcp"
    report = Report()
    processes = Processes()
    with _workdir(args.workdir) as (work, keep):
        try:
            idp = Idp.fresh(resource)
            tree = prepare_tree(work, idp, upstream_port)
            log = work / "decisions.log"
            env = dict(os.environ)
            env.setdefault("PYTHONUNBUFFERED", "1")
            secrets_env = {
                "DEMO_CRM_TOKEN": secrets.token_urlsafe(24),
                "DEMO_TICKETS_KEY": secrets.token_urlsafe(24),
            }
            upstream_url = f"http://127.0.0.1:{upstream_port}"
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            print("MCP gateway walk-through (examples/mcp-gateway)")
            print(f"   work directory  {work}")
            print("   demo IdP        a fresh RS256 key; its JWKS in tree/keys/jwks.json")
            print(f"   upstream        {upstream_url}  (upstream.py: CRM, tickets, knowledge base)")
            print(f"   gateway         {gateway_url}/mcp  (mcpdsl serve, resource {resource})")
            print("   secrets         DEMO_CRM_TOKEN, DEMO_TICKETS_KEY: the gateway's environment")
            if upstream_port != UPSTREAM_PORT:
                print(f"   note            the copy's `call` URLs use port {upstream_port}")
            processes.start(
                "upstream",
                [sys.executable, str(HERE / "upstream.py"), "--port", str(upstream_port)],
                {**env, **secrets_env},
                work / "upstream.out",
            )
            _wait_http(upstream_url + "/health", processes.get("upstream"),
                       work / "upstream.out", "the demo upstream")  # fmt: skip
            processes.start(
                "gateway",
                [
                    sys.executable, "-m", "mcpdsl", "serve", str(tree),
                    "--addr", f"127.0.0.1:{gateway_port}", "--grpc-addr", "127.0.0.1:0",
                    "--mcp-resource", resource, "--decision-log", str(log), "--no-watch",
                ],
                {**env, **secrets_env},
                work / "gateway.out",
            )  # fmt: skip
            _wait_http(gateway_url + "/ready", processes.get("gateway"),
                       work / "gateway.out", "mcpdsl serve")  # fmt: skip
            walk = Walk(report, idp, resource, upstream_url)
            asyncio.run(_walk(walk))
            walk.upstream_saw()
            code = processes.stop("gateway")  # flushes and closes the decision log
            check(code == 0, f"mcpdsl serve exited {code}:\n{_tail(work / 'gateway.out')}")
            walk.decision_log(log, env)
        except CannotStart:
            keep()
            print(f"(the work directory is kept: {work})", file=sys.stderr)
            raise
        except Exception as exc:  # StepFailed, or anything unexpected: the step it hit failed
            keep()
            print(f"\nFAILED at step {report.steps}: {_reason(exc)}", file=sys.stderr)
            print(f"(the work directory is kept: {work})", file=sys.stderr)
            return 1
        finally:
            processes.stop_all()
        print(f"\nAll {report.steps} steps behaved as described.")
        if args.workdir:
            print(f"The work directory ({work}) keeps the tree, the decision log and the key.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Walk through the MCP gateway of `mcpdsl serve` (loopback only)."
    )
    parser.add_argument("--port", type=int, default=GATEWAY_PORT,
                        help="gateway port on 127.0.0.1 (0: any free port)")  # fmt: skip
    parser.add_argument("--upstream-port", type=int, default=UPSTREAM_PORT,
                        help="demo upstream port on 127.0.0.1 (0: any free port)")  # fmt: skip
    parser.add_argument("--workdir", default=None,
                        help="keep the tree copy, logs and the demo key here (new or empty)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        return run(args)
    except CannotStart as exc:
        print(f"walkthrough.py: cannot start: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
