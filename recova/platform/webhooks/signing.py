"""Webhook secrets and signatures, per the Standard Webhooks specification.

A secret is ``whsec_`` followed by the standard base64 of 32 random bytes (the spec
allows 24 to 64). It is shown once, when it is made (endpoint created, secret rotated),
and stored encrypted under the platform's data key (AES-256-GCM, the same cipher as
personal identifiers and the HTTP connector's credentials), authenticated to its purpose.

Each attempt is signed with the ``standardwebhooks`` reference library: ``v1,`` and the
base64 HMAC-SHA256, under the decoded secret bytes, of ``{webhook-id}.{webhook-timestamp}.
{body}``. During a rotation's grace period the header carries two signatures separated by
a space, the new secret's first: a receiver that knows either secret verifies it.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import secrets
from collections.abc import Sequence

from standardwebhooks import Webhook

from recova.platform.kernel.crypto import PersonalDataCipher

PREFIX = "whsec_"
SECRET_BYTES = 32
_CONTEXT = "webhook_endpoint.secret"


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def seal_secret(cipher: PersonalDataCipher, secret: str) -> bytes:
    """The secret encrypted for storage."""
    return cipher.encrypt(secret, context=_CONTEXT)


def open_secret(cipher: PersonalDataCipher, sealed: bytes) -> str:
    """A stored secret, decrypted for signing."""
    return cipher.decrypt(sealed, context=_CONTEXT)


def signature_header(
    secrets_in_use: Sequence[str], *, msg_id: str, timestamp: dt.datetime, body: str
) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per secret, space-separated."""
    return " ".join(
        Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body)
        for secret in secrets_in_use
    )


def signed_headers(
    secrets_in_use: Sequence[str], *, msg_id: str, timestamp: dt.datetime, body: str
) -> dict[str, str]:
    """The three Standard Webhooks headers (and the content type) of one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(math.floor(timestamp.timestamp())),
        "webhook-signature": signature_header(
            secrets_in_use, msg_id=msg_id, timestamp=timestamp, body=body
        ),
        "content-type": "application/json",
    }
