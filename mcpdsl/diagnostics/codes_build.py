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
        "Kubernetes has no StatefulSet output yet: a `stateful` service becomes a Deployment\n"
        "with the Recreate strategy (never two versions at once) but without stable pod\n"
        "identities or per-pod volumes.\n",
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
        "A `during` window caps replicas below the scale's maximum. KEDA has one maximum per\n"
        "ScaledObject, so the cluster does not enforce the window's cap; only the in-process\n"
        "simulator does.\n",
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
        "attributes that enforcement point does not provide: the ext_authz request carries\n"
        "no `context`, an empty `request.auth` and a principal with only `type`, `id` and\n"
        "`identity`. Those attributes are missing there, so a deny reading them (directly\n"
        "or through `risk`) cannot fire at the gateway: it fails open. Enforce the rule where\n"
        "the attributes exist (the embedded engine, or OPA queried with the full request), or\n"
        "deny on attributes the gateway sees (identity, method, path, headers, source ip).\n",
        strict=True,
    ),
    Code(
        "B0122",
        _W,
        "allow rule narrowed at the gateway",
        "The rule is delegated from an Envoy gateway to OPA through ext_authz, but it reads\n"
        "attributes that enforcement point does not provide (`context`, `request.auth`,\n"
        "principal attributes other than `type`, `id` and `identity`), or its policy may\n"
        "require an obligation, which nothing proves there.\n"
        "An allow reading them cannot fire there, so the gateway denies requests the policy\n"
        "allows: it fails closed.\n",
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
