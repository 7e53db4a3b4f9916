"""Tenant slugs and the schema names derived from them.

A slug becomes part of an SQL identifier, so it is held to a strict pattern: lowercase
ASCII letters, digits and single hyphens, starting with a letter. The schema name is
``tenant_`` plus the slug with hyphens as underscores, at most 63 bytes (PostgreSQL
truncates longer identifiers silently, which could make two tenants share a schema).
"""

from __future__ import annotations

import re
from typing import Any

from werkzeug.routing import BaseConverter
from werkzeug.routing import ValidationError as RouteMismatch

SLUG_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
SCHEMA_PATTERN = re.compile(r"tenant_[a-z][a-z0-9_]*")
SCHEMA_PREFIX = "tenant_"
MAX_IDENTIFIER_BYTES = 63


class UnsafeSlugError(ValueError):
    """A slug that cannot safely name a tenant schema; the message says why."""


def schema_name_for(slug: str) -> str:
    """The schema a slug maps to, after checking the slug is safe."""
    validate_slug(slug)
    return SCHEMA_PREFIX + slug.replace("-", "_")


def validate_slug(slug: str) -> None:
    """Raise ``UnsafeSlugError`` unless ``slug`` can name a schema safely."""
    if not slug:
        raise UnsafeSlugError("slug is empty")
    if any(ch in slug for ch in "\"'`\\;\x00"):
        raise UnsafeSlugError(f"slug {slug!r} contains a quote or statement character")
    if slug.lower().startswith("pg_") or slug.lower().startswith("pg-"):
        raise UnsafeSlugError(f"slug {slug!r} starts with pg_, reserved by PostgreSQL")
    # surrogatepass: a lone surrogate (valid in JSON) is refused by the pattern below, not here
    schema_bytes = len((SCHEMA_PREFIX + slug).encode(errors="surrogatepass"))
    if schema_bytes > MAX_IDENTIFIER_BYTES:
        raise UnsafeSlugError(
            f"slug {slug!r} gives a schema name of {schema_bytes} bytes;"
            f" PostgreSQL allows {MAX_IDENTIFIER_BYTES}"
            f" (at most {MAX_IDENTIFIER_BYTES - len(SCHEMA_PREFIX)} bytes of slug)"
        )
    if slug != slug.lower():
        raise UnsafeSlugError(f"slug {slug!r} must be lowercase")
    if not SLUG_PATTERN.fullmatch(slug):
        raise UnsafeSlugError(
            f"slug {slug!r} may hold only lowercase letters, digits and single hyphens,"
            " and must start with a letter"
        )


class SlugConverter(BaseConverter):
    """``<slug:...>``: a tenant slug; anything a slug cannot be is no route (404)."""

    regex = SLUG_PATTERN.pattern
    max_length = MAX_IDENTIFIER_BYTES - len(SCHEMA_PREFIX)

    def to_python(self, value: str) -> str:
        if len(value) > self.max_length:
            raise RouteMismatch
        return value


def slug_parameter(converter: SlugConverter) -> dict[str, Any]:
    """How a ``<slug:...>`` path parameter is documented in the OpenAPI document."""
    return {
        "type": "string",
        "pattern": f"^{converter.regex}$",
        "minLength": 1,
        "maxLength": converter.max_length,
    }
