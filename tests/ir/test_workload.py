"""The one function that names a service's namespace, service account and SPIFFE id."""

from __future__ import annotations

import pytest

from mcpdsl.ir.workload import DEFAULT_TRUST_DOMAIN, parse_spiffe, workload_identity


def test_a_declared_identity_fixes_account_and_trust_domain() -> None:
    ident = workload_identity(
        namespace="core",
        declared="spiffe://mcp.local/ns/core/sa/mcp-api",
        fallback_account="ignored",
    )
    assert ident.spiffe_id == "spiffe://mcp.local/ns/core/sa/mcp-api"
    assert ident.principal == "mcp.local/ns/core/sa/mcp-api"


def test_without_identity_the_target_name_and_default_trust_domain() -> None:
    ident = workload_identity(namespace="data", declared=None, fallback_account="postgres")
    assert ident.spiffe_id == f"spiffe://{DEFAULT_TRUST_DOMAIN}/ns/data/sa/postgres"


def test_the_namespace_the_pods_run_in_wins() -> None:
    ident = workload_identity(
        namespace="data", declared="spiffe://td/ns/core/sa/x", fallback_account="y"
    )
    assert (ident.namespace, ident.service_account) == ("data", "x")


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://td/ns/core",
        "spiffe://td/ns/core/sa/x/extra",
        "spiffe://td/ns/Core/sa/x",
        "https://td/ns/core/sa/x",
        "spiffe://td/sa/x/ns/core",
        "spiffe:///ns/core/sa/x",
        "spiffe://td/ns/core/sa/x\n",  # `$` alone would accept a final newline
    ],
)
def test_other_shapes_are_not_kubernetes_identities(uri: str) -> None:
    assert parse_spiffe(uri) is None
