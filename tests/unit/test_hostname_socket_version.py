"""primary_hostname's default (j macro, then FQDN), socket pre-flight errors, --version."""

from __future__ import annotations

import configparser
import logging
import socket
from pathlib import Path

import pytest

import aclmilter
from aclmilter import cli
from aclmilter.checks.authresults import authserv_id
from aclmilter.hostname import lacks_dot, primary_hostname
from aclmilter.service import cli_serve, preflight, socketspec
from aclmilter.services import Services

from .fakes_ctx import make_ctx

ROOT = Path(__file__).resolve().parents[2]


def _ctx(settings=None, j=None, fqdn="host.example.net"):
    ctx = make_ctx(settings=settings)
    ctx.services = Services({}, overrides={"fqdn": fqdn})
    if j is not None:
        ctx.conn.macros["j"] = j
    return ctx


def test_primary_hostname_prefers_setting_then_j_macro_then_fqdn() -> None:
    assert primary_hostname(_ctx({"primary_hostname": "mx.set.example"}, j="mx.j.example")) == "mx.set.example"
    assert primary_hostname(_ctx(j="mx.j.example")) == "mx.j.example"
    assert primary_hostname(_ctx()) == "host.example.net"
    assert _ctx(j="mx.j.example").var("primary_hostname") == "mx.j.example"


def test_authserv_id_defaults_to_the_primary_hostname() -> None:
    assert authserv_id(_ctx(j="mx.j.example")) == "mx.j.example"
    assert authserv_id(_ctx({"authserv_id": "auth.example"}, j="mx.j.example")) == "auth.example"


def test_fqdn_service_is_socket_getfqdn_by_default() -> None:
    ctx = make_ctx()
    assert primary_hostname(ctx) == socket.getfqdn()


def test_short_name_warns_at_start(caplog: pytest.LogCaptureFixture) -> None:
    assert lacks_dot("vm") and lacks_dot("vm.") and not lacks_dot("vm.example.org")
    with caplog.at_level(logging.WARNING, logger="aclmilter"):
        cli_serve._warn_short_hostname({"primary_hostname": "vm"})
    assert "primary host name 'vm' has no dot" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aclmilter"):
        cli_serve._warn_short_hostname({"primary_hostname": "mx.example.org"})
    assert caplog.text == ""


def test_default_socket_is_inside_postfix_queue_directory() -> None:
    assert cli_serve.DEFAULT_SOCKET == "unix:/var/spool/postfix/aclmilter/aclmilter.sock"


def test_missing_socket_directory_is_named(tmp_path: Path) -> None:
    spec = socketspec.parse(f"unix:{tmp_path}/nope/aclmilter.sock")
    with pytest.raises(preflight.SocketProblem, match=r"socket directory .*/nope does not exist"):
        preflight.check(spec)


def test_socket_in_use_and_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "m.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    try:
        with pytest.raises(preflight.SocketProblem, match="socket path .* is in use: another milter is listening"):
            preflight.check(socketspec.parse(f"unix:{path}"))
    finally:
        listener.close()
    preflight.check(socketspec.parse(f"unix:{path}"))     # stale file: libmilter replaces it


def test_plain_file_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(preflight.SocketProblem, match="is not a socket"):
        preflight.check(socketspec.parse(f"unix:{tmp_path}/f"))


def test_port_in_use() -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        with pytest.raises(preflight.SocketProblem, match=f"port {port} on 127.0.0.1 is in use"):
            preflight.check(socketspec.parse(f"inet:{port}@127.0.0.1"))
    finally:
        busy.close()


def test_unknown_socket_group() -> None:
    with pytest.raises(preflight.SocketProblem, match="no such group"):
        preflight.check_group("no-such-group-aclmilter")
    preflight.check_group("root")
    preflight.check_group(None)


def test_version_is_defined_once(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["version"] == "attr: aclmilter.__version__"
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"aclmilter {aclmilter.__version__}"
