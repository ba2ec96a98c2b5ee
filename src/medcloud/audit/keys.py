"""Where the audit signing key comes from: the configured PEM, or a key file made on first use.

Every process that appends must sign with the same key, and every verifier must know it: when
contexts run as separate processes on separate disks, set `MEDCLOUD_AUDIT__SIGNING_KEY` rather
than relying on each one's key file.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from medcloud.audit.chain import Signer
from medcloud.config import Settings

KEY_FILE = "audit-ed25519.pem"


def key_path(settings: Settings) -> Path:
    """Return where the generated key file lives."""
    return settings.var_dir / KEY_FILE


def signer_for(settings: Settings) -> Signer:
    """Return the signing key, generating the key file (mode 0600) if none is configured."""
    if settings.audit.signing_key is not None:
        return _from_pem(settings.audit.signing_key.get_secret_value())
    return _from_file(key_path(settings).resolve())


def verification_keys(settings: Settings) -> dict[str, Ed25519PublicKey]:
    """Return the public keys that verify seals, never creating a key file."""
    if settings.audit.signing_key is None and not key_path(settings).exists():
        return {}
    return signer_for(settings).public_keys


# Cached so that each process reads its key once, not on every appended entry.
@functools.lru_cache(maxsize=8)
def _from_pem(pem: str) -> Signer:
    return Signer.from_pem(pem.encode())


@functools.lru_cache(maxsize=8)
def _from_file(path: Path) -> Signer:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first; use theirs
        else:
            with os.fdopen(fd, "wb") as file:
                file.write(Signer.generate_pem())
    return Signer.from_pem(path.read_bytes())
