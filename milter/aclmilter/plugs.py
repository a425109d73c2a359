# SPDX-License-Identifier: GPL-3.0-or-later
"""Calls a lower layer makes into a higher one, plugged in by the higher layer at import.

Imports run one way (tests/unit/test_layers.py), but Exim's language calls upward in two
places: `acl = name` (a condition) and `${acl{name}}` (an expansion) run a named ACL, which
is the engine's job; and the expansion conditions `match_ip`, `match_domain`, ..., `inlist`
and the `${listcount}` operator read lists, while lists/ sits above expand/ because a list's
items are expanded. The higher layer hands its function over here when it is imported
(engine.py, lists/__init__.py); the lower layer calls through the plug.

Calling a plug nobody filled raises RuntimeError naming the module to import: a program
error (the engine always runs before any ACL is called; the loader imports lists/ through the
feature modules), never a policy error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Generic, ParamSpec, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from .actions import Decision
    from .context import EvalContext
    from .outcome import Result

P = ParamSpec("P")
R = TypeVar("R")


class Plug(Generic[P, R]):
    """One function slot: filled once by `provider`, called like the function it holds."""

    __slots__ = ("name", "provider", "fn")

    def __init__(self, name: str, provider: str) -> None:
        self.name = name
        self.provider = provider
        self.fn: Callable[P, R] | None = None

    def plug(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Fill the slot (a decorator); a second, different function fails at import."""
        if self.fn is not None and self.fn is not fn:
            raise RuntimeError(f"plug {self.name} is already filled by {self.fn!r}")
        self.fn = fn
        return fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        fn = self.fn
        if fn is None:
            raise RuntimeError(f"plug {self.name} is empty: import {self.provider} first")
        return fn(*args, **kwargs)


# engine.run_named: the ACL's Decision; ExpansionFailed when there is no such ACL
run_named_acl: Plug[[EvalContext, str, list[str]], Decision] = Plug("run_named_acl", "aclmilter.engine")
# engine.run_nested: `acl = name args` as a condition value
run_nested_acl: Plug[[EvalContext, str, list[str]], Result] = Plug("run_nested_acl", "aclmilter.engine")
# lists.match_text(ctx, expanded_list_text, subject, kind) -> Result (OK in list, FAIL, DEFER, ERROR)
match_list: Plug[[EvalContext, str, str, str], Result] = Plug("match_list", "aclmilter.lists")
# lists.split_text(expanded_list_text) -> items (honours a `<c` separator prefix)
split_list: Plug[[str], list[str]] = Plug("split_list", "aclmilter.lists")
