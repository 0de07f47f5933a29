"""The server's Prometheus metrics, in a registry of its own (no global state).

Names follow Prometheus conventions (`_total` counters, `_seconds` histograms)
and carry the `mcpdsl_` prefix.  Rule labels are the policy's rule names, a
bounded set (a reload can only replace it), so cardinality stays bounded.

Under `mcpdsl serve --workers N` each worker is a process of its own and the
supervisor sets `PROMETHEUS_MULTIPROC_DIR` (`mcpdsl.serve.workers`):
prometheus-client then keeps the values in files there, and `exposition`
sums every worker's counters and histograms; the gauges say the live
workers' maximum (breakers, federated tools) or minimum (readiness, the
oldest policy in force).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Decision latency buckets, in seconds: 10 µs .. 1 s.
LATENCY_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


@dataclass
class Metrics:
    """Every metric of one server."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.decisions = Counter(
            "mcpdsl_decisions",
            "Decisions made, by transport and result (allow, deny, refused, limited, unavailable).",
            ["transport", "result"],
            registry=r,
        )
        self.rule_hits = Counter(
            "mcpdsl_rule_decisions",
            "Decisions each rule took part in, by result.",
            ["rule", "result"],
            registry=r,
        )
        self.latency = Histogram(
            "mcpdsl_decision_seconds",
            "Time from a request's arrival at the transport to its decision.",
            ["transport"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reloads = Counter(
            "mcpdsl_reloads", "Policy reloads, by outcome (installed, unchanged, refused).",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.load_failures = Counter(
            "mcpdsl_load_failures", "Policy loads refused (the last good policy was kept).",
            registry=r,
        )  # fmt: skip
        self.log_drops = Counter(
            "mcpdsl_decision_log_drops", "Decision-log records that could not be written.",
            registry=r,
        )  # fmt: skip
        self.store_errors = Counter(
            "mcpdsl_store_unavailable", "Decisions made while the shared store was unreachable.",
            registry=r,
        )  # fmt: skip
        self.http_closed = Counter(
            "mcpdsl_http_connections_closed",
            "HTTP connections the server closed to protect itself, by reason"
            " (evicted, head_timeout, head_too_large, refused).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.tool_calls = Counter(
            "mcpdsl_mcp_tool_calls",
            "MCP tools/call by tool and result (ok, tool_error, denied, step_up, limited,"
            " invalid, upstream_error, unknown_tool, withdrawn, unavailable).",
            ["tool", "result"], registry=r,
        )  # fmt: skip
        self.tool_upstream_errors = Counter(
            "mcpdsl_mcp_upstream_errors",
            "Upstream failures of MCP tool calls, by tool and kind.",
            ["tool", "kind"], registry=r,
        )  # fmt: skip
        self.tool_latency = Histogram(
            "mcpdsl_mcp_tool_call_seconds",
            "Time of an MCP tools/call at the gateway, upstream included, by tool.",
            ["tool"], buckets=(*LATENCY_BUCKETS, 2.5, 5.0, 10.0), registry=r,
        )  # fmt: skip
        self.breaker_open = Gauge(
            "mcpdsl_mcp_breaker_state",
            "Circuit breaker of each tool's upstream: 0 closed, 1 half-open, 2 open.",
            ["tool"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.federated_tools = Gauge(
            "mcpdsl_mcp_federated_tools",
            "Tools the gateway federates from each `upstream mcp` integration (0 while"
            " it is not connected).",
            ["integration"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.ready = Gauge(
            "mcpdsl_ready", "1 when a policy is loaded.", registry=r, multiprocess_mode="livemin"
        )
        self.policy_revision = Gauge(
            "mcpdsl_policy_loaded_timestamp_seconds", "When the policy in force was installed.",
            registry=r, multiprocess_mode="livemin",
        )  # fmt: skip

    def exposition(self) -> bytes:
        """The text format: this server's metrics, or every worker's (module docstring)."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=directory)
        return generate_latest(combined)
