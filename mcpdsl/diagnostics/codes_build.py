"""The B01xx codes: what `mcpdsl build` (a target or the optimiser) could not express.

Kept apart from the front end's table (`codes.py`, which merges both) so that
each stays readable.  `strict=True` marks a clause that is not enforced, was
dropped or is narrowed: a warning, an error under `mcpdsl build --strict`.
"""

from __future__ import annotations

from mcpdsl.diagnostics.model import Code, Severity

_W = Severity.WARNING
_I = Severity.INFO

BUILD_TABLE: tuple[Code, ...] = (
    Code(
        "B0101",
        _W,
        "environment variable dropped",
        "A name in the service's `env` block is not a valid environment variable name for\n"
        "Kubernetes (`[A-Za-z_][A-Za-z0-9_.-]*`); the container would be rejected, so the\n"
        "variable is left out of the Deployment. Rename the variable.\n",
        strict=True,
    ),
    Code(
        "B0102",
        _W,
        "region cannot be a node label",
        "The region is not a valid Kubernetes label value, so no node can carry it and the\n"
        "pods placed there can never be scheduled. The constraint is still emitted (dropping\n"
        "it would let the pods run anywhere): this fails closed. Use a region name made of\n"
        "letters, digits, `-`, `_` and `.`, at most 63 characters.\n",
        strict=True,
    ),
    Code(
        "B0103",
        _W,
        "tier has no priority class",
        "The pool's tier is not in the priority table (critical, standard, batch, ...), so its\n"
        "PriorityClass gets the default priority instead of one chosen for the tier.\n",
        strict=True,
    ),
    Code(
        "B0104",
        _W,
        "reservation dropped",
        "The reservation asks for GPUs the pool's nodes do not have, so no balloon\n"
        "Deployment can hold it and nothing is reserved.\n",
        strict=True,
    ),
    Code(
        "B0105",
        _W,
        "stateful service compiled as a deployment",
        "Retired: no longer reported. A `stateful` service now becomes a StatefulSet with a\n"
        "headless governing Service and, with a `storage` clause, one volume per pod. Older\n"
        "builds compiled it to a Deployment with the Recreate strategy and said so here.\n",
        strict=True,
    ),
    Code(
        "B0106",
        _W,
        "scale to zero narrowed to one replica",
        "The scale allows 0 replicas, but it compiles to an HPA (no trigger KEDA can scale\n"
        "from zero on), and an HPA keeps at least one replica: `minReplicas` is 1.\n",
        strict=True,
    ),
    Code(
        "B0107",
        _W,
        "window cap not enforced by the cluster",
        "A `during` window sets a maximum other than the scale's. KEDA has one maximum per\n"
        "ScaledObject, so the cluster keeps the scale's maximum inside the window too, and so\n"
        "does `Engine.scale`, which computes what the cluster does. Write the scale's maximum\n"
        "in the window, or change the scale's maximum.\n",
        strict=True,
    ),
    Code(
        "B0108",
        _W,
        "prediction dropped",
        "The scale predicts a metric it has no per-pod `target` for, so the prediction has no\n"
        "threshold and no trigger is compiled for it. Add a `target` for the metric.\n",
        strict=True,
    ),
    Code(
        "B0109",
        _I,
        "scale compiled to a plain hpa",
        "The scale asked for KEDA features (windows, prediction or zero replicas) but none of\n"
        "them produced a trigger KEDA can carry, so a HorizontalPodAutoscaler is emitted.\n",
    ),
    Code(
        "B0110",
        _W,
        "rate limit dropped",
        "`limit ... per KEY` buckets requests by KEY, but Envoy's local rate limit can only\n"
        "bucket by the keys the gateway sees (`client-ip`). A limit per any other key (for\n"
        "example `per team`) is not applied at all: the route or gateway has no limit.\n"
        "Use `per client-ip`, or no key (one bucket for everyone).  The front end refuses\n"
        "such keys in `.mcp` sources (E0315); this code remains for an IR built otherwise.\n",
        strict=True,
    ),
    Code(
        "B0111",
        _W,
        "rate limit shared across routes",
        "Several routes reach the same upstream; Envoy keeps one token bucket per route, so\n"
        "together they admit up to that many times the upstream's limit.\n",
        strict=True,
    ),
    Code(
        "B0112",
        _W,
        "route path not rewritten",
        "The route's path cannot be mapped onto the integration's URL template, so requests\n"
        "are forwarded with their path unchanged. Add a `rewrite` to the route.\n",
        strict=True,
    ),
    Code(
        "B0113",
        _W,
        "session affinity dropped",
        "The balance declares an affinity, but either its strategy is not ring-hash or\n"
        "maglev (only they hash) or its key cannot be a header or cookie name, so Envoy gets\n"
        "no hash policy and requests are not sticky.\n",
        strict=True,
    ),
    Code(
        "B0114",
        _W,
        "gateway host dropped",
        "The host cannot be an Envoy virtual host domain (it holds characters a Host header\n"
        "cannot carry), so it is skipped; a gateway left without hosts answers for any host.\n",
        strict=True,
    ),
    Code(
        "B0115",
        _I,
        "health check path percent-encoded",
        "Control characters in an HTTP health check path are sent percent-encoded.\n",
    ),
    Code(
        "B0150",
        _W,
        "identity provider left out of the gateway",
        "The `jwks file` of an accepted provider could not be read or checked while the\n"
        "Envoy bootstrap was written (it changed after `mcpdsl check`). The provider is\n"
        "left out of `jwt_authn`, so its tokens are rejected (401): nothing is allowed\n"
        "that would not be, but its principals cannot get in. Fix the file and rebuild.\n",
    ),
    Code(
        "B0116",
        _W,
        "team quota governs no workload",
        'A `quota team "T"` caps the pods of team T\'s workloads placed in the pool; a\n'
        "ResourceQuota goes into each namespace those workloads run in. No service or job\n"
        'of the tree declares team T (`team "T"`, or `labels { team: "T" }` on a\n'
        "service) and this pool, so there is no namespace to put the quota in, and the\n"
        "Kubernetes target emits nothing for it.\n\n"
        '    pool standard { ...  quota team "web" { cpu 8 } }\n'
        '    service api { ...  pool standard  team "web" }   # now the quota caps `api`\n\n'
        "Declare the team and the pool on the workloads the quota is for, or remove it.\n",
        strict=True,
    ),
    Code(
        "B0117",
        _W,
        "no access policy: every request denied",
        "The tree declares no access `policy`, so no rule allows any request: the embedded\n"
        "engine and the OPA bundle deny everything (zero trust). The gateways and the sidecars\n"
        "do the same: each Envoy gateway gets an RBAC filter with ALLOW rules and no policy,\n"
        "each workload an Istio ALLOW AuthorizationPolicy without rules, which match no\n"
        "request. To open them deliberately declare a policy, e.g.\n"
        "`policy open { default allow }`, or `allow` rules for the intended callers.\n",
    ),
    Code(
        "B0120",
        _I,
        "access rule enforced",
        "Where one access rule is enforced by one target: the Envoy RBAC filters, ext_authz\n"
        "to OPA, a NetworkPolicy, or OPA's decision document. `mcpdsl build` prints these as\n"
        "the enforcement table; JSON and SARIF carry them as `enforcement` data.\n",
    ),
    Code(
        "B0121",
        _W,
        "deny rule not enforced at the gateway",
        "The rule is delegated from an Envoy gateway to OPA through ext_authz, but it reads\n"
        "attributes that gateway's door never provides (docs/runtime.md): the peer's service\n"
        "identity, method, path, query, headers and source are always there; principal\n"
        "claims (`email`, `groups`, ...) and `request.auth.mfa` only from a provider the\n"
        "gateway accepts; `context` only from the headers it trusts. Those attributes are\n"
        "missing there, so a deny reading them (directly or through `risk`) cannot fire at\n"
        "the gateway: it fails open. Accept a provider or trust a header that supplies the\n"
        "attribute, enforce the rule where it exists (the embedded engine, or OPA queried\n"
        "with the full request), or deny on attributes the gateway sees.\n"
        "The Istio target reports the same for a workload whose sidecar delegates to ext_authz\n"
        "(action CUSTOM), and for a deny on a `user`, `agent`, `group` or `tool` principal\n"
        "when no provider Istio can verify is declared (no token can name one there).\n",
        strict=True,
    ),
    Code(
        "B0122",
        _W,
        "allow rule narrowed at the gateway",
        "The rule is delegated from an Envoy gateway to OPA through ext_authz, but it reads\n"
        "attributes that gateway's door never provides (principal claims or\n"
        "`request.auth.mfa` without an accepted provider, `context` without a trusted\n"
        "header; docs/runtime.md), or its policy may require an obligation the door cannot\n"
        "prove (only `mfa`, from an accepted provider's token, is proven there).\n"
        "An allow reading them cannot fire there, so the gateway denies requests the policy\n"
        "allows: it fails closed. The Istio target reports the same at a sidecar that\n"
        "delegates to ext_authz (action CUSTOM).\n",
        strict=True,
    ),
    Code(
        "B0160",
        _W,
        "provider not verifiable by istio",
        "A declared JWT provider cannot be written into an Istio RequestAuthentication: its\n"
        "issuer is empty or holds spaces, its JWKS URL is not an http(s) URL, or its JWKS file\n"
        "cannot be read inside the tree or is not a JSON Web Key Set. The provider is left out,\n"
        "so the sidecars verify no token it issues and such tokens prove nothing there. Give\n"
        "the provider an `https://` JWKS URL or a JWKS file inside the policy tree.\n",
        strict=True,
    ),
    Code(
        "B0161",
        _W,
        "services share a workload identity",
        "Two services run as the same Kubernetes service account in the same namespace, so the\n"
        "mesh gives their pods the same SPIFFE identity and no sidecar can tell them apart.\n"
        "Rules naming either of them as a principal cannot be decided on the peer identity:\n"
        "Istio does not express them, and ext_authz sees the same shared identity. Give each\n"
        "service its own `identity` (service account).\n",
        strict=True,
    ),
    Code(
        "B0162",
        _I,
        "authorization policy too large for istio",
        "The rules reaching one workload expand to more Istio rules than one AuthorizationPolicy\n"
        "is allowed to hold here (512), so the workload's requests are decided by ext_authz\n"
        "(CUSTOM) instead. Nothing is lost; the sidecar makes one more call per request.\n",
    ),
    Code(
        "B0163",
        _I,
        "several mesh trust domains",
        "The tree declares more than one `mesh` with different trust domains; services without\n"
        "a declared SPIFFE `identity` are named in the first one (sorted). Declare one mesh.\n",
    ),
    Code(
        "B0164",
        _I,
        "provider clock skew differs from istio's",
        "Istio's RequestAuthentication has no clock-skew setting: its sidecars accept tokens\n"
        "up to 60 seconds past their expiry. A provider declaring another skew is verified\n"
        "with 60 seconds at the sidecars.\n",
    ),
    Code(
        "B0170",
        _W,
        "policy too large for the decision server's ConfigMap",
        "The decision server's pods receive the policy as the build's IR in a ConfigMap,\n"
        "and the API server refuses a ConfigMap over 1 MiB. The ConfigMap is still written\n"
        "(applying it fails, and the pods wait for it: nothing is decided with an old or a\n"
        "partial policy), but the server never runs this policy. Split the tree, or deliver\n"
        "the build to the pods another way (docs/serve-kubernetes.md).\n",
        strict=True,
    ),
    Code(
        "B0171",
        _W,
        "rule needs the decision server",
        "The rule reads `stats.principal.*` (directly, or through `risk` when a risk term\n"
        "does), the behaviour counters that only the decision server, `mcpdsl serve`,\n"
        "keeps: it counts every call it decides and sets `stats` itself, replacing what a\n"
        "caller sent. The generated OPA bundle, Envoy RBAC and Istio policies have no\n"
        "counters, and the Rego never reads `input.stats` (a caller could forge it), so\n"
        "there the rule never fires: a deny is not enforced (status `not-enforced`, it fails\n"
        "open) and an allow is narrowed (`narrowed`, it fails closed). A `require` whose\n"
        "condition reads the counters applies on every request there (its policy's allow\n"
        "rules are narrowed).\n\n"
        "To enforce the rule, let the decision server decide: run `mcpdsl serve` on the\n"
        "tree or the build and point the gateway's ext_authz and Istio's CUSTOM provider at\n"
        "its gRPC address (`--grpc-addr`, default `127.0.0.1:9191`) instead of OPA; clients\n"
        "of OPA's REST API query its `/v1/data/...` unchanged (`--addr`). In-process callers\n"
        "of the embedded engine may pass counters they keep themselves as `stats`.\n\n"
        "A tree that declares a `server` block gets this wiring from the build\n"
        "(docs/serve-kubernetes.md): the Envoy and Istio targets then send such rules to\n"
        "that server and report them as delegated to it; only the OPA bundle, which cannot\n"
        "count, still reports them (docs/serve.md).\n",
        strict=True,
    ),
    Code(
        "B0180",
        _W,
        "rule needs the MCP gateway",
        "The rule reads `args.*`, the arguments of a tool call (directly, or through `risk`\n"
        "when a risk term does, or its policy's `require` does), and an Envoy gateway routes\n"
        "calls of that tool to its integration. Only the MCP gateway of `mcpdsl serve`\n"
        "(`/mcp`, `tools/call`) reads a call's arguments and puts them in the request; an\n"
        "Envoy route, and whatever it asks through ext_authz (OPA, or `mcpdsl serve` itself:\n"
        "a CheckRequest carries no body), never has them. There every `args.*` read is an\n"
        "evaluation error (a call about a tool without `args`, docs/semantics.md), which\n"
        "fails closed: a deny reading them fires on every call it matches, an allow never\n"
        "fires, a risk term always counts and a `require` always applies. The rule is\n"
        "narrowed (status `narrowed`), never widened.\n\n"
        "To enforce it as written, let agents reach the tool through the MCP gateway and\n"
        "drop the Envoy route to the integration, or decide at that route on what Envoy\n"
        "sees (path, query, headers).\n",
        strict=True,
    ),
    Code(
        "B0130",
        _W,
        "carbon schedule not applied",
        "The optimiser could not compute the job schedule (the note names the finding, which\n"
        "`mcpdsl check` reports as an error); the CronJobs keep their window start.\n",
        strict=True,
    ),
    Code(
        "B0131",
        _I,
        "carbon plan note",
        "Something the optimiser assumed while planning the jobs built into CronJobs (an\n"
        "estimated energy, a missing renewable share, a time zone it did not know).\n",
    ),
)
