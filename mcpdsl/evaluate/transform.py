"""`Engine.transform`: an integration's `map` block applied to an upstream payload.

Each mapping is compiled once to a closure over `$` (the payload).  A mapping
whose value is MISSING (and has no `??` default) or ERROR raises
`TransformError` naming the field and the mapping's source span.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mcpdsl.evaluate.closures import Fn, prepare_expr
from mcpdsl.evaluate.values import ERROR, MISSING, Refused, to_json
from mcpdsl.ir import model as m

ZERO = Decimal(0)


class TransformError(ValueError):
    """A mapping could not produce its field (missing input or a run-time type error)."""

    def __init__(self, message: str, field: str, span: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.span = span


@dataclass(frozen=True, slots=True)
class PreparedMapping:
    target: tuple[str, ...]
    fn: Fn
    ir: m.Mapping


@dataclass(frozen=True, slots=True)
class PreparedTransform:
    ir: m.Integration
    mappings: tuple[PreparedMapping, ...]

    def apply(self, payload: Any) -> dict[str, Any]:
        inp = {"$": payload}
        out: dict[str, Any] = {}
        for mp in self.mappings:
            try:
                v = mp.fn(inp, ZERO)
            except Refused as exc:  # a value the mapping read is not JSON
                name = ".".join(mp.target)
                raise TransformError(
                    f"field `{name}` of `{self.ir.name}` reads a value that is not JSON: {exc}",
                    name,
                    mp.ir.span,
                ) from None
            if v is MISSING or v is ERROR:
                raise _failure(self.ir, mp, inp, v)
            t = type(v)
            if t is Decimal or t is list or t is tuple or t is dict:
                v = to_json(v)
            target = mp.target
            if len(target) == 1:
                out[target[0]] = v
                continue
            cursor = out
            for part in target[:-1]:
                nxt = cursor.setdefault(part, {})
                if type(nxt) is not dict:
                    raise TransformError(
                        f"field `{'.'.join(target)}` extends `{part}`, which is not an object"
                        f" ({mp.ir.span})",
                        ".".join(target),
                        mp.ir.span,
                    )
                cursor = nxt
            cursor[target[-1]] = v
        return out


def _failure(
    integration: m.Integration, mp: PreparedMapping, inp: dict[str, Any], value: Any
) -> TransformError:
    from mcpdsl.evaluate.interp import why

    name = ".".join(mp.target)
    try:
        _, reasons = why(mp.ir.expr, inp, ZERO)
    except (ValueError, TypeError, RecursionError):  # a hostile payload: no reasons
        reasons = []
    detail = "; ".join(reasons) or ("missing" if value is MISSING else "an evaluation error")
    where = f" ({mp.ir.span})" if mp.ir.span is not None else ""
    if value is MISSING:
        message = (
            f"field `{name}` of `{integration.name}` is missing: {detail}{where}; "
            "give the missing attribute a default with `??`"
        )
    else:
        message = f"field `{name}` of `{integration.name}` is an evaluation error: {detail}{where}"
    return TransformError(message, name, mp.ir.span)


def prepare_transform(integration: m.Integration) -> PreparedTransform:
    return PreparedTransform(
        ir=integration,
        mappings=tuple(
            PreparedMapping(mp.target, prepare_expr(mp.expr).fn, mp) for mp in integration.mappings
        ),
    )
