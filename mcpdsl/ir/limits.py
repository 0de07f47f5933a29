"""What the target platforms accept: ranges and formats of the values they are given.

mcpdsl's own bounds (E0303) say what makes sense in the language; this module
says what Kubernetes, Envoy and Prometheus would refuse.  A value a cluster
would refuse at apply time is a compile error here (E0312 for a number out of
the target's range, E0313 for a name or reference the target cannot parse), at
the span of the value itself, so a build never carries an artifact the API
server, Envoy or Prometheus rejects.

The limits, and where they come from:

* Kubernetes `int32` fields (`replicas`, `minReplicas`, `maxReplicas`,
  `averageUtilization`, policy `value`s): at most 2^31-1.
* Kubernetes quantities (cpu, memory, metric targets): a quantity is at most
  2^63-1 in magnitude; cpu is compared in millicores, so cores * 1000 must fit.
* Protobuf `Duration` (every Envoy timeout, interval and TTL): at most
  315,576,000,000 seconds (10,000 years).
* Image references: the distribution reference grammar (registry host and
  port, lowercase path components, tag of at most 128 characters, digest).
* Prometheus metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*`.

The readers wrap the `units` readers (`functools.wraps`, so the expected-unit
messages still describe them) and raise `UnitError`, which lowering reports at
the token.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from mcpdsl.ir import units
from mcpdsl.ir.model import Rate
from mcpdsl.ir.units import UnitError

INT32_MAX = 2**31 - 1
QUANTITY_MAX = 2**63 - 1
#: cpu is compared in millicores (int64) by the scheduler and the kubelet.
CPU_CORES_MAX = Decimal(QUANTITY_MAX) / 1000
#: google.protobuf.Duration: +-315,576,000,000 seconds.
DURATION_MAX_SECONDS = 315_576_000_000
#: The longest name a reference may have (the distribution reference grammar).
IMAGE_NAME_MAX = 255
IMAGE_TAG_MAX = 128

T = TypeVar("T")

OUT_OF_RANGE = "E0312"
NOT_ACCEPTED = "E0313"


def _bounded(reader: Callable[[str], T], check: Callable[[T], str | None]) -> Callable[[str], T]:
    @functools.wraps(reader)
    def read(text: str) -> T:
        value = reader(text)
        problem = check(value)
        if problem is not None:
            raise UnitError(problem, OUT_OF_RANGE, help=_HELP)
        return value

    return read


_HELP = "the target platform refuses this value; `mcpdsl check --explain E0312` lists the limits"


def _int32(value: int) -> str | None:
    if value > INT32_MAX:
        return f"`{value}` does not fit a Kubernetes int32 field (at most {INT32_MAX})"
    return None


def _cpu(cores: Decimal) -> str | None:
    if math.ceil(cores * 1000) > QUANTITY_MAX:
        return f"cpu `{cores}` is above the Kubernetes quantity limit ({CPU_CORES_MAX} cores)"
    return None


def _memory(size: int) -> str | None:
    if size > QUANTITY_MAX:
        return f"`{size}` bytes is above the Kubernetes quantity limit (2^63-1 bytes)"
    return None


def _quantity(value: Decimal) -> str | None:
    if value > QUANTITY_MAX:
        return f"`{value}` is above the Kubernetes quantity limit (2^63-1)"
    return None


def _utilization(ratio: Decimal) -> str | None:
    if ratio * 100 > INT32_MAX:
        return f"`{ratio * 100}%` does not fit a Kubernetes int32 percentage (at most {INT32_MAX}%)"
    return None


def _duration(seconds: Decimal) -> str | None:
    if 0 < seconds < Decimal("1e-9"):
        return f"duration of {seconds} s is below a nanosecond (the protobuf Duration precision)"
    if seconds > DURATION_MAX_SECONDS:
        return (
            f"duration of {seconds} s is above the protobuf Duration limit"
            f" ({DURATION_MAX_SECONDS} s, 10,000 years)"
        )
    return None


#: A count that lands in a Kubernetes int32 field (replicas, nodes, pods per step).
read_int32 = _bounded(units.read_count, _int32)
read_cpu = _bounded(units.read_cpu, _cpu)
read_memory = _bounded(units.read_bytes, _memory)
#: A custom metric's target, emitted as a Kubernetes quantity (HPA AverageValue).
read_metric_target = _bounded(units.read_number, _quantity)
#: A utilisation or step percentage, emitted as a whole int32 percent.
read_percent = _bounded(units.read_percent, _utilization)
#: A duration emitted as a protobuf Duration (Envoy) or a Go duration (Prometheus).
read_duration = _bounded(units.read_duration, _duration)


# ------------------------------------------------------------------ formats

_DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
)
MOUNT_PATH_MAX = 4096


def is_dns_subdomain(name: str) -> bool:
    """A Kubernetes object name (StorageClass, ...): an RFC 1123 subdomain, at most 253."""
    return len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name) is not None


def is_mount_path(path: str) -> bool:
    """A container mount path the API server accepts and that means one place.

    Absolute, no `..` element (the API server refuses back-steps), no `:`
    (refused on Windows nodes), no control characters.
    """
    return (
        path.startswith("/")
        and len(path) <= MOUNT_PATH_MAX
        and ".." not in path.split("/")
        and ":" not in path
        and all(ch >= " " and ch != "\x7f" for ch in path)
    )


_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_HOST_COMPONENT = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?")
_IPV6 = re.compile(r"\[[0-9a-fA-F:.]+\]")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _host_problem(domain: str) -> str | None:
    host, colon, port = domain.partition(":") if not domain.startswith("[") else (domain, "", "")
    if domain.startswith("["):
        host, _, rest = domain.partition("]")
        host += "]"
        if rest:
            if not rest.startswith(":"):
                return f"registry `{domain}` is not a host"
            colon, port = ":", rest[1:]
        if not _IPV6.fullmatch(host):
            return f"registry `{domain}` is not a host"
    elif not all(_HOST_COMPONENT.fullmatch(part) for part in host.split(".")):
        return f"registry `{domain}` is not a host name"
    if colon and not (port.isascii() and port.isdigit()):
        return f"registry port `{port}` is not a number"
    return None


def image_problem(reference: str) -> str | None:
    """Why `reference` is not an image reference a container runtime accepts (None: it is).

    `[registry[:port]/]path[:tag][@digest]`: path components are lowercase letters
    and digits joined by `.`, `_`, `__` or dashes; the first component is a registry
    when it has a `.` or `:` or is `localhost`.
    """
    name, at, digest = reference.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        return f"digest `{digest}` is not `ALGORITHM:HEX` (at least 32 hex digits)"
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag) or len(tag) > IMAGE_TAG_MAX:
            return f"tag `{tag}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128)"
    if not name:
        return "the image name is empty"
    if len(name) > IMAGE_NAME_MAX:
        return f"the image name is longer than {IMAGE_NAME_MAX} characters"
    parts = name.split("/")
    first = parts[0]
    if len(parts) > 1 and (
        "." in first or ":" in first or first == "localhost" or first[:1] == "["
    ):
        problem = _host_problem(first)
        if problem is not None:
            return problem
        parts = parts[1:]
    for part in parts:
        if not _PATH_COMPONENT.fullmatch(part):
            return (
                f"path component `{part}` must be lowercase letters and digits"
                " separated by `.`, `_`, `__` or `-`"
            )
    return None


def metric_name_problem(name: str) -> str | None:
    """Why `name` is not a Prometheus metric name (None: it is)."""
    if _METRIC_NAME.fullmatch(name):
        return None
    return f"`{name}` is not a Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`)"


UINT32_MAX = 2**32 - 1


def _rate(rate: Rate) -> str | None:
    # The Envoy token bucket refills `amount` tokens every `per` seconds, scaled by a power
    # of ten until the amount is whole (`0.5/s` -> 5 tokens every 10 s); both must fit.
    amount, per, scale = rate.amount, rate.per, Decimal(1)
    while amount * scale != (amount * scale).to_integral_value():
        scale *= 10
    if amount * scale > UINT32_MAX:
        return f"rate `{amount}` per {per} s needs more than {UINT32_MAX} tokens per refill (Envoy limit)"
    return _duration(per * scale)


#: A rate limit, emitted as an Envoy token bucket (uint32 tokens, Duration interval).
read_rate = _bounded(units.read_rate, _rate)


def _probe(seconds: Decimal) -> str | None:
    if math.ceil(seconds) > INT32_MAX:
        return (
            f"duration of {seconds} s does not fit a Kubernetes probe's int32 seconds"
            f" (at most {INT32_MAX} s)"
        )
    return _duration(seconds)


def _job_seconds(seconds: Decimal) -> str | None:
    if math.ceil(seconds) > QUANTITY_MAX:
        return f"duration of {seconds} s does not fit a Kubernetes int64 seconds field"
    return None


#: A health check interval or timeout: an Envoy Duration and a probe's int32 seconds.
read_probe_duration = _bounded(units.read_duration, _probe)
#: A job's run time or deadline: the Job's int64 `activeDeadlineSeconds`.
read_job_duration = _bounded(units.read_duration, _job_seconds)
