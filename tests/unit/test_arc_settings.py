# SPDX-License-Identifier: GPL-3.0-or-later
"""settings.arc_sign and arc_trusted_sealers are validated at load, with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from aclmilter.errors import PolicyErrors
from aclmilter.runtime import Runtime

KEY = Path(__file__).resolve().parents[1] / "fixtures" / "dmarc" / "dkim-sel1.private"


def _load(tmp_path: Path, settings: str) -> Runtime:
    path = tmp_path / "p.yaml"
    path.write_text("settings:\n" + settings)
    rt = Runtime(path)
    rt.load()
    return rt


@pytest.mark.parametrize("value,message", [
    ("{domain: a.example, selector: s, key_file: /nonexistent/key}", "cannot read key_file"),
    ("{domain: a.example, selector: s, key_file: BAD}", "no usable PEM private key"),
    ("{domain: a.example, selector: s}", "exactly domain, selector and key_file"),
    ("{domain: a.example, selector: s, key_file: KEY, extra: 1}", "exactly domain, selector and key_file"),
    ("{domain: 'a example', selector: s, key_file: KEY}", "bad domain or selector"),
])
def test_arc_sign_errors(tmp_path: Path, value: str, message: str) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
    value = value.replace("key_file: BAD", f"key_file: {bad}").replace("key_file: KEY", f"key_file: {KEY}")
    with pytest.raises(PolicyErrors) as exc:
        _load(tmp_path, f"  arc_sign: {value}\n")
    text = str(exc.value.errors[0])
    assert "p.yaml:2" in text and message in text, text


def test_good_arc_settings(tmp_path: Path) -> None:
    rt = _load(tmp_path, f"  arc_sign: {{domain: MX.Example, selector: s1, key_file: {KEY}}}\n"
                         "  arc_trusted_sealers: Lists.Example.org:fwd.example.\n")
    settings = rt.current().policy.settings
    assert settings["arc_sign"].domain == "mx.example" and settings["arc_sign"].selector == "s1"
    assert settings["arc_trusted_sealers"] == ("lists.example.org", "fwd.example")
