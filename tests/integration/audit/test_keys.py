"""Where the signing key comes from: the configured PEM, or a key file generated once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from medcloud.audit.chain import Signer
from medcloud.audit.keys import KEY_FILE, signer_for, verification_keys
from medcloud.config import AuditSettings, Settings


def test_a_key_file_is_generated_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    assert verification_keys(settings) == {}
    assert not (tmp_path / "var" / KEY_FILE).exists()  # verifying never makes a key

    signer = signer_for(settings)
    path = tmp_path / "var" / KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Signer.from_pem(path.read_bytes()).key_id == signer.key_id
    assert list(verification_keys(settings)) == [signer.key_id]


def test_a_configured_key_wins_over_the_key_file(tmp_path: Path) -> None:
    pem = Signer.generate_pem()
    settings = Settings(
        var_dir=tmp_path / "var",
        audit=AuditSettings(signing_key=pem.decode()),
    )
    assert signer_for(settings).key_id == Signer.from_pem(pem).key_id
    assert not (tmp_path / "var" / KEY_FILE).exists()


def test_a_key_that_is_not_ed25519_is_refused() -> None:
    pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="Ed25519"):
        Signer.from_pem(pem)
