# SPDX-License-Identifier: GPL-3.0-or-later
"""Third-party modules imported on first use, so a command imports only what it runs.

`aclmilter check` loads a policy: it needs every feature's *registration* (names, argument
parsers, settings), never dnspython, redis-py, dkimpy or pyspf, which together cost about
half a second to import (issue 23). A feature module writes

    dns = lazy.module("dns")          # instead of: import dns.resolver, dns.exception
    ...
    dns.resolver.Resolver(...)        # the import happens here, once

The first attribute read imports the module (and, for a package, the submodule of that
name) and keeps the value on the proxy, so later reads are plain attribute reads. The same
holds for standard modules a start-up never needs (hashlib, email, socket, ...) and for a
feature's implementation module, whose registry entries stay in conditions/ (a feature a
policy does not use is never imported by `aclmilter check`). `regex(...)` does the same for
a pattern that is slow to compile and used only by rare work (a DMARC failure report).
tests/unit/test_cli_imports.py pins what `check` and `test` import.
"""

from __future__ import annotations

import importlib
import re
from typing import Any


class LazyModule:
    """Stands for module `name` until an attribute is read."""

    def __init__(self, name: str) -> None:
        self.__dict__["_lazy_name"] = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        name = self.__dict__["_lazy_name"]
        mod = importlib.import_module(name)
        try:
            value = getattr(mod, attr)
        except AttributeError:
            # a submodule not imported by its package's __init__ (dns.resolver, redis.retry)
            value = importlib.import_module(f"{name}.{attr}")
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_name']!r}>"


def module(name: str) -> Any:
    """A stand-in for `import name` that imports on first attribute access."""
    return LazyModule(name)


class LazyRegex:
    """Stands for `re.compile(pattern, flags)` until a method or attribute is read.

    For patterns a command's start-up never uses (a failure report's address check): their
    compilation is paid by the first use instead of by every `aclmilter check`. The first
    read keeps the compiled pattern's attribute on the proxy, so later reads are plain."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.__dict__["_lazy_args"] = (pattern, flags)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = getattr(re.compile(*self.__dict__["_lazy_args"]), attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<lazy regex {self.__dict__['_lazy_args'][0]!r}>"


def regex(pattern: str, flags: int = 0) -> Any:
    """A stand-in for `re.compile(pattern, flags)` that compiles on first use."""
    return LazyRegex(pattern, flags)
