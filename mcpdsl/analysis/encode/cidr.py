"""`in cidr`: IPv4 exactly (a regular language per network), IPv6 abstractly."""

from __future__ import annotations

import ipaddress
from typing import Any

import z3

from mcpdsl.analysis.encode.core import AND, OCTET, Bool, Sym, str_of
from mcpdsl.analysis.encode.strings import Strings


class Cidr(Strings):
    """Network membership of string addresses."""

    def in_cidr(self, x: Sym, cidr: str) -> tuple[Bool, frozenset[Any]]:
        """`x in cidr N` for a string `x`: Python's `ipaddress` reading of it, exactly for IPv4.

        An IPv4 address is in `N` when its 32 bits agree with N's under N's mask;
        octet by octet the mask admits one interval of values, so the set of
        dotted quads inside N is a regular language, and membership is one regex
        test (exact, and far cheaper for z3 than channelling `str.to_int`).
        """
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return False, frozenset()
        s = str_of(self, x)
        if net.version == 4:
            return z3.InRe(s, self._cidr4(net)), frozenset()
        is6 = self.fresh_bool(("ip6", s.get_id()))
        bv = z3.BitVec(f"ip6!{s.get_id()}", 128, self.ctx)
        mask = int(net.netmask)
        inside = (bv & z3.BitVecVal(mask, 128, self.ctx)) == z3.BitVecVal(
            int(net.network_address), 128, self.ctx
        )
        key = ("ip6", s.get_id())
        self._side[key] = [z3.Implies(is6, z3.Not(z3.InRe(s, self._quad)))]
        for path, vars_ in self._attr_vars.items():
            if vars_["str"].eq(s):
                self._ip6.append((path, is6, bv))
        return AND(is6, inside), frozenset({key})

    def _cidr4(self, net: ipaddress.IPv4Network) -> Any:
        key = f"cidr:{net}"
        found = self._regex.get(key)
        if found is None:
            mask = int(net.netmask).to_bytes(4, "big")
            base = int(net.network_address).to_bytes(4, "big")
            parts = []
            for i in range(4):
                if i:
                    parts.append(z3.Re(".", ctx=self.ctx))
                low, high = base[i], base[i] | (~mask[i] & 0xFF)
                parts.append(self._octets(low, high))
            found = z3.Concat(*parts)
            self._regex[key] = found
        return found

    def _octets(self, low: int, high: int) -> Any:
        """Canonical decimal spellings (no leading zeros) of the octets `low..high`."""
        if (low, high) == (0, 255):
            return self._regex_of(OCTET)
        groups: dict[str, list[str]] = {}
        for v in range(low, high + 1):
            text = str(v)
            groups.setdefault(text[:-1], []).append(text[-1])
        options = []
        for prefix, last in groups.items():
            digit = z3.Range(last[0], last[-1], ctx=self.ctx)
            options.append(z3.Concat(z3.Re(prefix, ctx=self.ctx), digit) if prefix else digit)
        return z3.Union(*options) if len(options) > 1 else options[0]
