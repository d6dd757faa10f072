"""The throwaway certificate authority of scripts/brokers (needs the openssl command)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from brokerctl import certs

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args: str) -> str:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def test_the_authority_signs_what_the_tests_need(tmp_path: Path) -> None:
    made = certs.ensure(tmp_path)
    assert made.complete
    ca = str(made.ca)
    assert ": OK" in _openssl("verify", "-CAfile", ca, str(made.server))
    assert ": OK" in _openssl("verify", "-CAfile", ca, str(made.client))
    assert "DNS:localhost" in _openssl(
        "x509", "-in", str(made.server), "-noout", "-ext", "subjectAltName"
    )
    assert "IP Address" not in _openssl(
        "x509", "-in", str(made.server), "-noout", "-ext", "subjectAltName"
    )
    assert "certificate has expired" in _openssl("verify", "-CAfile", ca, str(made.expired_client))
    assert ": OK" not in _openssl("verify", "-CAfile", ca, str(made.other_client))
    assert ": OK" not in _openssl("verify", "-CAfile", str(made.other_ca), str(made.server))
    assert made.ca_key.stat().st_mode & 0o077 == 0
    assert made.client_key.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8


def test_it_is_made_once(tmp_path: Path) -> None:
    first = certs.ensure(tmp_path).ca.read_bytes()
    assert certs.ensure(tmp_path).ca.read_bytes() == first
