"""`${eval:}` / `${eval10:}`: a small integer-arithmetic parser (never Python's eval).

Grammar (C precedence, lowest first): `|`, `^`, `&`, `<< >>`, `+ -`, `* / %`, unary `- + ~`,
numbers and parentheses. Numbers may carry K/M/G (x1024^n). `eval` also reads 0x hex and
leading-0 octal; `eval10` reads every number as decimal. Results are 64-bit signed like
Exim; overflow, division by zero and syntax errors fail the expansion.
"""

from __future__ import annotations

import re

from ..errors import ExpansionFailed

_MIN, _MAX = -(1 << 63), (1 << 63) - 1
_TOKEN = re.compile(r"\s*(?:(0[xX][0-9a-fA-F]+|\d+)([KkMmGg]?)|(<<|>>|[-+*/%&|^~()]))")
_SUFFIX = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
MAX_TEXT = 4096
MAX_DEPTH = 100


def evaluate(text: str, decimal_only: bool = False) -> int:
    """Return the value of an integer expression; raises ExpansionFailed on any problem."""
    if len(text) > MAX_TEXT:
        raise ExpansionFailed("eval: expression too long")
    return _Calc(text, decimal_only).run()


def _check(v: int) -> int:
    if not _MIN <= v <= _MAX:
        raise ExpansionFailed("eval: integer overflow")
    return v


class _Calc:
    def __init__(self, text: str, decimal_only: bool) -> None:
        self.tokens: list[int | str] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                raise ExpansionFailed(f'eval: unexpected text "{text[pos:pos + 20].strip()}"')
            pos = m.end()
            if m.group(3):
                self.tokens.append(m.group(3))
            else:
                self.tokens.append(_check(self.number(m.group(1), decimal_only) * _SUFFIX[m.group(2).lower()]))
        self.i = 0

    @staticmethod
    def number(digits: str, decimal_only: bool) -> int:
        if digits[:2].lower() == "0x":
            if decimal_only:
                raise ExpansionFailed("eval10: hexadecimal numbers are not allowed")
            return int(digits, 16)
        if not decimal_only and len(digits) > 1 and digits[0] == "0":
            if any(c in "89" for c in digits):
                raise ExpansionFailed(f'eval: "{digits}" is not an octal number')
            return int(digits, 8)
        return int(digits, 10)

    def run(self) -> int:
        if not self.tokens:
            raise ExpansionFailed("eval: empty expression")
        v = self.level(0, 0)
        if self.i != len(self.tokens):
            raise ExpansionFailed(f"eval: unexpected {self.tokens[self.i]!r}")
        return v

    _LEVELS: tuple[tuple[str, ...], ...] = (("|",), ("^",), ("&",), ("<<", ">>"), ("+", "-"), ("*", "/", "%"))

    def peek(self) -> int | str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def level(self, n: int, depth: int) -> int:
        if n == len(self._LEVELS):
            return self.unary(depth)
        v = self.level(n + 1, depth)
        while self.peek() in self._LEVELS[n]:
            op = self.tokens[self.i]
            self.i += 1
            v = _check(self.apply(str(op), v, self.level(n + 1, depth)))
        return v

    @staticmethod
    def apply(op: str, a: int, b: int) -> int:
        if op in ("/", "%") and b == 0:
            raise ExpansionFailed("eval: division by zero")
        if op == "/":
            q = abs(a) // abs(b)          # C truncates toward zero
            return q if (a >= 0) == (b >= 0) else -q
        if op == "%":
            r = abs(a) % abs(b)           # C: the remainder takes the dividend's sign
            return r if a >= 0 else -r
        if op in ("<<", ">>"):
            if not 0 <= b < 64:
                raise ExpansionFailed("eval: shift count out of range")
            return _wrap(a << b) if op == "<<" else a >> b
        return {"+": a + b, "-": a - b, "*": a * b, "&": a & b, "|": a | b, "^": a ^ b}[op]

    def unary(self, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise ExpansionFailed("eval: expression nested too deeply")
        tok = self.peek()
        if tok in ("-", "+", "~"):
            self.i += 1
            v = self.unary(depth + 1)
            return _check(-v if tok == "-" else (~v if tok == "~" else v))
        if tok == "(":
            self.i += 1
            v = self.level(0, depth + 1)
            if self.peek() != ")":
                raise ExpansionFailed("eval: missing ')'")
            self.i += 1
            return v
        if isinstance(tok, int):
            self.i += 1
            return tok
        raise ExpansionFailed("eval: missing operand" if tok is None else f"eval: unexpected {tok!r}")


def _wrap(v: int) -> int:
    """Left shifts wrap at 64 bits instead of overflowing (as C on two's complement does)."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= (1 << 63) else v
