"""Settings that say which hosts are "the local host" for `@mx_any`/`@mx_primary`/`@mx_secondary`
domain-list items (lists/mx.py), named as Exim's main options."""

from __future__ import annotations

from typing import Any

from .. import lists, registry
from .. import validators as st
from ..errors import SyntaxProblem
from ..lists.hosts import BadAddress, IPNetwork, parse_network


def _interfaces(value: Any) -> tuple[IPNetwork, ...]:
    """The networks of the list, parsed here, once per policy load: lists/mx.py tests every
    address of every MX target against them."""
    items = st.string_list(value) if not isinstance(value, str) else tuple(lists.split_text(value))
    networks = []
    for item in items:
        try:
            networks.append(parse_network(item))
        except BadAddress as exc:
            raise SyntaxProblem(f"local_interfaces: {exc}") from None
    return tuple(networks)


def _domain_list(value: Any) -> str | None:
    text = st.optional_text(value)
    if text is not None:
        lists.parse_list(text, "domain")     # raises SyntaxProblem with the offset
    return text


registry.setting("local_interfaces", _interfaces, (),
                 "addresses/networks of this mail host for @mx_* items (`<;` list or YAML sequence); "
                 "empty: the address the client connected to ($received_ip_address)")
registry.setting("hosts_treat_as_local", _domain_list, None,
                 "a domain list of MX host names that count as the local host for @mx_* items")
