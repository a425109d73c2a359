"""Recursive-descent parser for the expansion subset; every mistake is a SyntaxProblem with offset.

Names are checked here, once, at policy load: unknown variables, conditions, operators and
lookup types are load-time errors, and items that could run commands or read arbitrary files
(`${run`, `${readsocket`, `${readfile`, `${perl`, `${dlfunc`, `${env`) are refused outright.
Static regular expressions are compiled here so a bad pattern is a load-time error too.
"""

from __future__ import annotations

import re
import warnings

from ..errors import SyntaxProblem
from .ast import Cond, Header, If, Literal, Lookup, Node, Op, Seq, Var
from . import names

_NAME = re.compile(r"[A-Za-z0-9_]+")
_DIGITS = re.compile(r"[0-9]+")
_HEADER_PREFIX = re.compile(r"(h|header|bh|bheader|rh|rheader|lh|lheader)_")
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")   # printable, no colon, no space
_COND_SYMBOL = re.compile(r"[=<>]+")
_LOOKUP_TYPE = re.compile(r"(?:partial\d*(?:-|\([^)]*\)))?[A-Za-z0-9_]+(\*@|\*)?")
_SUBSTR_TAIL = re.compile(r"[-0-9_]+")
_HASH_ABBREVIATION = re.compile(r"h_\d+(?:_\d+)?\Z")
_OCTAL = re.compile(r"[0-7]{1,3}")
_HEX = re.compile(r"[0-9A-Fa-f]{1,2}")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v"}
#: Deeper nesting is refused so a hostile or broken text cannot exhaust the Python stack.
MAX_NESTING = 40
_MODE = {"h": "h", "header": "h", "bh": "b", "bheader": "b", "rh": "r", "rheader": "r",
         "lh": "l", "lheader": "l"}


def parse_text(text: str) -> Seq:
    """Parse a whole expansion string into its root sequence."""
    p = _Parser(text)
    root = p.seq(in_brace=False)
    return root


def compile_regex(pattern: str, offset: int, flags: int = 0) -> re.Pattern[str]:
    """Compile a policy regex, turning a bad pattern into a SyntaxProblem at `offset`."""
    try:
        with warnings.catch_warnings():
            # "Possible nested set" and the like would print a Python source position on
            # stderr, not a policy one; the pattern means what it says today.
            warnings.simplefilter("ignore", FutureWarning)
            return re.compile(pattern, flags)
    except re.error as exc:
        pos = offset + (exc.pos or 0)
        raise SyntaxProblem(f"bad regular expression: {exc.msg}", pos) from None


def _static(seq: Seq) -> str | None:
    """The text of a sequence made only of literals, else None."""
    if all(isinstance(p, Literal) for p in seq.parts):
        return "".join(p.text for p in seq.parts)  # type: ignore[union-attr]
    return None


class _Parser:
    """Holds the text and the cursor; methods consume text and return nodes."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.n = len(text)
        self.depth = 0

    # ---- helpers -----------------------------------------------------------------------------
    def err(self, message: str, at: int | None = None) -> SyntaxProblem:
        return SyntaxProblem(message, self.i if at is None else at)

    def skip_ws(self) -> None:
        while self.i < self.n and self.s[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < self.n else ""

    def expect(self, ch: str, what: str) -> None:
        if self.peek() != ch:
            found = repr(self.peek()) if self.i < self.n else "end of text"
            raise self.err(f"expected '{ch}' {what}, found {found}")
        self.i += 1

    def read(self, pattern: re.Pattern[str]) -> str:
        m = pattern.match(self.s, self.i)
        if not m:
            return ""
        self.i = m.end()
        return m.group(0)

    # ---- sequences ---------------------------------------------------------------------------
    def seq(self, in_brace: bool) -> Seq:
        """Parse text up to the closing `}` (left unconsumed) or the end of the string."""
        parts: list[Node] = []
        buf: list[str] = []
        depth = 0   # literal braces inside a braced argument must balance

        def flush() -> None:
            if buf:
                parts.append(Literal("".join(buf)))
                buf.clear()

        while self.i < self.n:
            c = self.s[self.i]
            if c == "\\":
                buf.append(self.escape())
            elif c == "$":
                flush()
                parts.append(self.dollar())
            elif in_brace and c == "}":
                if depth == 0:
                    break
                depth -= 1
                buf.append(c)
                self.i += 1
            elif in_brace and c == "{":
                depth += 1
                buf.append(c)
                self.i += 1
            else:
                buf.append(c)
                self.i += 1
        flush()
        return Seq(tuple(parts))

    def braced(self, what: str) -> Seq:
        """Parse `{...}` and return its content."""
        self.skip_ws()
        start = self.i
        self.expect("{", what)
        content = self.seq(in_brace=True)
        if self.i >= self.n:
            raise self.err("missing '}' to close the '{' here", start)
        self.i += 1
        return content

    def escape(self) -> str:
        """Consume a backslash escape and return the text it stands for."""
        s, i = self.s, self.i
        if i + 1 >= self.n:
            self.i += 1
            return "\\"
        c = s[i + 1]
        if c == "N":                      # \N...\N: literal, no expansion, no escapes
            end = s.find("\\N", i + 2)
            if end < 0:
                self.i = self.n
                return s[i + 2:]
            self.i = end + 2
            return s[i + 2:end]
        self.i = i + 2
        if c in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[c]
        if c == "x":
            h = self.read(_HEX)
            return chr(int(h, 16)) if h else "x"
        if c in "01234567":
            self.i = i + 1
            return chr(int(self.read(_OCTAL), 8))
        return c

    # ---- $ items -----------------------------------------------------------------------------
    def dollar(self) -> Node:
        start = self.i
        self.i += 1
        c = self.peek()
        if c == "{":
            return self.braced_item(start)
        if c.isdigit():
            name = self.read(_DIGITS)
            return self.variable(name, start)
        if c.isalnum() or c == "_":
            m = _HEADER_PREFIX.match(self.s, self.i)
            if m:
                self.i = m.end()
                return self.header(_MODE[m.group(1)], start)
            return self.variable(self.read(_NAME), start)
        raise self.err("'$' must be followed by a name or '{' (write \\$ for a dollar sign)", start)

    def header(self, mode: str, start: int) -> Header:
        name = self.read(_HEADER_NAME)
        if not name:
            raise self.err("missing header name after $h_", start)
        if self.peek() != ":":
            raise self.err(f"header variable for {name!r} must end with ':'", self.i)
        self.i += 1
        return Header(mode, name)

    def variable(self, name: str, start: int) -> Var:
        if not names.known_variable(name):
            raise self.err(f'unknown variable name "{name}"', start)
        return Var(name)

    def braced_item(self, start: int) -> Node:
        self.depth += 1
        try:
            return self._braced_item(start)
        finally:
            self.depth -= 1

    def _braced_item(self, start: int) -> Node:
        if self.depth > MAX_NESTING:
            raise self.err(f"items nested more than {MAX_NESTING} deep", start)
        self.i += 1                      # past "{"
        name_at = self.i
        name = self.read(_NAME)
        if not name:
            raise self.err("expected a variable, operator or item name after '${'", name_at)
        if name.startswith("substr_") and self.peek() == "-":
            name += self.read(_SUBSTR_TAIL)      # ${substr_-3_2:...}: negative offset
        c = self.peek()
        if c == ":" and _HASH_ABBREVIATION.match(name):
            name = "hash" + name[1:]              # Exim: `h` abbreviates the hash operator
        elif _HEADER_PREFIX.match(name) and not names.known_variable(name):
            raise self.err("braces are not allowed around header names: write $h_name:", start)
        if name in names.FORBIDDEN_ITEMS:
            raise self.err(f"${{{name}...}} is refused: {names.FORBIDDEN_ITEMS[name]}", start)
        if c == "}" and name not in names.ITEM_NAMES:
            self.i += 1
            return self.variable(name, start)
        if c == ":":
            self.i += 1
            return self.operator(name, name_at)
        if name == "if":
            return self.if_item(start)
        if name == "lookup":
            return self.lookup_item(start)
        if name in names.FUNCTION_ITEMS:
            return self.function_item(name, start)
        if self.i >= self.n:
            raise self.err("missing '}' to close the '${' here", start)
        raise self.err(f"unknown expansion item ${{{name}", start)

    def close(self, start: int) -> None:
        self.skip_ws()
        if self.i >= self.n:
            raise self.err("missing '}' to close the '${' here", start)
        self.expect("}", "to end the item")

    def branches(self) -> tuple[Seq | None, Seq | None, bool]:
        """Parse the optional `{yes}{no}` / `{yes} fail` branches of if and lookup."""
        self.skip_ws()
        if self.peek() != "{":
            return None, None, False
        yes = self.braced("for the yes branch")
        self.skip_ws()
        if self.peek() == "{":
            return yes, self.braced("for the no branch"), False
        if self.s.startswith("fail", self.i) and not (self.s[self.i + 4:self.i + 5].isalnum()):
            self.i += 4
            return yes, None, True
        return yes, None, False

    def if_item(self, start: int) -> If:
        cond = self.condition()
        yes, no, fail = self.branches()
        self.close(start)
        return If(cond, yes, no, fail)

    def lookup_item(self, start: int) -> Lookup:
        self.skip_ws()
        key: Seq | None = None
        if self.peek() == "{":
            key = self.braced("for the lookup key")
            self.skip_ws()
        type_at = self.i
        type_name = self.read(_LOOKUP_TYPE)
        if not type_name:
            raise self.err("expected a lookup type", type_at)
        entry = names.lookup_entry(type_name)
        if entry is None:
            raise self.err(names.unknown_lookup(type_name), type_at)
        if entry.query_style:
            if key is not None:
                raise self.err(f"{type_name} is a query-style lookup: write ${{lookup {type_name}{{query}}}}",
                               start)
            if type_name.endswith("*") or type_name.endswith("*@"):
                raise self.err("'*' defaults apply only to single-key lookups", type_at)
            if type_name.startswith("partial"):
                raise self.err("partial matching applies only to single-key lookups", type_at)
        elif key is None:
            raise self.err(f"{type_name} is a single-key lookup: write ${{lookup{{key}}{type_name}{{file}}}}",
                           start)
        self.skip_ws()
        src_at = self.i
        source = self.braced("for the lookup file or query")
        if entry.query_style and not _literal_first_word(source):
            raise self.err("the command word of a query must be fixed text (no variables or items), "
                           "so message data can never choose the command", src_at)
        if not entry.query_style:
            fname = _static(source)
            if fname is None:
                raise self.err("the file of a single-key lookup must be fixed text "
                               "(no variables or items), so message data can never choose a file", src_at)
            if not fname.startswith("/"):
                raise self.err("the file of a single-key lookup must be an absolute path", src_at)
        yes, no, fail = self.branches()
        self.close(start)
        return Lookup(type_name, key, source, yes, no, fail)

    def function_item(self, name: str, start: int) -> Op:
        nargs = names.FUNCTION_ITEMS[name]
        fewest = names.ARG_RANGES.get(name, (nargs, nargs))[0]
        args: list[Seq] = []
        offsets: list[int] = []
        for k in range(nargs):
            self.skip_ws()
            if k >= fewest and self.peek() != "{":
                break
            offsets.append(self.i + 1)
            args.append(self.braced(f"for argument {k + 1} of ${{{name}"))
        regex = None
        if name == "sg":
            pat = _static(args[1])
            if pat is not None:
                regex = compile_regex(pat, offsets[1])
        self.close(start)
        return Op(name, tuple(args), (), regex)

    def operator(self, name: str, at: int) -> Op:
        base, params = names.split_operator(name)
        if base is None:
            raise self.err(f"unknown operator ${{{name}:", at)
        if base.startswith("quote_") and names.lookup_entry(base[6:]) is None and base != "quote_local_part":
            raise self.err(f"unknown lookup type in ${{{name}:", at)
        arg = self.seq(in_brace=True)
        if self.i >= self.n:
            raise self.err("missing '}' to close the '${' here", at - 2)
        self.i += 1
        return Op(base, (arg,), params)

    # ---- conditions --------------------------------------------------------------------------
    def condition(self) -> Cond:
        self.depth += 1
        try:
            return self._condition()
        finally:
            self.depth -= 1

    def _condition(self) -> Cond:
        if self.depth > MAX_NESTING:
            raise self.err(f"conditions nested more than {MAX_NESTING} deep")
        self.skip_ws()
        negated = False
        while self.peek() == "!":
            negated = not negated
            self.i += 1
            self.skip_ws()
        at = self.i
        name = self.read(_COND_SYMBOL) or self.read(_NAME)
        if not name:
            raise self.err("missing condition after ${if", at)
        if name in names.FORBIDDEN_CONDITIONS:
            raise self.err(f"condition {name!r} is refused: {names.FORBIDDEN_CONDITIONS[name]}", at)
        if name == "def":
            return self.def_condition(negated)
        if name in ("and", "or"):
            return self.and_or(name, negated)
        if name == "acl":
            return self.acl_condition(negated)
        nargs = names.CONDITIONS.get(name)
        if nargs is None:
            raise self.err(f"unknown condition {name!r} (there is no 'ne': use '!eq')", at)
        args: list[Seq] = []
        offsets: list[int] = []
        for k in range(nargs):
            self.skip_ws()
            offsets.append(self.i + 1)
            args.append(self.braced(f"for operand {k + 1} of {name}"))
        regex = None
        if name == "match":
            pat = _static(args[1])
            if pat is not None:
                regex = compile_regex(pat, offsets[1])
        return Cond(name, tuple(args), negated, regex=regex)

    def acl_condition(self, negated: bool) -> Cond:
        """`acl {{name}{arg1}...{arg9}}`: one brace around the name and up to nine arguments."""
        self.skip_ws()
        start = self.i
        self.expect("{", "after acl")
        args = [self.braced("for the ACL name of acl")]
        for _ in range(9):
            self.skip_ws()
            if self.peek() != "{":
                break
            args.append(self.braced("for an argument of acl"))
        self.skip_ws()
        if self.peek() != "}":
            raise self.err("missing '}' to close acl{", start)
        self.i += 1
        return Cond("acl", tuple(args), negated)

    def def_condition(self, negated: bool) -> Cond:
        self.expect(":", "after def")
        at = self.i
        m = _HEADER_PREFIX.match(self.s, self.i)
        if m:
            self.i = m.end()
            hdr = self.header(_MODE[m.group(1)], at)
            return Cond("def", (), negated, header=hdr)
        name = self.read(_NAME)
        if not name:
            raise self.err("def: needs a variable name", at)
        self.variable(name, at)
        return Cond("def", (), negated, target=name)

    def and_or(self, name: str, negated: bool) -> Cond:
        self.skip_ws()
        start = self.i
        self.expect("{", f"after {name}")
        subs: list[Cond] = []
        for _ in range(self.n + 1):      # bounded: every pass consumes text or ends
            self.skip_ws()
            if self.i >= self.n:
                raise self.err(f"missing '}}' to close {name}{{", start)
            if self.peek() == "}":
                self.i += 1
                break
            inner = self.i
            self.expect("{", f"around each condition of {name}")
            subs.append(self.condition())
            self.skip_ws()
            if self.peek() != "}":
                raise self.err(f"missing '}}' after a condition of {name}", inner)
            self.i += 1
        return Cond(name, (), negated, subconds=tuple(subs))


def _literal_first_word(source: "Seq") -> bool:
    """True when a query's first word (its command) is complete literal text."""
    parts = getattr(source, "parts", ())
    if not parts or not isinstance(parts[0], Literal):
        return False
    text = parts[0].text.lstrip()
    if not text:
        return False
    return len(parts) == 1 or any(c.isspace() for c in text)
