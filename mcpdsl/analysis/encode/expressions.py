"""Expressions: booleans, comparisons, exact numbers (units are base-unit rationals), calls.

Every IR expression becomes a `Sym` (guards for MISSING, ERROR and each kind);
JSON equality and list membership live here because comparisons need them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import z3

from mcpdsl.analysis.encode.attributes import Attributes
from mcpdsl.analysis.encode.core import (
    AND,
    NOT,
    OBJ,
    OR,
    Bool,
    Env,
    ListVal,
    Sym,
    bool_of,
    deps_of,
    int_term,
    num_of,
    str_of,
    sym_key,
)
from mcpdsl.ir import args
from mcpdsl.ir import model as m
from mcpdsl.ir.reads import reads_risk


class Expressions(Attributes):
    """IR expressions as `Sym`s, cached by expression identity."""

    def argument(self, path: tuple[str, ...]) -> Sym:
        """`args.*` (mcpdsl.ir.args): the attribute, but ERROR on a tool call without `args`.

        A request about a tool (`resource.type == "tool"`) whose `args` is not an
        object reads every argument as ERROR; elsewhere an absent `args` makes the
        argument missing, as any attribute.  (A non-object `args` already makes
        its children missing: `Attributes.attr`.)
        """
        sym = self.attr(path)
        self.attr(path[:1])
        kind = self._attr_vars[path[:1]]["kind"]
        rtype = self.attr(("resource", "type"))
        unread = AND(rtype.iss, rtype.s == self.str_val(args.TOOL), kind != self.K[OBJ])
        return replace(
            sym,
            missing=AND(NOT(unread), sym.missing),
            error=OR(sym.error, unread),
            deps=sym.deps | rtype.deps,
        )

    def reads_risk(self, e: m.Node) -> bool:
        found = self._risk_reads.get(id(e))
        if found is None:
            found = reads_risk(e)
            self._risk_reads[id(e)] = found
        return found

    def expr(self, e: m.Node, env: Env) -> Sym:
        key = (id(e), env.key if self.reads_risk(e) else None)
        found = self._cache.get(key)
        if found is None:
            found = self._expr(e, env)
            self._cache[key] = found
        return found

    def _expr(self, e: m.Node, env: Env) -> Sym:
        if isinstance(e, m.Literal_):
            return self.literal(e.value)
        if isinstance(e, m.Attr):
            if e.root == "risk":
                assert env.risk is not None, "`risk` read outside a policy"
                return env.risk
            if e.root == args.ROOT:
                return self.argument((e.root, *e.path))
            return self.attr((e.root, *e.path))
        if isinstance(e, m.ListExpr):
            items = [self.expr(i, env) for i in e.items]
            deps = deps_of(items)
            error = OR(*(i.error for i in items))
            missing = AND(NOT(error), OR(*(i.missing for i in items)))
            slots = [(True, i) for i in items]
            return Sym(
                missing=missing,
                error=error,
                isl=NOT(OR(error, missing)),
                lst=ListVal(len(items), slots, exact=True),
                deps=deps,
            )
        if isinstance(e, m.Not):
            x = self.expr(e.operand, env)
            return Sym(
                isb=OR(x.missing, x.isb),
                b=self.bool_val(OR(x.missing, AND(x.isb, NOT(bool_of(x))))),
                error=NOT(OR(x.missing, x.isb)),
                deps=x.deps,
            )
        if isinstance(e, (m.And, m.Or)):
            ops = [self.expr(o, env) for o in e.operands]
            error = OR(*(NOT(OR(o.missing, o.isb)) for o in ops))
            truths = [AND(o.isb, bool_of(o)) for o in ops]
            value = AND(*truths) if isinstance(e, m.And) else OR(*truths)
            return Sym(isb=NOT(error), b=self.bool_val(value), error=error, deps=deps_of(ops))
        if isinstance(e, m.Compare):
            return self._compare(e, env)
        if isinstance(e, m.In):
            x, y = self.expr(e.item, env), self.expr(e.collection, env)
            error = OR(x.error, y.error, AND(NOT(x.missing), NOT(y.missing), NOT(y.isl)))
            member = self.member(x, y.lst) if y.lst is not None else False
            value = AND(NOT(x.missing), y.isl, NOT(member) if e.negated else member)
            return Sym(isb=NOT(error), b=self.bool_val(value), error=error, deps=x.deps | y.deps)
        if isinstance(e, m.InCidr):
            x = self.expr(e.operand, env)
            error = OR(x.error, AND(NOT(x.missing), NOT(x.iss)))
            inside, deps = self.in_cidr(x, e.cidr)
            return Sym(
                isb=NOT(error),
                b=self.bool_val(AND(x.iss, inside)),
                error=error,
                deps=x.deps | deps,
            )
        if isinstance(e, m.Matches):
            x = self.expr(e.operand, env)
            error = OR(x.error, AND(NOT(x.missing), NOT(x.iss)))
            value = AND(x.iss, z3.InRe(str_of(self, x), self.glob_re(e.pattern)))
            return Sym(isb=NOT(error), b=self.bool_val(value), error=error, deps=x.deps)
        if isinstance(e, m.Arith):
            return self._arith(e, env)
        if isinstance(e, m.Default):
            x, y = self.expr(e.operand, env), self.expr(e.fallback, env)
            return self.mux(x.missing, y, x)
        if isinstance(e, m.Neg):
            x = self.expr(e.operand, env)
            return Sym(
                missing=x.missing,
                error=OR(x.error, AND(NOT(x.missing), NOT(x.isn))),
                isn=x.isn,
                n=-num_of(self, x),
                deps=x.deps,
            )
        if isinstance(e, m.Call):
            return self._call(e, env)
        raise TypeError(f"not an expression: {type(e).__name__}")

    def literal(self, v: Any) -> Sym:
        if isinstance(v, bool):
            return Sym(isb=True, b=z3.BoolVal(v, self.ctx))
        if isinstance(v, str):
            return Sym(iss=True, s=self.str_val(v))
        return Sym(isn=True, n=self.real_val(v))

    def _compare(self, e: m.Compare, env: Env) -> Sym:
        a, b = self.expr(e.left, env), self.expr(e.right, env)
        deps = a.deps | b.deps
        if e.op in ("==", "!="):
            error = OR(a.error, b.error)
            missing = OR(a.missing, b.missing)
            eq = self.eq(a, b)
            value = AND(NOT(missing), eq if e.op == "==" else NOT(eq))
            return Sym(isb=NOT(error), b=self.bool_val(value), error=error, deps=deps)
        both = AND(a.isn, b.isn)
        error = OR(a.error, b.error, AND(NOT(a.missing), NOT(b.missing), NOT(both)))
        x, y = num_of(self, a), num_of(self, b)
        rel = {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[e.op]
        return Sym(isb=NOT(error), b=self.bool_val(AND(both, rel)), error=error, deps=deps)

    def _arith(self, e: m.Arith, env: Env) -> Sym:
        a, b = self.expr(e.left, env), self.expr(e.right, env)
        deps = a.deps | b.deps
        nums = AND(a.isn, b.isn)
        strs = AND(a.iss, b.iss) if e.op == "+" else False
        x, y = num_of(self, a), num_of(self, b)
        div0 = AND(nums, y == 0) if e.op == "/" else False
        error = OR(
            a.error,
            b.error,
            AND(NOT(a.missing), NOT(b.missing), NOT(OR(nums, strs))),
            div0,
        )
        missing = AND(NOT(OR(a.error, b.error)), OR(a.missing, b.missing))
        value = {"+": x + y, "-": x - y, "*": x * y, "/": x / y}[e.op]
        return Sym(
            missing=missing,
            error=error,
            isn=AND(nums, NOT(div0)),
            n=value,
            iss=strs,
            s=z3.Concat(str_of(self, a), str_of(self, b)) if strs is not False else None,
            deps=deps,
        )

    def _call(self, e: m.Call, env: Env) -> Sym:
        args = [self.expr(a, env) for a in e.args]
        deps = deps_of(args)
        missing = OR(*(a.missing for a in args))
        error = AND(NOT(missing), OR(*(a.error for a in args)))
        ok = NOT(OR(missing, error))
        f = e.function
        if f in ("lower", "upper") and len(args) == 1:
            x = args[0]
            mapped, key = self.case_map(str_of(self, x), f)
            return Sym(
                missing=missing,
                error=OR(error, AND(ok, NOT(x.iss))),
                iss=AND(ok, x.iss),
                s=mapped,
                deps=deps | {key},
            )
        if f == "len" and len(args) == 1:
            x = args[0]
            length = x.lst.length if x.lst is not None else 0
            length = self.real_val(length) if isinstance(length, int) else z3.ToReal(length)
            n = self.ite(x.iss, z3.ToReal(z3.Length(str_of(self, x))), length)
            return Sym(
                missing=missing,
                error=OR(error, AND(ok, NOT(OR(x.iss, x.isl)))),
                isn=AND(ok, OR(x.iss, x.isl)),
                n=n,
                deps=deps,
            )
        if len(args) != 2:  # typecheck rejects this; never encoded
            return Sym(error=True, deps=deps)
        a, b = args
        sa, sb = str_of(self, a), str_of(self, b)
        test = {
            "startswith": lambda: z3.PrefixOf(sb, sa),
            "endswith": lambda: z3.SuffixOf(sb, sa),
            "contains": lambda: z3.Contains(sa, sb),
        }[f]()
        strs = AND(a.iss, b.iss)
        value = AND(strs, test)
        good = strs
        if f == "contains":
            listy = AND(a.isl, b.present)
            member = self.member(b, a.lst) if a.lst is not None else False
            value = OR(value, AND(listy, member))
            good = OR(strs, a.isl)
        return Sym(
            missing=missing,
            error=OR(error, AND(ok, NOT(good))),
            isb=AND(ok, good),
            b=self.bool_val(value),
            deps=deps,
        )

    def mux(self, c: Bool, x: Sym, y: Sym) -> Sym:
        """`x` where `c` holds, else `y`, component by component."""
        lst = None
        if x.lst is not None or y.lst is not None:
            lx = x.lst or ListVal(0, [], True)
            ly = y.lst or ListVal(0, [], True)
            length = self.ite(c, int_term(self, lx.length), int_term(self, ly.length))
            slots = [(AND(c, p), el) for p, el in lx.slots]
            slots += [(AND(NOT(c), p), el) for p, el in ly.slots]
            lst = ListVal(length, slots, exact=lx.exact and ly.exact)
        return Sym(
            missing=self.ite(c, x.missing, y.missing),
            error=self.ite(c, x.error, y.error),
            null=self.ite(c, x.null, y.null),
            isb=self.ite(c, x.isb, y.isb),
            b=self.ite(c, x.b, y.b),
            isn=self.ite(c, x.isn, y.isn),
            n=self.ite(c, x.n, y.n),
            iss=self.ite(c, x.iss, y.iss),
            s=self.ite(c, x.s, y.s),
            isl=self.ite(c, x.isl, y.isl),
            lst=lst,
            iso=self.ite(c, x.iso, y.iso),
            other=self.ite(c, x.other, y.other),
            deps=x.deps | y.deps,
        )

    def eq(self, a: Sym, b: Sym) -> Bool:
        """JSON equality of two present values (numbers by value, `true` never `1`)."""
        parts = [AND(a.null, b.null)]
        if a.isb is not False and b.isb is not False:
            parts.append(AND(a.isb, b.isb, bool_of(a) == bool_of(b)))
        if a.isn is not False and b.isn is not False:
            parts.append(AND(a.isn, b.isn, num_of(self, a) == num_of(self, b)))
        if a.iss is not False and b.iss is not False:
            parts.append(AND(a.iss, b.iss, str_of(self, a) == str_of(self, b)))
        if a.isl is not False and b.isl is not False:
            parts.append(AND(a.isl, b.isl, self.list_eq(a, b)))
        if a.iso is not False and b.iso is not False:
            parts.append(AND(a.iso, b.iso, self.fresh_bool(("objeq", sym_key(a), sym_key(b)))))
        for x, y in ((a, b), (b, a)):
            partner = OR(y.isl, y.iso, y.other)
            if x.other is not False and partner is not False:
                parts.append(
                    AND(x.other, partner, self.fresh_bool(("oeq", sym_key(x), sym_key(y))))
                )
        return OR(*parts)

    def list_eq(self, a: Sym, b: Sym) -> Bool:
        la, lb = a.lst, b.lst
        assert la is not None and lb is not None
        if (
            la.exact
            and lb.exact
            and isinstance(la.length, int)
            and isinstance(lb.length, int)
            and all(p is True for p, _ in la.slots + lb.slots)
        ):
            if la.length != lb.length:
                return False
            return AND(
                *(
                    AND(x.present, y.present, self.eq(x, y))
                    for (_, x), (_, y) in zip(la.slots, lb.slots, strict=True)
                )
            )
        return self.fresh_bool(("listeq", sym_key(a), sym_key(b)))

    def member(self, x: Sym, lst: ListVal) -> Bool:
        """Is the present value `x` an element of the list `lst`?"""
        return OR(*(AND(p, el.present, self.eq(x, el)) for p, el in lst.slots))
