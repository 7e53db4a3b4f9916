"""Encryption of personal identifiers at rest, with a keyed blind index for look-ups.

AES-256-GCM (authenticated, from ``cryptography``) encrypts each value with a fresh
96-bit nonce; the ciphertext is ``version || nonce || ciphertext+tag``. The blind index is
HMAC-SHA256 of the normalised value under a key derived from the same master key with
HKDF, so equal identifiers can be found and de-duplicated without decrypting anything.
"""

from __future__ import annotations

import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"


def _derive(master_key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master_key)


class PersonalDataCipher:
    """Encrypts, decrypts, indexes and masks personal identifiers under one master key."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the personal-data key must be 32 bytes")
        self._aead = AESGCM(_derive(master_key, b"recova/pii/encrypt/v1"))
        self._index_key = _derive(master_key, b"recova/pii/blind-index/v1")

    def encrypt(self, plaintext: str, *, context: str) -> bytes:
        """Encrypt ``plaintext``; ``context`` (e.g. ``"debtor.national_id"``) is authenticated."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return _VERSION + nonce + sealed

    def decrypt(self, ciphertext: bytes, *, context: str) -> str:
        """Decrypt a value produced by ``encrypt`` under the same context."""
        if ciphertext[:1] != _VERSION:
            raise ValueError("unknown ciphertext version")
        nonce, sealed = ciphertext[1:13], ciphertext[13:]
        return self._aead.decrypt(nonce, sealed, context.encode()).decode()

    def encrypt_bytes(self, plaintext: bytes, *, context: str) -> bytes:
        """Encrypt a blob (an uploaded file's chunk); ``context`` is authenticated."""
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def decrypt_bytes(self, ciphertext: bytes, *, context: str) -> bytes:
        """Decrypt a blob produced by ``encrypt_bytes`` under the same context."""
        if ciphertext[:1] != _VERSION:
            raise ValueError("unknown ciphertext version")
        return self._aead.decrypt(ciphertext[1:13], ciphertext[13:], context.encode())

    def blind_index(self, normalised: str, *, context: str) -> bytes:
        """A deterministic keyed digest of an already-normalised value, for equality look-ups."""
        message = context.encode() + b"\x00" + normalised.encode()
        return hmac.digest(self._index_key, message, "sha256")  # one-shot: runs per row


def mask(value: str, *, keep_start: int = 3, keep_end: int = 4) -> str:
    """Mask the middle of an identifier for display to agency staff: ``138****5678``.

    Only ``value[:keep_start]`` and the last ``keep_end`` characters stay readable (none
    at the end when ``keep_end`` is 0); the rest becomes at most 8 stars. A value no longer
    than what would be kept is all stars, so a short value is never shown whole.
    """
    if keep_start < 0 or keep_end < 0:
        raise ValueError("keep_start and keep_end must not be negative")
    if len(value) <= keep_start + keep_end:
        return "*" * len(value)
    hidden = len(value) - keep_start - keep_end
    # Slice the end by position: value[-0:] would be the whole value.
    end = value[len(value) - keep_end :]
    return value[:keep_start] + "*" * min(hidden, 8) + end
