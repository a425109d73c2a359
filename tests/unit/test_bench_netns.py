"""The benchmark's network-namespace guard and its rspamd configuration (bench/netns.py,
bench/peers.py): the decisions and the generated text only, no namespace, no daemon, no timing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import netns  # noqa: E402
from peers import AUTH_MODULES, DEFAULT_MODULES, rspamd_config, stock_module_names  # noqa: E402

DEV_HEAD = ("Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop\n")
ROUTE_HEAD = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

# A fresh `ip netns add` namespace with `lo` up, as the kernel shows it
FRESH_DEV = DEV_HEAD + "    lo:       0       0    0    0    0     0          0         0        0       0    0    0\n"
FRESH_V6 = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
            "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
            "00000000000000000000000000000001 80 00000000000000000000000000000000 00 "
            "00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo\n")

# A machine's own namespace: an Ethernet interface, a default route and an IPv6 route through it
HOST_DEV = FRESH_DEV + "  eth0: 9327401   12093    0    0    0     0          0         0   771133    7311    0    0\n"
HOST_ROUTE = ROUTE_HEAD + ("eth0\t00000000\t01FFFF0A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
                           "eth0\t00FFFF0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
HOST_V6 = FRESH_V6 + ("fe800000000000000000000000000000 40 00000000000000000000000000000000 00 "
                      "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n")


def test_a_fresh_namespace_with_loopback_up_is_isolated():
    assert netns.isolation_problems(FRESH_DEV, ROUTE_HEAD, FRESH_V6) == []


def test_the_machines_namespace_is_refused_naming_interface_and_routes():
    problems = netns.isolation_problems(HOST_DEV, HOST_ROUTE, HOST_V6)
    assert problems == ["interface eth0", "route via eth0"]


def test_an_interface_without_a_route_is_refused():
    # a veth with no address yet can be given one (and a route) while the bench runs
    assert netns.isolation_problems(FRESH_DEV + "  veth0: 0 0 0 0 0 0 0 0 0 0 0 0\n", ROUTE_HEAD, FRESH_V6) == [
        "interface veth0"]


def test_an_ipv6_route_out_alone_is_refused():
    v6_out = FRESH_V6 + ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
                         "fe800000000000000000000000000001 00000400 00000001 00000000 00000003    wg0\n")
    assert netns.isolation_problems(FRESH_DEV, ROUTE_HEAD, v6_out) == ["route via wg0"]


def test_a_kernel_without_ipv6_reads_as_no_ipv6_routes():
    assert netns.route_devices(ROUTE_HEAD, "") == []
    assert netns.interfaces(FRESH_DEV) == ["lo"]


@pytest.mark.parametrize(("wanted", "inside", "isolated", "plan"), [
    (False, None, False, "run"),                    # no rspamd-full, no --netns: as before
    (True, None, False, "enter"),                   # the parent creates the namespace
    (True, "aclmilter-bench-7", True, "run"),       # the child, in it
    (True, None, True, "run"),                      # already loopback only (someone else's)
    (True, "aclmilter-bench-7", False, "refuse"),   # the child sees a route out: never re-enter
    (False, "aclmilter-bench-7", False, "run"),
])
def test_netns_plan(wanted, inside, isolated, plan):
    assert netns.netns_plan(wanted, inside, isolated) == plan


def test_require_isolated_refuses_with_the_reasons(monkeypatch):
    monkeypatch.setattr(netns, "current_isolation_problems", lambda: ["interface eth0"])
    with pytest.raises(RuntimeError, match="refusing to start rspamd-x .*interface eth0"):
        netns.require_isolated("rspamd-x")
    monkeypatch.setattr(netns, "current_isolation_problems", lambda: [])
    netns.require_isolated("rspamd-x")


STOCK = ["antivirus", "dkim", "dmarc", "fuzzy_check", "multimap", "phishing", "rbl", "spf", "whitelist"]


def _config(modules):
    return rspamd_config("127.0.0.1:11332", "127.0.0.1:5353", 11334, modules, STOCK)


def test_stock_configuration_disables_no_module():
    files = _config(None)
    disabled = [rel for rel, text in files.items() if "enabled = false" in text]
    assert disabled == ["override.d/worker-normal.inc"]      # the proxy scans by itself
    assert not any(rel.startswith("override.d/") and rel[len("override.d/"):-5] in STOCK for rel in files)


def test_limited_configuration_disables_every_other_stock_module():
    files = _config(DEFAULT_MODULES)
    disabled = sorted(rel[len("override.d/"):-len(".conf")] for rel, text in files.items()
                      if rel.endswith(".conf") and rel.startswith("override.d/") and text == "enabled = false;\n")
    assert disabled == sorted(set(STOCK) - set(DEFAULT_MODULES))


@pytest.mark.parametrize("modules", [None, DEFAULT_MODULES])
def test_dns_goes_to_the_bench_nameserver_only(modules):
    options = _config(modules)["local.d/options.inc"]
    assert 'nameserver = ["127.0.0.1:5353"];' in options
    assert options.count("nameserver") == 1
    assert 'local_addrs = ["240.0.0.1/32"];' in options      # loopback mail is checked


@pytest.mark.parametrize("modules", [None, DEFAULT_MODULES])
def test_milter_proxy_on_the_given_socket(modules):
    files = _config(modules)
    proxy = files["override.d/worker-proxy.inc"]
    assert 'bind_socket = "127.0.0.1:11332";' in proxy and "milter = yes;" in proxy and "self_scan = yes;" in proxy
    assert files["override.d/worker-controller.inc"] == 'bind_socket = "127.0.0.1:11334";\n'
    for name in AUTH_MODULES:
        assert files[f"local.d/{name}.conf"] == "check_local = true;\ncheck_authed = true;\n"


def test_stock_module_names_reads_modules_dir(tmp_path):
    for name in ("rbl.conf", "spf.conf", "README"):
        (tmp_path / name).write_text("")
    assert stock_module_names(tmp_path) == ["rbl", "spf"]
