"""The Ed25519 key pair that signs and verifies API tokens, generated under the data dir on first use.

The gateway (to verify) and `qt token` (to sign) both call `ensure_key_pair`; whichever runs first
creates the pair, and a concurrent second one reads the first's instead of writing its own.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PRIVATE_NAME = "jwt-ed25519.pem"
PUBLIC_NAME = "jwt-ed25519.pub.pem"


def key_paths(data_dir: Path) -> tuple[Path, Path]:
    """(private, public) PEM paths under `<data_dir>/secrets/`."""
    secrets = data_dir / "secrets"
    return secrets / PRIVATE_NAME, secrets / PUBLIC_NAME


def ensure_key_pair(data_dir: Path) -> tuple[Path, Path]:
    """Create the pair (mode 0600) when absent; the public half is re-derived if only it is missing."""
    private_path, public_path = key_paths(data_dir)
    if not private_path.exists():
        private_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(private_path.parent, 0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        _publish(private_path, pem)
    if not public_path.exists():
        _publish(public_path, public_pem(load_private(private_path).public_key()))
    return private_path, public_path


def load_private(path: Path) -> Ed25519PrivateKey:
    """The signing key in a PKCS#8 PEM file."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """The verifying key in a SubjectPublicKeyInfo PEM file."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    """A public key as SubjectPublicKeyInfo PEM."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _publish(path: Path, data: bytes) -> None:
    # Write a private temp file, then hard-link it into place: link() fails if the name exists, so
    # two first boots racing each other never mix halves of two different pairs.
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink()
