"""The vocabulary of the expansion language: which names exist, which are refused, and why.

Lookup types and variables are read from the registry when a text is parsed (not at import),
because feature modules such as redis register theirs after this module is imported.
"""

from __future__ import annotations

import re

from .. import context, registry
from . import partial

#: Variables this package sets itself in ctx.locals (list and lookup data, regex captures).
LOCAL_VARIABLES = frozenset({"value", "host_data", "domain_data", "local_part_data", "list_data"})

#: Items that could run programs, talk to sockets, read files or the environment.
FORBIDDEN_ITEMS = {
    "run": "it would run a command",
    "readsocket": "it would open a network or local socket",
    "readfile": "it would read an arbitrary file",
    "perl": "it would run embedded code",
    "dlfunc": "it would load and run a shared library",
    "env": "it would read the service environment",
    "prvs": "not supported",
    "prvscheck": "not supported",
    "certextract": "not supported",
}

#: Conditions that need file or authentication-server access.
FORBIDDEN_CONDITIONS = {
    "exists": "it would test arbitrary files",
    "pam": "it would call an authentication service",
    "radius": "it would call an authentication service",
    "ldapauth": "it would call an authentication service",
    "saslauthd": "it would call an authentication service",
    "pwcheck": "it would call an authentication service",
}

#: Condition name -> number of braced operands (def/and/or are parsed separately).
CONDITIONS: dict[str, int] = {
    **{op: 2 for op in ("=", "==", "<", "<=", ">", ">=")},
    **{op: 2 for op in ("eq", "eqi", "lt", "lti", "le", "lei", "gt", "gti", "ge", "gei")},
    "match": 2, "match_ip": 2, "inlist": 2, "inlisti": 2,
    "match_domain": 2, "match_address": 2, "match_local_part": 2,
    "bool": 1, "bool_lax": 1, "isip": 1, "isip4": 1, "isip6": 1,
}

#: Function-style items `${name{a}{b}...}` and their operand count.
FUNCTION_ITEMS: dict[str, int] = {"sg": 3, "substr": 3, "length": 2}
#: Items whose trailing arguments may be left out: name -> (fewest, most) braced arguments.
ARG_RANGES: dict[str, tuple[int, int]] = {"imapfolder": (1, 3), "hash": (2, 3), "listquote": (2, 2),
                                          "acl": (1, 10)}
FUNCTION_ITEMS.update({name: most for name, (_, most) in ARG_RANGES.items()})

#: Names that start an item, never a variable (`${if}` is an incomplete item).
ITEM_NAMES = frozenset({"if", "lookup", *FUNCTION_ITEMS})

#: Operators `${name:text}` without parameters.
OPERATORS = frozenset({"lc", "uc", "domain", "local_part", "address", "mask", "reverse_ip",
                       "listcount", "eval", "eval10", "quote", "quote_local_part", "strlen"})
#: Digests and internationalisation (expand/digests.py, expand/intl.py).
OPERATORS |= frozenset({"md5", "sha1", "sha256", "sha2", "utf8_domain_to_alabel", "utf8_domain_from_alabel",
                        "utf8_localpart_to_alabel", "utf8_localpart_from_alabel"})

_PARAM_OPS = {"length": re.compile(r"^length_(\d+)\Z"),
              "substr": re.compile(r"^substr_(-?\d+)(?:_(\d+))?\Z"),
              "hash": re.compile(r"^hash_(\d+)(?:_(\d+))?\Z"), "sha2": re.compile(r"^sha2_(\d+)\Z")}


def known_variable(name: str) -> bool:
    """True if `$name` can be expanded (registry variables, acl_c/acl_m, $0-$9, our locals)."""
    return name in LOCAL_VARIABLES or context.is_known_variable(name)


def lookup_entry(type_name: str) -> registry.Lookup | None:
    """The registry entry for a lookup type as written (`partial-lsearch*@` -> lsearch), or None."""
    type_name = partial.split(type_name)[2]
    base = type_name[:-2] if type_name.endswith("*@") else type_name.rstrip("*")
    if base.count("*"):
        return None
    return registry.TABLES.lookups.get(base)


#: Exim lookup types aclmilter does not offer, with what to use instead.
_LOOKUP_HINTS = {
    "mysql": "keep the data in Redis (`${lookup redis{...}}`) or export it to an lsearch file",
    "pgsql": "keep the data in Redis (`${lookup redis{...}}`) or export it to an lsearch file",
    "sqlite": "export the table to an lsearch file, or use Redis",
    "ldap": "export the entries to an lsearch file, or use Redis",
    "dbm": "use the lsearch source file the DBM file was built from",
    "cdb": "use the lsearch source file the CDB file was built from",
    "dnsdb": "aclmilter does no free-form DNS lookups; keep such data in Redis",
}


def unknown_lookup(type_name: str) -> str:
    """The error for a lookup type that is not registered, with the fix when one is known."""
    base = type_name.rstrip("*@")
    for prefix in ("ldap", "dbm", "cdb"):
        if base.startswith(prefix):
            base = prefix
    hint = _LOOKUP_HINTS.get(base)
    known = ", ".join(sorted(registry.TABLES.lookups))
    return f"unknown lookup type {type_name!r}" + (f": aclmilter has no {base} lookups; {hint}" if hint
                                                   else f" (known: {known})")


def split_operator(name: str) -> tuple[str | None, tuple[int, ...]]:
    """Split `length_5` / `substr_2_3` / `quote_redis` into (base, params); base None if unknown."""
    if name in OPERATORS:
        return name, ()
    for base, pattern in _PARAM_OPS.items():
        m = pattern.match(name)
        if m:
            return base, tuple(int(g) for g in m.groups() if g is not None)
    if name.startswith("quote_") and len(name) > 6:
        return name, ()
    return None, ()
