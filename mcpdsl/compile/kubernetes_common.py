"""Shared helpers of the Kubernetes target: names, label values, quantities, metadata.

Kubernetes is stricter about names than mcpdsl (DNS-1123 labels, 63 characters,
lowercase) and stricter about label values than about annotation values.  Every
user string that cannot be a name or a label is either sanitised here (with the
original kept in an annotation) or carried as an annotation value, which the
YAML serialiser escapes; nothing is ever pasted into YAML text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import string
from collections.abc import Hashable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from mcpdsl.source import Span

MANAGED_BY = "mcpdsl"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_POOL = "mcpdsl.io/pool"
LABEL_TIER = "mcpdsl.io/tier"
ANNOTATION_SOURCE = "mcpdsl.io/source"
ANNOTATION_SOURCE_NAME = "mcpdsl.io/source-name"
ANNOTATION_LABELS = "mcpdsl.io/labels"
REGION_KEY = "topology.kubernetes.io/region"
ZONE_KEY = "topology.kubernetes.io/zone"
NAMESPACE_KEY = "kubernetes.io/metadata.name"
GPU_RESOURCE = "nvidia.com/gpu"

MI = 2**20
LABEL_LIMIT = 63
CRONJOB_LIMIT = 52  # the Job controller appends an 11-character suffix

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_RESERVED_LABEL_PREFIXES = ("app.kubernetes.io/", "mcpdsl.io/", "kubernetes.io/", "k8s.io/")


# ------------------------------------------------------------------ names


def digest(text: str, length: int = 6) -> str:
    """A short stable hash, used to keep truncated or colliding names apart."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def with_suffix(base: str, suffix: str, limit: int) -> str:
    """`base-suffix`, truncating `base` so that the result fits `limit`."""
    head = base[: max(1, limit - len(suffix) - 1)].rstrip("-") or "x"
    return f"{head}-{suffix}"


def dns_label(text: str, limit: int = LABEL_LIMIT, *, letter_start: bool = True) -> str:
    """Sanitise any string into a DNS-1123 label (RFC 1035 when `letter_start`).

    Lowercase, every character outside `[a-z0-9-]` becomes `-`, dashes are
    trimmed from the ends; a label that would start with a digit gets an `x-`
    prefix (Service names must start with a letter); a label over `limit` is
    truncated and suffixed with a hash of the original so that two long names
    sharing a prefix stay distinct.
    """
    label = re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-") or "x"
    if letter_start and label[0] not in string.ascii_lowercase:
        label = "x-" + label
    if len(label) > limit:
        label = with_suffix(label, digest(text), limit)
    return label


def _key_text(key: Hashable) -> str:
    return "\x00".join(key) if isinstance(key, tuple) else str(key)


def assign_names(
    items: Iterable[tuple[Hashable, str]],
    limit: int = LABEL_LIMIT,
    reserved: Iterable[str] = (),
) -> dict[Hashable, str]:
    """Give every (key, source text) a distinct DNS label, deterministically.

    Names that need no change claim themselves first (so `api` stays `api`
    even if `API` also exists); the others get their sanitised form, or, on a
    collision, the sanitised form plus a hash of their key.  The result depends
    only on the set of items, never on their order.  `reserved` names (taken
    by another table sharing the same Kubernetes kind) are never handed out.
    """
    pairs = sorted(items, key=lambda kv: _key_text(kv[0]))
    bases = {key: dns_label(text, limit) for key, text in pairs}
    out: dict[Hashable, str] = {}
    used: set[str] = set(reserved)
    for key, text in pairs:
        if bases[key] == text and text not in used:
            out[key] = text
            used.add(text)
    for key, _text in pairs:
        if key in out:
            continue
        name, length = bases[key], 6
        while name in used:
            name = with_suffix(bases[key], digest(_key_text(key), length), limit)
            length += 2
        out[key] = name
        used.add(name)
    return out


def label_value(text: str) -> str:
    """Sanitise a string into a valid label value (may be empty)."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:LABEL_LIMIT]
    return value.strip("-_.")


def is_label_value(text: str) -> bool:
    return len(text) <= LABEL_LIMIT and _LABEL_VALUE.match(text) is not None


def is_label_key(key: str) -> bool:
    """A qualified name `[prefix/]name`, prefix a DNS subdomain (as the API server checks)."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= LABEL_LIMIT and _LABEL_KEY_NAME.match(name) is not None


def user_labels(labels: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split user labels into valid labels and the rest (kept as an annotation).

    Keys under the prefixes this target owns are never taken from the user, so
    a user label can neither change a selector nor impersonate `managed-by`.
    """
    valid: dict[str, str] = {}
    rest: dict[str, str] = {}
    for key, value in sorted(labels.items()):
        reserved = key.startswith(_RESERVED_LABEL_PREFIXES)
        if not reserved and is_label_key(key) and is_label_value(value):
            valid[key] = value
        else:
            rest[key] = value
    return valid, rest


# ------------------------------------------------------------- quantities


def cpu_quantity(cores: Decimal) -> str:
    """Cores as a millicore string (`0.5` -> `500m`), rounded up to a whole millicore."""
    return f"{math.ceil(cores * 1000)}m"


def memory_quantity(size: int) -> str:
    """Bytes as `NMi` when whole mebibytes, else as a plain byte count."""
    return f"{size // MI}Mi" if size % MI == 0 else str(size)


def storage_quantity(size: int) -> str:
    """Bytes as `NGi` when whole gibibytes (how volumes are sized), else like memory."""
    return f"{size // 2**30}Gi" if size % 2**30 == 0 else memory_quantity(size)


def decimal_quantity(value: Decimal) -> str:
    """A plain decimal quantity (`150`, `0.5`), never in exponent form."""
    text = format(value.normalize(), "f")
    return text


def whole_seconds(value: Decimal, minimum: int = 1) -> int:
    """Seconds rounded up (Kubernetes timing fields are whole seconds)."""
    return max(minimum, math.ceil(value))


def resources(cpu: Decimal | None, memory: int | None, gpu: int) -> dict[str, Any]:
    """Container resources with requests equal to limits (Guaranteed QoS for cpu/memory).

    GPUs are extended resources: they are set as limits only, which Kubernetes
    copies to requests.
    """
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if cpu is not None and cpu > 0:
        requests["cpu"] = limits["cpu"] = cpu_quantity(cpu)
    if memory is not None and memory > 0:
        requests["memory"] = limits["memory"] = memory_quantity(memory)
    if gpu > 0:
        limits[GPU_RESOURCE] = str(gpu)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


# --------------------------------------------------------------- metadata


def source_of(span: Span | None) -> str | None:
    return f"{span.file}:{span.line}" if span is not None else None


def selector(name: str, component: str) -> dict[str, str]:
    """The labels that select one workload's pods (name alone could match a job)."""
    return {LABEL_NAME: name, LABEL_COMPONENT: component}


def metadata(
    name: str,
    *,
    package: str,
    component: str,
    namespace: str | None = None,
    source: str | None = None,
    source_name: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`metadata` with the standard labels and the provenance annotations."""
    all_labels = dict(labels or {})
    all_labels.update(selector(name, component))
    all_labels[LABEL_MANAGED_BY] = MANAGED_BY
    part_of = label_value(package)
    if part_of:
        all_labels[LABEL_PART_OF] = part_of
    all_annotations = dict(annotations or {})
    if source is not None:
        all_annotations[ANNOTATION_SOURCE] = source
    if source_name is not None and source_name != name:
        all_annotations[ANNOTATION_SOURCE_NAME] = source_name
    meta: dict[str, Any] = {"name": name, "labels": all_labels}
    if namespace is not None:
        meta["namespace"] = namespace
    if all_annotations:
        meta["annotations"] = all_annotations
    return meta


def pod_metadata(
    name: str,
    *,
    package: str,
    component: str,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A pod template's metadata: the same labels as its owner, no name."""
    meta = metadata(
        name, package=package, component=component, labels=labels, annotations=annotations
    )
    del meta["name"]
    return meta


def labels_annotation(rest: Mapping[str, str]) -> dict[str, str]:
    """User labels Kubernetes cannot carry, as one JSON annotation (or nothing)."""
    if not rest:
        return {}
    return {ANNOTATION_LABELS: json.dumps(dict(rest), sort_keys=True, ensure_ascii=False)}
