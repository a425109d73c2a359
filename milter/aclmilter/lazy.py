# SPDX-License-Identifier: GPL-3.0-or-later
"""Third-party modules imported on first use, so a command imports only what it runs.

`aclmilter check` loads a policy: it needs every feature's *registration* (names, argument
parsers, settings), never dnspython, redis-py, dkimpy or pyspf, which together cost about
half a second to import (issue 23). A feature module writes

    dns = lazy.module("dns")          # instead of: import dns.resolver, dns.exception
    ...
    dns.resolver.Resolver(...)        # the import happens here, once

The first attribute read imports the module (and, for a package, the submodule of that
name) and keeps the value on the proxy, so later reads are plain attribute reads.
"""

from __future__ import annotations

import importlib
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
