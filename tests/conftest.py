"""Shared test configuration: hypothesis profiles and golden updates (paths: repo_paths.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# `ci` (the default) is reproducible: derandomized, no deadline (CI machines are
# slow and noisy), no example database written into the checkout.  `dev` explores
# with fresh randomness; select it with HYPOTHESIS_PROFILE=dev.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite golden files (expected.txt) from the current output; "
        "same as MCPDSL_UPDATE_GOLDENS=1",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    """Whether golden files are rewritten instead of compared."""
    return bool(request.config.getoption("--update-goldens")) or os.environ.get(
        "MCPDSL_UPDATE_GOLDENS", ""
    ) not in ("", "0")


# Tests that need a system component (the OPA engine, Chromium, node, redis-server…)
# skip locally with a visible reason that starts with SYSTEM_SKIP.  CI sets
# MCPDSL_REQUIRE_SYSTEM_TESTS=1, and then such a skip is reported as a failure:
# a green CI run can never hide a component that was not installed.
SYSTEM_SKIP = "system component missing:"


def _system_tests_required() -> bool:
    return os.environ.get("MCPDSL_REQUIRE_SYSTEM_TESTS", "") not in ("", "0")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and _system_tests_required()):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if SYSTEM_SKIP in reason:
        report.outcome = "failed"
        report.longrepr = f"{reason} (MCPDSL_REQUIRE_SYSTEM_TESTS is set: this skip is a failure)"
