"""Validate mcpdsl's generated artifacts with the real schemas and engines.

Golden files and hand-written assertions only prove that the compiler is
self-consistent; they do not prove that Kubernetes, Envoy, OPA or Prometheus
would accept what it emits.  This module runs each artifact through the same
schema or engine the target system uses (or the closest one that installs
offline from PyPI), so a test fails the moment an artifact would be rejected
in production.

Every ``validate_*`` function returns a list of human-readable error strings
(empty means valid) instead of raising, so tests can assert on the exact set of
problems and report all of them at once.  The Rego helpers return the decoded
query result and raise :class:`RegoEvalError` on engine errors.

Engines and what backs them:

* Kubernetes: ``kubernetes-validate`` strict (no additional properties) JSON
  schemas for 1.33, plus checks the OpenAPI schemas cannot express (names,
  quantities, selectors, cron).  KEDA CRDs are not in that schema set:
  ``ScaledObject`` and ``TriggerAuthentication`` are validated with the
  generated pydantic models of ``cloudcoil-models-keda`` in strict mode
  (unknown fields reported), plus a structural check and what KEDA's webhook
  and scalers refuse (behavior ranges and enums, cron and prometheus metadata).
* Envoy: ``xds-protos`` messages parsed with protobuf ``json_format`` plus the
  ``protoc-gen-validate`` (PGV) rules carried in the descriptors, enforced with
  the ``protoc-gen-validate`` package (also inside ``Any`` payloads), plus
  cross-reference checks Envoy performs at config load.
* Rego: ``regopy`` (rego-cpp 1.5).  It lacks the ``net.cidr_*`` builtins
  (rego-cpp would silently make such calls undefined, so :func:`run_rego`
  raises instead) and accepts some Rego v0 syntax OPA 1.x rejects.  When the
  ``opa-golib-python-bindings`` wheel is installed, :func:`run_opa` evaluates
  with the real Go OPA engine; both share one result contract.
* PromQL: ``promql-parser`` (Rust port of the Prometheus parser).
* Istio: the ``cloudcoil.models.istio`` pydantic models of the CRDs, validated in
  strict mode and compared with the document after a round trip (the models
  ignore unknown fields; a field they drop is an error), plus the checks Istio's
  admission webhook adds (value syntax, CIDRs, `when` keys, CUSTOM providers).
  ``IstioOperator`` has no model there: the extension provider is checked
  against the fields of MeshConfig's ``envoyExtAuthzGrpc``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.descriptor import FieldDescriptor
    from google.protobuf.message import Message
    from jsonschema.protocols import Validator

__all__ = [
    "RegoEvalError",
    "RegoEvaluator",
    "opa_available",
    "promql_available",
    "regopy_has_builtin",
    "run_opa",
    "run_rego",
    "validate_envoy_bootstrap",
    "validate_istio",
    "validate_kubernetes",
    "validate_promql",
]

# ---------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------

#: Kubernetes version the generated manifests target.
K8S_DEFAULT_VERSION = "1.33.0"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Kubernetes resource.Quantity grammar (k8s.io/apimachinery/pkg/api/resource):
# <signedNumber><suffix>, suffix = binarySI | decimalExponent | decimalSI.
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>[eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$"
)
_DECIMAL_SI = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_BINARY_SI = {f"{p}i": Decimal(1024) ** (i + 1) for i, p in enumerate("KMGTPE")}

# Where each workload kind keeps its PodSpec.
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_SELECTOR_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"})
# Kinds whose names end up as DNS labels (hostnames, pod-name prefixes).  Service
# names are RFC 1035 labels (must start with a letter) in the API server itself.
_LABEL_NAMED_KINDS = frozenset({"Namespace", "Deployment", "StatefulSet", "CronJob"})
# RBAC objects accept any path segment name (e.g. "system:aggregate-to-view").
_PATH_SEGMENT_KINDS = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})
_CRONJOB_MAX_NAME = 52  # Job names get an 11-character suffix appended.

_CRON_DESCRIPTORS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {
            m: i + 1
            for i, m in enumerate(
                ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
            )
        },
    ),
    (
        "day-of-week",
        0,
        6,
        {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])},
    ),
)


def validate_kubernetes(
    doc: dict[str, Any], version: str = K8S_DEFAULT_VERSION, *, allow_unknown_kinds: bool = False
) -> list[str]:
    """Validate one Kubernetes manifest; return error messages (empty = valid).

    Validation uses the *strict* schemas shipped by ``kubernetes-validate``
    (``additionalProperties: false`` everywhere), because the API server's
    strict field validation rejects unknown fields and a typo in a generated
    manifest must not silently pass.  Validators are cached per schema
    version, apiVersion and kind: ``kubernetes_validate.validate()`` re-reads
    the ~1.4 MB definitions file on every call, which makes large suites slow.

    On top of the schema, the checks the OpenAPI schema cannot express are run
    (see :func:`_k8s_semantic_errors`).  ``keda.sh/v1alpha1 ScaledObject`` is
    not in the schema set, so it gets :func:`_keda_scaledobject_errors`.  Other
    kinds without a schema are an error unless ``allow_unknown_kinds`` is set,
    so that an unvalidated artifact is never mistaken for a validated one.

    Each message is prefixed with ``Kind/name:`` and a dotted path.  Raises
    ValueError for a Kubernetes version kubernetes-validate ships no schemas for.
    """
    if not isinstance(doc, dict):
        return [f"manifest must be a mapping, got {type(doc).__name__}"]
    api_version = doc.get("apiVersion")
    kind = doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["manifest needs string apiVersion and kind"]
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    prefix = f"{kind}/{name if isinstance(name, str) else '?'}: "

    errors: list[str] = []
    crd_check = _CRD_CHECKS.get((api_version, kind))
    if crd_check is not None:
        errors.extend(crd_check(doc))
    else:
        validator = _k8s_validator(str(_k8s_schema_dir(version)), api_version, kind)
        if validator is None:
            if not allow_unknown_kinds:
                errors.append(
                    f"no schema for apiVersion {api_version!r} kind {kind!r} "
                    f"in Kubernetes {version} (not validated)"
                )
        else:
            schema_errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
            errors.extend(f"{_dotted(e.absolute_path)}: {e.message}" for e in schema_errors)
    errors.extend(_k8s_semantic_errors(doc, kind))
    return [prefix + e for e in errors]


def _major_minor(version: str) -> tuple[int, int]:
    """Parse ``"1.33.0"``/``"v1.33"`` to ``(1, 33)`` for numeric comparison."""
    match = re.match(r"^v?(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"bad Kubernetes version {version!r}")
    return int(match.group(1)), int(match.group(2))


@functools.cache
def _k8s_schema_dir(version: str) -> Path:
    """Pick the strict schema directory for ``version``.

    Mirrors kubernetes-validate: the newest shipped version that is not newer
    than the requested one, and an error for versions newer than any shipped
    (but compares numerically, not as strings).
    """
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    shipped: dict[tuple[int, int], Path] = {}
    for path in root.iterdir():
        match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", path.name)
        if match:
            shipped[(int(match.group(1)), int(match.group(2)))] = path
    want = _major_minor(version)
    usable = [v for v in shipped if v <= want]
    if not shipped or want > max(shipped) or not usable:
        raise ValueError(f"kubernetes-validate has no strict schemas for Kubernetes {version}")
    return shipped[max(usable)]


@functools.cache
def _k8s_registry(schema_dir: str) -> Any:
    """Load ``_definitions.json`` once per schema version into a referencing Registry.

    Every kind schema ``$ref``s ``/api/_definitions.json#/$defs/...`` relative
    to its ``$id`` (``https://kubernetes.io/api/<kind>/...``), which resolves to
    the definitions file's own ``$id``; registering it under that URI is all
    the resolver needs.
    """
    from referencing import Registry, Resource

    defs = json.loads((Path(schema_dir) / "_definitions.json").read_text())
    return Registry().with_resource(defs["$id"], Resource.from_contents(defs))


@functools.lru_cache(maxsize=512)
def _k8s_validator(schema_dir: str, api_version: str, kind: str) -> Validator | None:
    """Build (once) the strict Draft 2020-12 validator for one apiVersion/kind.

    File naming follows kubernetes-validate: ``<kind>-<group>-<version>.json``
    with the group's domain suffix dropped (``rbac.authorization.k8s.io/v1``
    -> ``rbac-v1``; core ``v1`` -> ``v1``).  Returns None when not shipped.
    """
    from jsonschema import Draft202012Validator

    slug = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = Path(schema_dir) / f"{kind.lower()}-{slug}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    if schema.get("additionalProperties") is not False:  # pragma: no cover - packaging guard
        raise RuntimeError(f"{path} is not a strict schema")
    return Draft202012Validator(
        schema, registry=_k8s_registry(schema_dir), format_checker=_K8S_FORMATS
    )


def _integer_format(bits: int) -> Callable[[object], bool]:
    """A jsonschema format check for Kubernetes `int32`/`int64` fields.

    jsonschema ignores unknown formats, and kubernetes-validate's schemas only say
    `"type": "integer"`: without this, `maxReplicas: 99999999999999999999999`
    passes although the API server's decoder refuses it.
    """
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or low <= value <= high

    return check


def _k8s_formats() -> Any:
    from jsonschema import FormatChecker

    checker = FormatChecker(formats=())
    checker.checks("int32")(_integer_format(32))
    checker.checks("int64")(_integer_format(64))
    return checker


_K8S_FORMATS = _k8s_formats()


def _dotted(path: Sequence[Any] | Any) -> str:
    """Render a JSON path as ``spec.template.spec.containers[0].image``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _get(obj: Any, *keys: str) -> Any:
    """Nested dict lookup that tolerates wrong types (the schema reports those)."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _k8s_semantic_errors(doc: dict[str, Any], kind: str) -> list[str]:
    """Checks the API server performs that the OpenAPI schemas cannot express.

    * ``metadata.name`` syntax: DNS-1123 subdomain by default; DNS-1123 label
      (<=63) for Namespace/Deployment/StatefulSet/CronJob (CronJob <=52);
      RFC 1035 label for Service; any path segment for RBAC kinds.
    * label keys/values and annotation keys syntax.
    * resource quantities match the Quantity grammar, are non-negative, and
      requests do not exceed limits (containers, pod overhead, PVCs,
      ResourceQuota ``hard``, LimitRange).
    * workload selectors are non-empty and select the pod template labels.
    * container / Service port ranges.
    * CronJob ``spec.schedule`` is a valid cron expression (5 fields or
      @descriptor), without the TZ= prefix the API rejects.
    """
    errors: list[str] = []
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        errors.extend(_name_errors(kind, meta))
        errors.extend(_meta_label_errors(meta, "metadata"))

    pod_path = _POD_SPEC_PATHS.get(kind)
    if pod_path is not None:
        pod_spec = _get(doc, *pod_path)
        if isinstance(pod_spec, dict):
            errors.extend(_pod_spec_errors(pod_spec, ".".join(pod_path)))
        template_meta = _get(doc, *pod_path[:-1], "metadata")
        if isinstance(template_meta, dict) and len(pod_path) > 1:
            errors.extend(_meta_label_errors(template_meta, ".".join(pod_path[:-1]) + ".metadata"))

    if kind in _SELECTOR_KINDS:
        errors.extend(_workload_selector_errors(doc))
    if kind == "StatefulSet":
        for i, claim in enumerate(_as_list(_get(doc, "spec", "volumeClaimTemplates"))):
            errors.extend(
                _resources_errors(
                    _get(claim, "spec", "resources"),
                    f"spec.volumeClaimTemplates[{i}].spec.resources",
                )
            )
    if kind == "CronJob":
        schedule = _get(doc, "spec", "schedule")
        if isinstance(schedule, str):
            errors.extend(f"spec.schedule: {e}" for e in _cron_errors(schedule))
    if kind == "Service":
        errors.extend(_service_errors(doc))
    if kind == "HorizontalPodAutoscaler":
        errors.extend(_hpa_errors(doc))
    if kind == "ResourceQuota":
        errors.extend(_quantity_map_errors(_get(doc, "spec", "hard"), "spec.hard"))
    if kind == "PersistentVolumeClaim":
        errors.extend(_resources_errors(_get(doc, "spec", "resources"), "spec.resources"))
    if kind == "PersistentVolume":
        errors.extend(_quantity_map_errors(_get(doc, "spec", "capacity"), "spec.capacity"))
    if kind == "LimitRange":
        for i, item in enumerate(_as_list(_get(doc, "spec", "limits"))):
            for field in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
                errors.extend(_quantity_map_errors(_get(item, field), f"spec.limits[{i}].{field}"))
    return errors


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _name_errors(kind: str, meta: dict[str, Any]) -> list[str]:
    """Validate ``metadata.name``/``namespace`` the way the API server does for ``kind``."""
    errors: list[str] = []
    name = meta.get("name")
    if name is None:
        if not meta.get("generateName"):
            errors.append("metadata.name: required (or metadata.generateName)")
    elif isinstance(name, str):
        if kind in _PATH_SEGMENT_KINDS:
            if name in {".", ".."} or "/" in name or "%" in name or not name:
                errors.append(f"metadata.name: {name!r} is not a valid path segment name")
        elif kind == "Service":
            if len(name) > 63 or not _DNS1035_LABEL.match(name):
                errors.append(
                    f"metadata.name: {name!r} must be an RFC 1035 label (lowercase alphanumeric "
                    "or '-', start with a letter, end alphanumeric, at most 63 characters)"
                )
        elif kind in _LABEL_NAMED_KINDS:
            limit = _CRONJOB_MAX_NAME if kind == "CronJob" else 63
            if len(name) > limit or not _DNS1123_LABEL.match(name):
                errors.append(
                    f"metadata.name: {name!r} must be a DNS-1123 label (lowercase alphanumeric "
                    f"or '-', start and end alphanumeric, at most {limit} characters)"
                )
        elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
            errors.append(
                f"metadata.name: {name!r} must be a DNS-1123 subdomain (lowercase alphanumeric, "
                "'-' or '.', start and end alphanumeric, at most 253 characters)"
            )
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and (len(namespace) > 63 or not _DNS1123_LABEL.match(namespace)):
        errors.append(f"metadata.namespace: {namespace!r} must be a DNS-1123 label")
    return errors


def _qualified_name_error(key: str) -> str | None:
    """Check a label/annotation key: ``[prefix/]name`` (prefix a DNS subdomain)."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return f"key {key!r}: prefix must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            f"key {key!r}: name part must be 1-63 alphanumeric, '-', '_' or '.' characters, "
            "starting and ending alphanumeric"
        )
    return None


def _label_map_errors(labels: Any, where: str) -> list[str]:
    """Label keys are qualified names; values are <=63 chars of the label charset."""
    if not isinstance(labels, dict):
        return []
    errors: list[str] = []
    for key, value in labels.items():
        problem = _qualified_name_error(str(key))
        if problem:
            errors.append(f"{where}: {problem}")
        if isinstance(value, str) and (len(value) > 63 or not _LABEL_VALUE.match(value)):
            errors.append(f"{where}.{key}: invalid label value {value!r}")
    return errors


def _meta_label_errors(meta: dict[str, Any], where: str) -> list[str]:
    errors = _label_map_errors(meta.get("labels"), f"{where}.labels")
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        for key in annotations:
            problem = _qualified_name_error(str(key))
            if problem:
                errors.append(f"{where}.annotations: {problem}")
    return errors


def _parse_quantity(value: Any) -> Decimal | None:
    """Parse a Kubernetes quantity (string or JSON number) to a Decimal; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value)
    if not match:
        return None
    try:
        number = Decimal(match.group("num"))
    except InvalidOperation:  # pragma: no cover - regex guarantees a number
        return None
    suffix = match.group("suffix") or ""
    if suffix in _BINARY_SI:
        return number * _BINARY_SI[suffix]
    if suffix in _DECIMAL_SI:
        return number * _DECIMAL_SI[suffix]
    try:
        return number.scaleb(int(suffix[1:]))
    except ArithmeticError:  # absurd exponent
        return None


_QUANTITY_MAX = Decimal(2**63 - 1)


def _quantity_too_large(resource: str, value: Decimal) -> bool:
    """A quantity must be at most 2^63-1; cpu is used in millicores, so cores * 1000."""
    scale = 1000 if resource.endswith("cpu") else 1
    return value * scale > _QUANTITY_MAX


def _quantity_map_errors(quantities: Any, where: str) -> list[str]:
    """Validate a ``{resource: quantity}`` map; see :func:`_parse_quantities`."""
    return _parse_quantities(quantities, where)[1]


def _parse_quantities(quantities: Any, where: str) -> tuple[dict[str, Decimal], list[str]]:
    """Parse a ``{resource: quantity}`` map, reporting bad or negative values."""
    parsed: dict[str, Decimal] = {}
    errors: list[str] = []
    if not isinstance(quantities, dict):
        return parsed, errors
    for resource, raw in quantities.items():
        value = _parse_quantity(raw)
        if value is None:
            errors.append(
                f"{where}.{resource}: {raw!r} is not a Kubernetes quantity "
                "(e.g. '500m', '1.5', '128Mi', '1G', '1e3')"
            )
        elif value < 0:
            errors.append(f"{where}.{resource}: {raw!r} must not be negative")
        elif _quantity_too_large(str(resource), value):
            errors.append(
                f"{where}.{resource}: {raw!r} is above the Kubernetes quantity limit (2^63-1"
                + (" millicores)" if str(resource).endswith("cpu") else ")")
            )
        else:
            parsed[str(resource)] = value
    return parsed, errors


def _resources_errors(resources: Any, where: str) -> list[str]:
    """Check ``requests``/``limits`` quantities and that requests <= limits."""
    requests, errors = _parse_quantities(_get(resources, "requests"), f"{where}.requests")
    limits, limit_errors = _parse_quantities(_get(resources, "limits"), f"{where}.limits")
    errors.extend(limit_errors)
    for resource, request in requests.items():
        limit = limits.get(resource)
        if limit is not None and request > limit:
            errors.append(
                f"{where}.requests.{resource}: must be less than or equal to the "
                f"{resource} limit ({_get(resources, 'limits', resource)!r})"
            )
    return errors


def _pod_spec_errors(pod_spec: dict[str, Any], where: str) -> list[str]:
    """Quantities and ports inside a PodSpec (all container kinds and volumes)."""
    errors: list[str] = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(_as_list(pod_spec.get(field))):
            cwhere = f"{where}.{field}[{i}]"
            errors.extend(_resources_errors(_get(container, "resources"), f"{cwhere}.resources"))
            image = _get(container, "image")
            if isinstance(image, str) and not _is_image_reference(image):
                errors.append(f"{cwhere}.image: {image!r} is not a valid image reference")
            for j, port in enumerate(_as_list(_get(container, "ports"))):
                number = _get(port, "containerPort")
                if isinstance(number, int) and not 1 <= number <= 65535:
                    errors.append(f"{cwhere}.ports[{j}].containerPort: {number} not in 1-65535")
    errors.extend(_resources_errors(pod_spec.get("resources"), f"{where}.resources"))
    errors.extend(_quantity_map_errors(pod_spec.get("overhead"), f"{where}.overhead"))
    for i, volume in enumerate(_as_list(pod_spec.get("volumes"))):
        size = _get(volume, "emptyDir", "sizeLimit")
        if size is not None and _parse_quantity(size) is None:
            errors.append(f"{where}.volumes[{i}].emptyDir.sizeLimit: {size!r} is not a quantity")
    return errors


# The container image reference grammar: [host[:port]/]path[:tag][@algo:hex].
_IMAGE_HOST = r"(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]+)?"
_IMAGE_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_IMAGE = re.compile(
    rf"(?P<name>(?:{_IMAGE_HOST}/)?{_IMAGE_PATH})(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    re.ASCII,
)


def _is_image_reference(image: str) -> bool:
    """What a container runtime can pull; the name part is at most 255 characters.

    A first component without `.`/`:` that is not `localhost` is a path component
    (lowercase), never a host, so `Shop/api` is refused.
    """
    match = _IMAGE.fullmatch(image)
    if match is None or len(match.group("name")) > 255:
        return False
    first, slash, _ = match.group("name").partition("/")
    is_host = slash and ("." in first or ":" in first or first == "localhost" or first[:1] == "[")
    return bool(is_host) or re.fullmatch(_IMAGE_PATH, match.group("name")) is not None


def _behavior_errors(behavior: Any, at: str) -> list[str]:
    """HPA `behavior` bounds (also inside a KEDA ScaledObject's `advanced` block)."""
    errors: list[str] = []
    for direction in ("scaleUp", "scaleDown"):
        rules = _get(behavior, direction)
        if not isinstance(rules, dict):
            continue
        where = f"{at}.{direction}"
        window = rules.get("stabilizationWindowSeconds")
        if isinstance(window, int) and not 0 <= window <= 3600:
            errors.append(f"{where}.stabilizationWindowSeconds: {window} not in 0..3600")
        for i, policy in enumerate(_as_list(rules.get("policies"))):
            period, value = _get(policy, "periodSeconds"), _get(policy, "value")
            if isinstance(period, int) and not 1 <= period <= 1800:
                errors.append(f"{where}.policies[{i}].periodSeconds: {period} not in 1..1800")
            if isinstance(value, int) and value <= 0:
                errors.append(f"{where}.policies[{i}].value: {value} must be positive")
    return errors


def _hpa_errors(doc: dict[str, Any]) -> list[str]:
    """HPA bounds the API server enforces beyond the schema (autoscaling/v2 validation).

    minReplicas >= 1 (without the alpha HPAScaleToZero gate), maxReplicas >= minReplicas,
    behavior policies: periodSeconds 1..1800, value > 0, stabilizationWindowSeconds
    0..3600; Utilization targets > 0.
    """
    errors: list[str] = []
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
    if isinstance(low, int) and low < 1:
        errors.append(f"spec.minReplicas: {low} must be at least 1")
    if isinstance(low, int) and isinstance(high, int) and high < low:
        errors.append(f"spec.maxReplicas: {high} must be at least minReplicas ({low})")
    errors.extend(_behavior_errors(spec.get("behavior"), "spec.behavior"))
    errors.extend(_behavior_enum_errors(spec.get("behavior"), "spec.behavior"))
    for i, metric in enumerate(_as_list(spec.get("metrics"))):
        for source in ("resource", "pods", "object", "external", "containerResource"):
            target = _get(metric, source, "target")
            if not isinstance(target, dict):
                continue
            utilization = target.get("averageUtilization")
            if isinstance(utilization, int) and utilization <= 0:
                errors.append(f"spec.metrics[{i}].{source}.target.averageUtilization: must be > 0")
            for key in ("averageValue", "value"):
                if key in target:
                    quantity = _parse_quantity(target[key])
                    if quantity is None or quantity > _QUANTITY_MAX:
                        errors.append(
                            f"spec.metrics[{i}].{source}.target.{key}: {target[key]!r} is not"
                            " a Kubernetes quantity within 2^63-1"
                        )
            name = _get(metric, source, "metric", "name")
            if isinstance(name, str) and not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
                errors.append(
                    f"spec.metrics[{i}].{source}.metric.name: {name!r} is not a metric name"
                )
    return errors


def _selector_matches(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    """Evaluate a LabelSelector (matchLabels + matchExpressions) against labels."""
    match_labels = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in _as_list(selector.get("matchExpressions")):
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _workload_selector_errors(doc: dict[str, Any]) -> list[str]:
    """apps/v1 workloads need a non-empty selector that selects their own template.

    The API server rejects ``selector does not match template labels``; the
    schema only says ``selector`` is an object.
    """
    selector = _get(doc, "spec", "selector")
    if not isinstance(selector, dict):
        return []
    errors = _label_map_errors(selector.get("matchLabels"), "spec.selector.matchLabels")
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return [*errors, "spec.selector: empty selector is invalid for apps/v1 workloads"]
    labels = _get(doc, "spec", "template", "metadata", "labels")
    labels = labels if isinstance(labels, dict) else {}
    match_labels = selector.get("matchLabels")
    if isinstance(match_labels, dict):
        for key, value in match_labels.items():
            if labels.get(key) != value:
                errors.append(
                    f"spec.selector.matchLabels.{key}: {value!r} is not in "
                    "spec.template.metadata.labels (selector does not match template labels)"
                )
    if not errors and not _selector_matches(selector, labels):
        errors.append("spec.selector: matchExpressions do not match template labels")
    return errors


def _service_errors(doc: dict[str, Any]) -> list[str]:
    """Service port ranges and selector label syntax."""
    errors = _label_map_errors(_get(doc, "spec", "selector"), "spec.selector")
    for i, port in enumerate(_as_list(_get(doc, "spec", "ports"))):
        number = _get(port, "port")
        if isinstance(number, int) and not 1 <= number <= 65535:
            errors.append(f"spec.ports[{i}].port: {number} not in 1-65535")
        target = _get(port, "targetPort")
        if isinstance(target, int) and not 1 <= target <= 65535:
            errors.append(f"spec.ports[{i}].targetPort: {target} not in 1-65535")
        if isinstance(target, str) and (len(target) > 15 or not _IANA_SVC_NAME.match(target)):
            errors.append(f"spec.ports[{i}].targetPort: {target!r} is not an IANA service name")
    return errors


def _cron_errors(schedule: str) -> list[str]:
    """Validate a CronJob schedule like robfig/cron's ParseStandard (used by Kubernetes).

    Five fields (minute hour day-of-month month day-of-week) with ``*``, ``?``,
    lists, ranges, steps and JAN-DEC / SUN-SAT names, or a descriptor
    (``@hourly``..., ``@every <duration>``).  ``TZ=``/``CRON_TZ=`` prefixes are
    rejected by the API server (use ``spec.timeZone``).
    """
    text = schedule.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        return ["TZ/CRON_TZ prefixes are not allowed; use spec.timeZone"]
    if text.startswith("@"):
        if text in _CRON_DESCRIPTORS:
            return []
        if re.fullmatch(r"@every\s+([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+", text):
            return []
        return [f"unknown cron descriptor {text!r}"]
    fields = text.split()
    if len(fields) != 5:
        return [f"{schedule!r} must have exactly 5 fields, got {len(fields)}"]
    errors: list[str] = []
    for raw, (label, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        errors.extend(
            f"{label} field {raw!r}: {e}" for e in _cron_field_errors(raw, low, high, names)
        )
    return errors


def _cron_field_errors(field: str, low: int, high: int, names: dict[str, int]) -> list[str]:
    """Check one comma-separated cron field against its bounds."""

    def value(token: str) -> int | None:
        if token.isdigit():
            return int(token)
        return names.get(token.upper())

    errors: list[str] = []
    for part in field.split(","):
        range_part, slash, step = part.partition("/")
        if slash and (not step.isdigit() or int(step) == 0):
            errors.append(f"bad step {step!r}")
            continue
        if range_part in {"*", "?"}:
            continue
        start_s, dash, end_s = range_part.partition("-")
        start = value(start_s)
        end = value(end_s) if dash else start
        if start is None or end is None:
            errors.append(f"bad value {range_part!r}")
        elif not (low <= start <= high and low <= end <= high):
            errors.append(f"{range_part!r} out of range {low}-{high}")
        elif start > end:
            errors.append(f"range {range_part!r} has start > end")
    return errors


def _keda_scaledobject_errors(doc: dict[str, Any]) -> list[str]:
    """Structural check for ``keda.sh/v1alpha1 ScaledObject``.

    kubernetes-validate ships only core Kubernetes schemas (no KEDA CRDs), so
    this encodes the parts of KEDA's CRD (v2.x) that the compiler relies on:

    * only the known top-level keys and ``spec`` keys (strict, like the others);
    * ``spec.scaleTargetRef.name`` is a non-empty string (``kind``/
      ``apiVersion``/``envSourceContainerName`` optional strings);
    * ``spec.triggers`` is a non-empty list; each trigger has a string
      ``type`` and a ``metadata`` mapping of string values (KEDA's
      ``map[string]string``), optional ``name``/``useCachedMetrics``/
      ``authenticationRef.name``/``metricType`` in Value/AverageValue/Utilization;
    * ``minReplicaCount``/``maxReplicaCount``/``idleReplicaCount``/
      ``pollingInterval``/``cooldownPeriod``/``initialCooldownPeriod`` are
      non-negative ints, with min <= max and idle < min as KEDA's webhook requires.
    """
    errors: list[str] = []
    allowed_top = {"apiVersion", "kind", "metadata", "spec", "status"}
    errors.extend(f"{k}: unknown field" for k in doc if k not in allowed_top)
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return [*errors, "spec: required object"]
    allowed_spec = {
        "scaleTargetRef",
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
        "idleReplicaCount",
        "minReplicaCount",
        "maxReplicaCount",
        "fallback",
        "advanced",
        "triggers",
    }
    errors.extend(f"spec.{k}: unknown field" for k in spec if k not in allowed_spec)

    target = spec.get("scaleTargetRef")
    if not isinstance(target, dict):
        errors.append("spec.scaleTargetRef: required object")
    else:
        if not isinstance(target.get("name"), str) or not target.get("name"):
            errors.append("spec.scaleTargetRef.name: required non-empty string")
        for key, val in target.items():
            if key not in {"name", "kind", "apiVersion", "envSourceContainerName"}:
                errors.append(f"spec.scaleTargetRef.{key}: unknown field")
            elif not isinstance(val, str):
                errors.append(f"spec.scaleTargetRef.{key}: must be a string")

    ints: dict[str, int] = {}
    for key in (
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
        "idleReplicaCount",
        "minReplicaCount",
        "maxReplicaCount",
    ):
        if key in spec:
            val = spec[key]
            if isinstance(val, bool) or not isinstance(val, int):
                errors.append(f"spec.{key}: must be an integer, got {val!r}")
            elif val < 0:
                errors.append(f"spec.{key}: must be >= 0")
            elif val > 2**31 - 1:
                errors.append(f"spec.{key}: {val} does not fit int32")
            else:
                ints[key] = val
    errors.extend(
        _behavior_errors(
            _get(spec, "advanced", "horizontalPodAutoscalerConfig", "behavior"),
            "spec.advanced.horizontalPodAutoscalerConfig.behavior",
        )
    )
    low, high = ints.get("minReplicaCount", 0), ints.get("maxReplicaCount", 100)
    if low > high:
        errors.append(f"spec.minReplicaCount ({low}) must be <= spec.maxReplicaCount ({high})")
    if "idleReplicaCount" in ints and ints["idleReplicaCount"] >= low:
        errors.append("spec.idleReplicaCount must be less than spec.minReplicaCount")

    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        errors.append("spec.triggers: required non-empty list")
        return errors
    for i, trigger in enumerate(triggers):
        where = f"spec.triggers[{i}]"
        if not isinstance(trigger, dict):
            errors.append(f"{where}: must be an object")
            continue
        allowed_trigger = {
            "type",
            "name",
            "metadata",
            "authenticationRef",
            "metricType",
            "useCachedMetrics",
        }
        errors.extend(f"{where}.{k}: unknown field" for k in trigger if k not in allowed_trigger)
        if not isinstance(trigger.get("type"), str) or not trigger.get("type"):
            errors.append(f"{where}.type: required non-empty string")
        metadata = trigger.get("metadata")
        if not isinstance(metadata, dict):
            errors.append(f"{where}.metadata: required mapping")
        else:
            errors.extend(
                f"{where}.metadata.{k}: values must be strings, got {type(v).__name__}"
                for k, v in metadata.items()
                if not isinstance(v, str)
            )
        metric_type = trigger.get("metricType")
        if metric_type is not None and metric_type not in {"Value", "AverageValue", "Utilization"}:
            errors.append(f"{where}.metricType: {metric_type!r} not Value/AverageValue/Utilization")
        auth = trigger.get("authenticationRef")
        if auth is not None and not (isinstance(auth, dict) and isinstance(auth.get("name"), str)):
            errors.append(f"{where}.authenticationRef.name: required string")
    return errors


def _unknown_fields(given: Any, kept: Any, at: str) -> list[str]:
    """Paths present in `given` but dropped by the model (pydantic ignores extra keys)."""
    if isinstance(given, dict) and isinstance(kept, dict):
        errors: list[str] = []
        for key, value in given.items():
            where = f"{at}.{key}" if at else str(key)
            if key not in kept:
                errors.append(f"{where}: unknown field")
            else:
                errors.extend(_unknown_fields(value, kept[key], where))
        return errors
    if isinstance(given, list) and isinstance(kept, list):
        return [
            e
            for i, (g, k) in enumerate(zip(given, kept, strict=False))
            for e in _unknown_fields(g, k, f"{at}[{i}]")
        ]
    return []


def strict_model_errors(model: Any, doc: dict[str, Any]) -> list[str]:
    """Validate `doc` with a generated pydantic model of a CRD, strictly.

    Strict mode (no coercion: `"3"` is not an int) and no unknown fields: the
    cloudcoil models ignore extra keys, so every key the model does not keep
    is reported, as the API server's strict field validation would.
    """
    import pydantic

    try:
        obj = model.model_validate(doc, strict=True)
    except pydantic.ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    kept = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return _unknown_fields(doc, kept, "")


_SELECT_POLICIES = {"Max", "Min", "Disabled"}
_POLICY_TYPES = {"Pods", "Percent"}


def _behavior_enum_errors(behavior: Any, at: str) -> list[str]:
    errors: list[str] = []
    for direction in ("scaleUp", "scaleDown"):
        rules = _get(behavior, direction)
        if not isinstance(rules, dict):
            continue
        select = rules.get("selectPolicy")
        if select is not None and select not in _SELECT_POLICIES:
            errors.append(f"{at}.{direction}.selectPolicy: {select!r} not Max/Min/Disabled")
        policies = _as_list(rules.get("policies"))
        if "policies" in rules and not policies:
            errors.append(f"{at}.{direction}.policies: at least one policy is required")
        for i, policy in enumerate(policies):
            if _get(policy, "type") not in _POLICY_TYPES:
                errors.append(f"{at}.{direction}.policies[{i}].type: not Pods/Percent")
    return errors


def _cron_trigger_errors(metadata: dict[str, Any], where: str) -> list[str]:
    """KEDA's cron scaler: `timezone` an IANA name, `start` != `end` 5-field crons, a count."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from croniter import croniter

    errors: list[str] = []
    for key in ("timezone", "start", "end", "desiredReplicas"):
        if key not in metadata:
            errors.append(f"{where}.metadata.{key}: required")
    zone = metadata.get("timezone")
    if isinstance(zone, str):
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(f"{where}.metadata.timezone: {zone!r} is not an IANA zone")
    for key in ("start", "end"):
        spec = metadata.get(key)
        if isinstance(spec, str) and (len(spec.split()) != 5 or not croniter.is_valid(spec)):
            errors.append(f"{where}.metadata.{key}: {spec!r} is not a 5-field cron")
    if metadata.get("start") == metadata.get("end"):
        errors.append(f"{where}.metadata: start and end must differ")
    replicas = metadata.get("desiredReplicas")
    if isinstance(replicas, str) and not replicas.isdigit():
        errors.append(f"{where}.metadata.desiredReplicas: {replicas!r} is not a replica count")
    return errors


def _prometheus_trigger_errors(metadata: dict[str, Any], where: str) -> list[str]:
    errors = [
        f"{where}.metadata.{key}: required"
        for key in ("serverAddress", "query", "threshold")
        if not metadata.get(key)
    ]
    threshold = metadata.get("threshold")
    if isinstance(threshold, str):
        try:
            if Decimal(threshold) <= 0:
                errors.append(f"{where}.metadata.threshold: must be positive")
        except InvalidOperation:
            errors.append(f"{where}.metadata.threshold: {threshold!r} is not a number")
    return errors


def keda_scaledobject_errors(doc: dict[str, Any]) -> list[str]:
    """A ScaledObject: the strict cloudcoil model, the structural check, and what KEDA's
    webhook and scalers refuse (behavior enums and ranges, cron and prometheus metadata)."""
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    errors = strict_model_errors(ScaledObject, doc) + _keda_scaledobject_errors(doc)
    behavior = _get(doc, "spec", "advanced", "horizontalPodAutoscalerConfig", "behavior")
    errors += _behavior_enum_errors(
        behavior, "spec.advanced.horizontalPodAutoscalerConfig.behavior"
    )
    for i, trigger in enumerate(_as_list(_get(doc, "spec", "triggers"))):
        metadata = _get(trigger, "metadata")
        if not isinstance(metadata, dict):
            continue
        where = f"spec.triggers[{i}]"
        if _get(trigger, "type") == "cron":
            errors += _cron_trigger_errors(metadata, where)
        elif _get(trigger, "type") == "prometheus":
            errors += _prometheus_trigger_errors(metadata, where)
        elif _get(trigger, "type") in ("cpu", "memory") and _get(trigger, "metricType") not in (
            "Utilization",
            "AverageValue",
        ):
            errors.append(f"{where}.metricType: cpu/memory need Utilization or AverageValue")
    return errors


def keda_trigger_authentication_errors(doc: dict[str, Any]) -> list[str]:
    """A TriggerAuthentication, with the strict cloudcoil model."""
    from cloudcoil.models.keda.v1alpha1 import TriggerAuthentication

    return strict_model_errors(TriggerAuthentication, doc)


_CRD_CHECKS: dict[tuple[str, str], Callable[[dict[str, Any]], list[str]]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda_scaledobject_errors,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda_trigger_authentication_errors,
}


# ---------------------------------------------------------------------------
# Envoy
# ---------------------------------------------------------------------------

_ANY = "google.protobuf.Any"
_OPAQUE = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)
_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER_URL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
# (message full name, field) pairs whose string value names a cluster.
_CLUSTER_REFS: dict[str, tuple[str, ...]] = {
    "envoy.config.route.v3.RouteAction": ("cluster",),
    "envoy.config.route.v3.RouteAction.RequestMirrorPolicy": ("cluster",),
    "envoy.config.route.v3.WeightedCluster.ClusterWeight": ("name",),
    "envoy.config.core.v3.GrpcService.EnvoyGrpc": ("cluster_name",),
    "envoy.config.core.v3.HttpUri": ("cluster",),
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy": ("cluster",),
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight": (
        "name",
    ),
}


def validate_envoy_bootstrap(config: dict[str, Any]) -> list[str]:
    """Validate an Envoy v3 bootstrap (JSON-shaped dict); return error messages.

    Three layers, each catching what Envoy itself rejects at startup:

    1. ``json_format.ParseDict`` into ``envoy.config.bootstrap.v3.Bootstrap``
       (unknown fields, wrong types, unknown enum names, unknown ``@type``).
       The ``_pb2`` module of every ``@type`` URL in the dict is imported first
       so that ``typed_config`` Any payloads resolve.
    2. protoc-gen-validate rules from the ``(validate.rules)`` options in the
       descriptors, enforced by the ``protoc-gen-validate`` package on the
       bootstrap and again on every unpacked ``Any`` payload (PGV itself does
       not look inside ``Any``).
    3. Cross references: every cluster named by a route/gRPC service/HTTP URI
       exists in ``static_resources.clusters`` (unless CDS is configured), the
       router is the last HTTP filter of every HTTP connection manager,
       listener and cluster names are unique, and virtual host domains are
       unique within a route configuration.
    """
    from envoy.config.bootstrap.v3 import bootstrap_pb2
    from google.protobuf import json_format

    for type_url in sorted(_type_urls(config)):
        _message_class(type_url.rpartition("/")[2])
    bootstrap = bootstrap_pb2.Bootstrap()
    try:
        json_format.ParseDict(config, bootstrap)
    except json_format.ParseError as exc:
        # Drop protobuf's long "Available Fields" list; the first line names the problem.
        return [f"parse: {str(exc).split(chr(10))[0].rstrip('.')}"]

    visited: list[tuple[str, Message]] = []
    errors: list[str] = []
    with _pgv_shallow():
        _walk_message(bootstrap, "", visited, errors)
    errors.extend(_envoy_crossref_errors(bootstrap, visited))
    return errors


def _type_urls(obj: Any) -> set[str]:
    """Collect every ``@type`` value anywhere in a JSON-shaped structure."""
    found: set[str] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            type_url = item.get("@type")
            if isinstance(type_url, str):
                found.add(type_url)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


@functools.cache
def _message_class(full_name: str) -> type[Message] | None:
    """Return the generated class for a proto message, importing its module on demand.

    The ``xds-protos`` layout mirrors proto packages (``envoy.extensions.
    filters.http.router.v3.Router`` lives in ``envoy/extensions/filters/http/
    router/v3/router_pb2.py``), but file names do not always match message
    names, so every ``*_pb2`` module of the package is imported and the
    default descriptor pool is asked.  Nested messages (``pkg.Outer.Inner``)
    are handled by walking up until a Python package exists.
    """
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.Default()
    cls: type[Message]
    try:
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))
        return cls
    except KeyError:
        pass
    parts = full_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        package = ".".join(parts[:cut])
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        for module in pkgutil.iter_modules(spec.submodule_search_locations):
            if module.name.endswith("_pb2"):
                importlib.import_module(f"{package}.{module.name}")
        break
    try:
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))
    except KeyError:
        return None
    return cls


def _no_nested_errors(message: Message) -> list[str]:
    """Stand-in for PGV's recursive ``_validate_all`` (see :func:`_pgv_own_errors`)."""
    return []


@contextlib.contextmanager
def _pgv_shallow() -> Iterator[None]:
    """Make protoc-gen-validate check one message at a time.

    PGV 1.3.3 generates one validator per message type whose nested-message
    checks call the module-global ``_validate_all``; swapping that for a stub
    during the walk makes each call check only the message's own fields.
    :func:`_walk_message` then visits every message itself (including
    ``Any`` payloads, which PGV never opens), so each error carries the exact
    path of the offending message instead of PGV's bare ``p.<field>``.

    PGV's ``pattern`` rules are RE2 regexes where ``$`` means end of text,
    but the Python port runs them with ``re.search`` where ``$`` also matches
    before a trailing newline (so ``"x-header\\n"`` passed
    ``HTTP_HEADER_NAME``); the module's ``re`` is swapped for a shim that
    anchors such patterns with ``\\Z``.
    """
    from protoc_gen_validate import validator as pgv

    saved = pgv._validate_all, pgv.re
    pgv._validate_all = _no_nested_errors
    pgv.re = _Re2AnchoredRe()
    try:
        yield
    finally:
        pgv._validate_all, pgv.re = saved


class _Re2AnchoredRe:
    """``re`` stand-in for PGV whose ``search`` gives ``$`` RE2's end-of-text meaning."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    def search(pattern: str, string: str, flags: int = 0) -> re.Match[str] | None:
        if pattern.endswith("$") and not pattern.endswith("\\$"):
            pattern = pattern[:-1] + r"\Z"
        return re.search(pattern, string, flags)


def _pgv_own_errors(message: Message, path: str) -> list[str]:
    """PGV errors of ``message``'s own fields (nested messages are visited separately).

    Must run inside :func:`_pgv_shallow`.  ``p.<field> ...`` in PGV's text is
    rewritten to ``<path>.<field>: ...``.
    """
    from protoc_gen_validate import validator as pgv

    try:
        with warnings.catch_warnings():
            # PGV's templates call FieldDescriptor.label, deprecated in protobuf 6.
            warnings.filterwarnings("ignore", r"label\(\) is deprecated", DeprecationWarning)
            check = pgv._validate_all_inner(pgv.ValidatingMessage(message))
    except SyntaxError as exc:
        # PGV's code generator emits invalid Python for a few types (e.g. oauth2
        # CookieConfig in xds-protos 1.85); skip those loudly rather than fail.
        warnings.warn(
            f"protoc-gen-validate cannot check {message.DESCRIPTOR.full_name}: {exc}",
            RuntimeWarning,
            stacklevel=2,
        )
        return []
    where = path or "<bootstrap>"
    errors: list[str] = []
    for raw in check(message) or []:
        # Messages may embed the rule's regex with literal control characters.
        line = raw.encode("unicode_escape").decode("ascii")
        match = re.match(r"^p\.([A-Za-z0-9_.]+)\s+(.*)$", line)
        if match:
            errors.append(f"{where}.{match.group(1)}: {match.group(2)} [pgv]".lstrip("."))
        else:
            errors.append(f"{where}: {line} [pgv]")
    return errors


@functools.cache
def _pgv_skips(field: FieldDescriptor) -> bool:
    """Whether ``field`` carries ``(validate.rules).message.skip`` (PGV must not recurse)."""
    from validate import validate_pb2

    options = field.GetOptions()
    if not options.HasExtension(validate_pb2.rules):
        return False
    return bool(options.Extensions[validate_pb2.rules].message.skip)


def _walk_message(
    message: Message,
    path: str,
    visited: list[tuple[str, Message]],
    errors: list[str],
    pgv: bool = True,
) -> None:
    """Depth-first walk of set message fields, unpacking ``Any`` payloads.

    Records every (path, message) for the cross-reference checks and applies
    PGV to each message (unless an ancestor field said ``skip``), including
    unpacked ``Any`` payloads, as Envoy validates typed configs when it
    instantiates an extension.  ``Struct``/``Value`` are opaque JSON.
    """
    visited.append((path, message))
    if pgv:
        errors.extend(_pgv_own_errors(message, path))
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is None:
                continue
            items = [(f"{path}.{field.name}[{key!r}]", val) for key, val in value.items()]
        elif field.is_repeated:
            items = [(f"{path}.{field.name}[{i}]", val) for i, val in enumerate(value)]
        else:
            items = [(f"{path}.{field.name}", value)]
        child_pgv = pgv and not _pgv_skips(field)
        for sub_path, sub in items:
            sub_path = sub_path.lstrip(".")
            full_name = sub.DESCRIPTOR.full_name
            if full_name in _OPAQUE:
                continue
            if full_name == _ANY:
                cls = _message_class(sub.type_url.rpartition("/")[2])
                if cls is None:
                    errors.append(f"{sub_path}: unknown Any type {sub.type_url!r}")
                    continue
                inner = cls()
                if not sub.Unpack(inner):  # pragma: no cover - ParseDict already checked
                    errors.append(f"{sub_path}: cannot unpack {sub.type_url!r}")
                    continue
                sub = inner
            _walk_message(sub, sub_path, visited, errors, child_pgv)


def _envoy_crossref_errors(bootstrap: Any, visited: list[tuple[str, Message]]) -> list[str]:
    """Checks across messages that Envoy performs when loading the config."""
    errors: list[str] = []
    static = bootstrap.static_resources
    for what, items in (("listener", static.listeners), ("cluster", static.clusters)):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.name in seen:
                errors.append(f"static_resources.{what}s[{i}]: duplicate {what} name {item.name!r}")
            seen.add(item.name)

    cluster_names = {c.name for c in static.clusters}
    dynamic = bootstrap.dynamic_resources
    has_cds = bootstrap.HasField("dynamic_resources") and (
        dynamic.HasField("cds_config") or bool(dynamic.cds_resources_locator)
    )
    for path, message in visited:
        full_name = message.DESCRIPTOR.full_name
        for field_name in _CLUSTER_REFS.get(full_name, ()):
            name = getattr(message, field_name)
            if name and not has_cds and name not in cluster_names:
                errors.append(
                    f"{path}.{field_name}: cluster {name!r} is not defined in "
                    "static_resources.clusters"
                )
        if full_name == _HCM:
            errors.extend(_hcm_errors(message, path))
        if full_name == "envoy.config.route.v3.RouteConfiguration":
            domains: dict[str, str] = {}
            route_config: Any = message
            for i, vhost in enumerate(route_config.virtual_hosts):
                for domain in vhost.domains:
                    if domain in domains:
                        errors.append(
                            f"{path}.virtual_hosts[{i}]: domain {domain!r} already used by "
                            f"virtual host {domains[domain]!r}"
                        )
                    domains[domain] = vhost.name
    return errors


def _hcm_errors(hcm: Any, path: str) -> list[str]:
    """The router filter must exist and be the last HTTP filter (Envoy enforces it)."""
    filters = list(hcm.http_filters)
    if not filters:
        return [f"{path}.http_filters: empty; the router filter must be last"]
    errors: list[str] = []
    for i, http_filter in enumerate(filters):
        is_router = http_filter.typed_config.type_url == _ROUTER_URL
        last = i == len(filters) - 1
        if is_router and not last:
            errors.append(f"{path}.http_filters[{i}]: router filter must be the last HTTP filter")
        if last and not is_router and not http_filter.HasField("config_discovery"):
            errors.append(
                f"{path}.http_filters[{i}]: last HTTP filter is {http_filter.name!r}, "
                f"not the router ({_ROUTER_URL})"
            )
    return errors


# ---------------------------------------------------------------------------
# Rego: regopy (rego-cpp) and the real OPA engine
# ---------------------------------------------------------------------------
#
# Result contract shared by run_rego, RegoEvaluator and run_opa, so a test can
# run the same case through both engines and compare:
#   * a reference query (``data.pkg.rule``, ``input.x``) gives the referenced
#     value, or ``default`` (None unless passed) when it is undefined;
#   * a reference with a variable index (``data.xs[_]``, ``data.m[k]``) gives
#     the list of values found (possibly empty);
#   * any other query gives its variable bindings (``x := ...``) as a dict, or
#     ``True`` if it succeeds without binding variables; several solutions
#     give a list of those; no solution (or a false single expression, which
#     OPA would report as the value ``false``) gives ``default``.
# Reference queries are run as ``__result__ = <ref>``: rego-cpp reports a
# query whose value is ``false`` as undefined, and the OPA bindings return
# only bindings, so binding the value is the one form both answer faithfully.


class RegoEvalError(RuntimeError):
    """A Rego module, data document or query was rejected by the engine."""


_RESULT_VAR = "__result__"
_OK_VAR = "__satisfied__"
_REF_QUERY = re.compile(
    r"^(data|input)(\.[A-Za-z_][A-Za-z0-9_]*|\[\s*(\"[^\"]*\"|[0-9]+|[A-Za-z_][A-Za-z0-9_]*)\s*\])*$"
)
# Builtin namespaces: a dotted call under one of these that rego-cpp does not
# implement would silently be undefined there, so it is reported up front.
_BUILTIN_NAMESPACES = frozenset(
    {
        "array", "base64", "base64url", "bits", "crypto", "glob", "graph", "graphql", "hex",
        "http", "io", "json", "net", "numbers", "object", "opa", "providers", "regex", "rego",
        "semver", "strings", "time", "units", "urlquery", "uuid", "yaml",
    }
)  # fmt: skip
_DOTTED_CALL = re.compile(r"(?<![\w.])([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)\s*\(")


_VAR_INDEX = re.compile(r"\[\s*[A-Za-z_]")


def _wrap_query(query: str) -> tuple[str, str]:
    """Return the query to run and its kind: ``"ref"``, ``"iter"`` or ``"query"``."""
    stripped = query.strip()
    if _REF_QUERY.match(stripped):
        kind = "iter" if _VAR_INDEX.search(stripped) else "ref"
        return f"{_RESULT_VAR} = {stripped}", kind
    return stripped, "query"


def _decode_solutions(solutions: Sequence[Mapping[str, Any]], kind: str, default: object) -> object:
    """Apply the shared result contract to a list of per-solution bindings."""
    if kind == "iter":
        return [s.get(_RESULT_VAR) for s in solutions]
    if not solutions:
        return default
    if kind == "ref":
        values: list[object] = [s.get(_RESULT_VAR) for s in solutions]
    else:
        values = [dict(s) if s else True for s in solutions]
    return values[0] if len(values) == 1 else values


@contextlib.contextmanager
def _capture_native_stdout() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 1.

    rego-cpp prints its diagnostics (the only readable form of parse and
    compile errors) to C stdout and gives Python just an opaque error node,
    so fd 1 is redirected to a temp file for the call.  Not thread-safe;
    tests run one evaluation at a time per process (pytest-xdist uses processes).
    """
    libc = ctypes.CDLL(None)
    captured: list[str] = []
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield captured
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode("utf-8", errors="replace"))


def _regopy_solutions(output: Any, what: str, diagnostics: str) -> list[dict[str, Any]]:
    """Bindings of each solution in a regopy Output; raise on an error Output.

    An undefined query comes back as one empty result; a satisfied query
    without variables as one result with expressions but no bindings.
    """
    if not output.ok():
        raise RegoEvalError(f"regopy: {what} failed:\n{diagnostics.strip() or output}")
    return [dict(r.bindings) for r in output.results if r.expressions or r.bindings]


def _check_regopy_builtins(interpreter: Any, modules: Mapping[str, str]) -> None:
    """Raise if a module calls a builtin rego-cpp lacks (it would be silently undefined).

    rego-cpp 1.5 has no ``net.cidr_*`` builtins, for example; OPA has them.
    """
    missing: set[str] = set()
    for source in modules.values():
        code = "\n".join(line.split("#", 1)[0] for line in source.splitlines())
        for name in _DOTTED_CALL.findall(code):
            if name.split(".", 1)[0] in _BUILTIN_NAMESPACES and not interpreter.is_builtin(name):
                missing.add(name)
    if missing:
        raise RegoEvalError(
            f"regopy (rego-cpp) does not implement builtin(s) {sorted(missing)}; "
            "use run_opa() for policies that need them"
        )


def _regopy_interpreter(modules: Mapping[str, str], data: Mapping[str, Any] | None) -> Any:
    """A fresh rego-cpp interpreter loaded with ``modules`` and ``data``."""
    from regopy import Interpreter

    interpreter = Interpreter()
    _check_regopy_builtins(interpreter, modules)
    for name, source in modules.items():
        interpreter.add_module(name, source)
    if data:
        interpreter.add_data(dict(data))
    return interpreter


def run_rego(
    modules: Mapping[str, str],
    data: Mapping[str, Any] | None,
    input: Any,
    query: str,
    *,
    default: object = None,
) -> object:
    """Evaluate ``query`` with regopy (rego-cpp) and return the decoded JSON value.

    See the result contract above this function (ref query -> value, other
    query -> bindings or True, undefined -> ``default``).  A fresh
    interpreter is used per call: rego-cpp 1.5.2 returns the *previous*
    result instead of an error when a query fails to compile on an
    interpreter that already answered one, so reuse would hide errors.

    Raises :class:`RegoEvalError` with rego-cpp's diagnostics on parse,
    compile or evaluation errors, and when a module calls a builtin rego-cpp
    lacks (``net.cidr_*``; use :func:`run_opa`).  rego-cpp also accepts some
    Rego v0 syntax that OPA 1.x rejects; :func:`run_opa` is the stricter judge.
    """
    from regopy import RegoError

    text, kind = _wrap_query(query)
    with _capture_native_stdout() as out:
        try:
            interpreter = _regopy_interpreter(modules, data)
            if input is not None:
                interpreter.set_input(input)
            output = interpreter.query(text)
        except (RegoError, ValueError) as exc:  # ValueError: unparsable output JSON
            failure: Exception | None = exc
        else:
            failure = None
    if failure is not None:
        raise RegoEvalError(f"regopy rejected the policy:\n{''.join(out).strip() or failure}")
    solutions = _regopy_solutions(output, f"query {query!r}", "".join(out))
    return _decode_solutions(solutions, kind, default)


def regopy_has_builtin(name: str) -> bool:
    """Whether rego-cpp implements builtin ``name`` (it lacks e.g. ``net.cidr_contains``)."""
    from regopy import Interpreter

    return bool(Interpreter().is_builtin(name))


class RegoEvaluator:
    """Compile Rego modules + data once with regopy, then evaluate many inputs.

    Uses regopy's bundle API: ``Interpreter.build(query, entrypoints)``
    compiles the policy into a plan once; ``query_bundle`` /
    ``query_bundle_entrypoint`` on a second interpreter then only set the
    input and run the plan (~45 us per evaluation vs ~1.8 ms for
    :func:`run_rego`).  Entrypoints are ``"pkg/rule"`` (``"data.pkg.rule"``
    is accepted) and return the rule's value.  Results follow the same
    contract as :func:`run_rego`.
    """

    def __init__(
        self,
        modules: Mapping[str, str],
        data: Mapping[str, Any] | None = None,
        query: str | None = None,
        entrypoints: Sequence[str] = (),
    ) -> None:
        """Compile the bundle; raise :class:`RegoEvalError` if compilation fails."""
        from regopy import Interpreter, RegoError

        if query is None and not entrypoints:
            raise ValueError("RegoEvaluator needs a query or at least one entrypoint")
        self.query = query
        self.entrypoints = tuple(_entrypoint(e) for e in entrypoints)
        text, self._kind = _wrap_query(query) if query is not None else (None, "query")
        with _capture_native_stdout() as out:
            try:
                builder = _regopy_interpreter(modules, data)
                bundle = builder.build(text, self.entrypoints)
                ok = bool(bundle.ok())
            except RegoError as exc:
                failure: Exception | None = exc
                ok = False
            else:
                failure = None
        if not ok:
            raise RegoEvalError(f"regopy could not compile the bundle:\n{''.join(out) or failure}")
        self._builder = builder  # keeps the bundle's owner alive
        self._bundle = bundle
        self._runner = Interpreter()

    def evaluate(self, input: Any, *, default: object = None) -> object:
        """Run the bundle's query against ``input``."""
        if self.query is None:
            raise ValueError("this evaluator was built without a query; use evaluate_entrypoint")
        solutions = self._run(lambda: self._runner.query_bundle(self._bundle), input)
        return _decode_solutions(solutions, self._kind, default)

    def evaluate_entrypoint(self, entrypoint: str, input: Any, *, default: object = None) -> object:
        """Evaluate one compiled entrypoint (e.g. ``"authz/allow"``) and return its value."""
        name = _entrypoint(entrypoint)
        if name not in self.entrypoints:
            raise ValueError(f"entrypoint {name!r} was not compiled; have {self.entrypoints}")
        output = self._output(
            lambda: self._runner.query_bundle_entrypoint(self._bundle, name), input
        )
        values = [r.expressions[0] for r in output.results if r.expressions]
        if not values:
            return default
        return values[0] if len(values) == 1 else values

    def _run(self, call: Callable[[], Any], input: Any) -> list[dict[str, Any]]:
        """Bindings of each solution of ``call`` for ``input``."""
        output = self._output(call, input)
        return [dict(r.bindings) for r in output.results if r.expressions or r.bindings]

    def _output(self, call: Callable[[], Any], input: Any) -> Any:
        """Set input and run; diagnostics are captured only if a run fails (by re-running)."""
        self._runner.set_input(input if input is not None else {})
        output = call()
        if output.ok():
            return output
        with _capture_native_stdout() as out:
            output = call()
        _regopy_solutions(output, "bundle evaluation", "".join(out))  # raises
        return output  # pragma: no cover - the failure did not reproduce


def _entrypoint(name: str) -> str:
    """Normalise ``data.pkg.rule`` to regopy's ``pkg/rule`` entrypoint form."""
    if name.startswith("data."):
        return name[len("data.") :].replace(".", "/")
    return name


@functools.cache
def opa_available() -> bool:
    """Whether the real OPA engine (``opa-golib-python-bindings``) loads here.

    The wheel declares ``Requires-Python >=3.14`` but is a ctypes wrapper around
    a Go shared library with 3.11-compatible Python, so it works here when
    installed with ``pip install --no-deps --ignore-requires-python``.
    """
    try:
        from opa_bindings import OpaEngine

        OpaEngine().close()
    except (ImportError, OSError):
        return False
    return True


def run_opa(
    modules: Mapping[str, str],
    data: Mapping[str, Any] | None,
    input: Any,
    query: str,
    *,
    default: object = None,
) -> object:
    """Evaluate ``query`` with the real Go OPA engine; same contract as :func:`run_rego`.

    OPA 1.x enforces Rego v1 (``if``/``contains`` required), has the full
    builtin set (``net.cidr_*`` included) and reports parse/compile errors
    exactly like ``opa``.  Raises :class:`RegoEvalError` on those errors and
    RuntimeError when the bindings are not installed (see :func:`opa_available`).
    """
    if not opa_available():
        raise RuntimeError("opa-golib-python-bindings is not installed")
    from opa_bindings import OpaEngine, OpaError

    text, kind = _wrap_query(query)
    if kind == "query":
        # A lone false expression is a *value* (false) in OPA's result set but
        # undefined in rego-cpp; the bindings API cannot tell false from true,
        # so make it a multi-expression query where false means no solution.
        text = f"{_OK_VAR} = true\n{text}"
    engine = OpaEngine()
    try:
        for name, source in modules.items():
            engine.add_policy(name, source)
        if data:
            engine.add_data(dict(data))
        solutions = [
            {k: v for k, v in s.items() if k != _OK_VAR} for s in engine.eval_query(text, input)
        ]
    except OpaError as exc:
        raise RegoEvalError(f"OPA: {exc}") from exc
    finally:
        engine.close()
    return _decode_solutions(solutions, kind, default)


# ---------------------------------------------------------------------------
# PromQL
# ---------------------------------------------------------------------------


def promql_available() -> bool:
    """Whether the ``promql-parser`` package (Rust PromQL parser) is importable."""
    return importlib.util.find_spec("promql_parser") is not None


def validate_promql(expr: str, *, instant: bool = True) -> list[str]:
    """Parse ``expr`` with ``promql-parser``; return error messages (empty = valid).

    The parser is a port of Prometheus' own grammar and type checker, so it
    rejects syntax errors, unknown functions and argument type mismatches
    (``rate(x)`` without a range).  With ``instant=True`` (alerting/recording
    rules, KEDA ``prometheus`` triggers) a top-level range vector or string is
    also rejected, because those cannot be used as a rule or scaler value.
    """
    import promql_parser

    try:
        parsed = promql_parser.parse(expr)
    except ValueError as exc:
        return [f"promql: {exc}"]
    if instant:
        node = parsed
        while isinstance(node, promql_parser.ParenExpr):
            node = node.expr
        if isinstance(node, (promql_parser.MatrixSelector, promql_parser.SubqueryExpr)):
            return ["promql: expression is a range vector; rules need an instant vector or scalar"]
        if isinstance(node, promql_parser.StringLiteral):
            return ["promql: expression is a string; rules need an instant vector or scalar"]
    return []


# ---------------------------------------------------------------------------
# Istio
# ---------------------------------------------------------------------------

_ISTIO_KINDS = {
    ("security.istio.io/v1", "AuthorizationPolicy"): ("security", "v1"),
    ("security.istio.io/v1", "PeerAuthentication"): ("security", "v1"),
    ("security.istio.io/v1", "RequestAuthentication"): ("security", "v1"),
}
#: MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider (Istio 1.24).
_EXT_AUTHZ_GRPC_FIELDS = {
    "service": str,
    "port": int,
    "timeout": str,
    "failOpen": bool,
    "clearRouteCache": bool,
    "statusOnError": str,
    "includeRequestBodyInCheck": dict,
}
_ISTIO_WHEN_KEY = re.compile(
    r"^(request\.headers\[[^\[\]]+\]|request\.auth\.(principal|audiences|presenter)"
    r"|request\.auth\.claims(\[[^\[\]]+\])+|source\.(ip|namespace|principal)"
    r"|remote\.ip|destination\.(ip|port)|connection\.sni|experimental\.envoy\.filters\..+)$"
)


def validate_istio(doc: dict[str, Any]) -> list[str]:
    """Errors of one generated Istio document (empty: Istio would accept it)."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key == ("install.istio.io/v1alpha1", "IstioOperator"):
        return _istio_operator_errors(doc)
    if key not in _ISTIO_KINDS:
        return [f"{key}: not an Istio kind this validator knows"]
    group, version = _ISTIO_KINDS[key]
    module = importlib.import_module(f"cloudcoil.models.istio.{group}.{version}")
    model = getattr(module, str(doc["kind"]))
    from pydantic import ValidationError

    try:
        parsed = model.model_validate(doc, strict=True)
    except ValidationError as exc:
        return [f"{e['loc']}: {e['msg']}" for e in exc.errors()]
    errors: list[str] = []
    back = parsed.model_dump(by_alias=True, exclude_none=True, mode="json")
    errors.extend(_lost_fields(doc, back, ""))
    meta = doc.get("metadata", {})
    errors.extend(_name_errors(str(doc["kind"]), meta))
    errors.extend(_meta_label_errors(meta, "metadata"))
    spec = doc.get("spec", {})
    selector = spec.get("selector")
    if selector is not None:
        errors.extend(_label_map_errors(selector.get("matchLabels"), "spec.selector.matchLabels"))
        if not selector.get("matchLabels"):
            errors.append("spec.selector: empty selector")
    if doc["kind"] == "AuthorizationPolicy":
        errors.extend(_authorization_errors(spec))
    return errors


def _lost_fields(sent: Any, kept: Any, at: str) -> list[str]:
    """Fields of `sent` the strict model did not keep (unknown to the CRD schema)."""
    if isinstance(sent, dict) and isinstance(kept, dict):
        out = [f"{at}.{k}: unknown field" for k in sent if k not in kept]
        for k in sent:
            if k in kept:
                out.extend(_lost_fields(sent[k], kept[k], f"{at}.{k}"))
        return out
    if isinstance(sent, list) and isinstance(kept, list) and len(sent) == len(kept):
        return [
            e
            for i, (a, b) in enumerate(zip(sent, kept, strict=True))
            for e in _lost_fields(a, b, f"{at}[{i}]")
        ]
    return [] if sent == kept else [f"{at}: {sent!r} became {kept!r}"]


def _authorization_errors(spec: dict[str, Any]) -> list[str]:
    """What Istio's validation adds to the CRD schema for AuthorizationPolicy."""
    import ipaddress

    errors: list[str] = []
    action = spec.get("action", "ALLOW")
    if (action == "CUSTOM") != ("provider" in spec):
        errors.append("spec.provider: required with, and only with, action CUSTOM")
    for i, rule in enumerate(spec.get("rules") or []):
        at = f"spec.rules[{i}]"
        for j, src in enumerate(rule.get("from") or []):
            source = src.get("source") or {}
            if not source:
                errors.append(f"{at}.from[{j}]: empty source")
            for name, values in source.items():
                if not values:
                    errors.append(f"{at}.from[{j}].source.{name}: empty list")
                for value in values:
                    if "ipBlocks" in name or "IpBlocks" in name:
                        try:
                            ipaddress.ip_network(value, strict=False)
                        except ValueError:
                            errors.append(f"{at}.{name}: {value!r} is not an IP or CIDR")
                    elif not value or (value != "*" and "*" in value[1:-1]):
                        errors.append(f"{at}.{name}: {value!r} has an inner `*`")
        for j, dst in enumerate(rule.get("to") or []):
            operation = dst.get("operation") or {}
            if not operation:
                errors.append(f"{at}.to[{j}]: empty operation")
            for name, values in operation.items():
                if not values:
                    errors.append(f"{at}.to[{j}].operation.{name}: empty list")
                for value in values:
                    if name in ("paths", "notPaths") and value != "*" and not value.startswith("/"):
                        errors.append(f"{at}.{name}: {value!r} does not start with `/`")
                    if value != "*" and "*" in value[1:-1] and "{" not in value:
                        errors.append(f"{at}.{name}: {value!r} has an inner `*`")
        for j, cond in enumerate(rule.get("when") or []):
            if not _ISTIO_WHEN_KEY.match(str(cond.get("key", ""))):
                errors.append(f"{at}.when[{j}].key: {cond.get('key')!r} is not a supported key")
            if not cond.get("values") and not cond.get("notValues"):
                errors.append(f"{at}.when[{j}]: neither values nor notValues")
    return errors


def _istio_operator_errors(doc: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    if set(doc) - {"apiVersion", "kind", "metadata", "spec"}:
        errors.append("unknown top-level field")
    spec = doc.get("spec")
    if not isinstance(spec, dict) or set(spec) != {"meshConfig"}:
        return [*errors, "spec: expected only meshConfig"]
    mesh = spec["meshConfig"]
    if set(mesh) != {"extensionProviders"}:
        errors.append("spec.meshConfig: expected only extensionProviders")
    names = []
    for i, provider in enumerate(mesh.get("extensionProviders", [])):
        at = f"spec.meshConfig.extensionProviders[{i}]"
        names.append(provider.get("name"))
        if set(provider) != {"name", "envoyExtAuthzGrpc"}:
            errors.append(f"{at}: expected name and envoyExtAuthzGrpc")
            continue
        grpc = provider["envoyExtAuthzGrpc"]
        for name, value in grpc.items():
            kind = _EXT_AUTHZ_GRPC_FIELDS.get(name)
            if (
                kind is None
                or not isinstance(value, kind)
                or isinstance(value, bool) is not (kind is bool)
            ):
                errors.append(f"{at}.envoyExtAuthzGrpc.{name}: unknown or mistyped")
        port = grpc.get("port")
        if not grpc.get("service") or not isinstance(port, int) or not 0 < port < 65536:
            errors.append(f"{at}.envoyExtAuthzGrpc: service and port are required")
        if "timeout" in grpc and not re.fullmatch(r"\d+(\.\d+)?(ms|s|m|h)", grpc["timeout"]):
            errors.append(f"{at}.envoyExtAuthzGrpc.timeout: not a duration")
    if len(set(names)) != len(names):
        errors.append("spec.meshConfig.extensionProviders: duplicate names")
    return errors


def pgv_errors(message: Message) -> list[str]:
    """protoc-gen-validate errors of a protobuf message and of every message inside it.

    What Envoy checks on a message it receives (e.g. a `CheckResponse` from an
    ext_authz server): the `(validate.rules)` of each message, recursively.
    """
    visited: list[tuple[str, Message]] = []
    errors: list[str] = []
    with _pgv_shallow():
        _walk_message(message, "", visited, errors)
    return errors
