"""How people's names are shown: in full to the tenant's side, masked to agency staff.

A debtor's (or a third party's) name is the tenant's data. Its own staff and API clients
see it whole; agency staff see each word's first character and stars for the rest
(``Zhang San Feng`` → ``Z**** S** F***``, ``张三丰`` → ``张**``), enough to greet and to
tell people apart on a list, as their identifiers are masked too (``138****5678``).
Outside a request (nobody to ask) a name is masked.
"""

from __future__ import annotations

from typing import Any

from flask import has_request_context
from marshmallow import fields

from recova.platform.auth.principal import current_principal
from recova.platform.auth.reach import reaches_every_case
from recova.platform.kernel.crypto import mask


def mask_name(name: str) -> str:
    """Each whitespace-separated word of ``name`` keeps its first character only."""
    return " ".join(mask(word, keep_start=1, keep_end=0) for word in name.split())


def name_for_caller(name: str) -> str:
    """``name`` as the current request's principal may see it."""
    if has_request_context():
        principal = current_principal()
        if principal is not None and reaches_every_case(principal):
            return name
    return mask_name(name)


class PersonName(fields.String):
    """A person's name: whole to the tenant's side, masked (``mask_name``) to anyone else."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {
            "description": "in full to the tenant's staff and clients; masked to agency staff",
            **kwargs.pop("metadata", {}),
        }
        super().__init__(metadata=metadata, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return name_for_caller(str(value))
