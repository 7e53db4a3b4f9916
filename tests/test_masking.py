"""Masking personal identifiers: only the kept characters ever show, for every caller, and
migration 0008 rewrites the copies the ``keep_end=0`` bug stored with the plaintext."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from recova.platform.kernel.crypto import PersonalDataCipher, mask
from recova.platform.kernel.extension import platform
from recova.tenants.migrate import (
    MIGRATIONS_DIR,
    downgrade_tenant_schema,
    head,
    tenant_versions,
    upgrade_tenant_schema,
)
from recova.tenants.slugs import schema_name_for
from tests.ingest_support import (
    CN_COLUMNS,
    CN_HEADER,
    add_mapping,
    cn_row,
    ingest,
    new_tenant,
    write_csv,
)

keeps = st.integers(min_value=0, max_value=10)


def _shown(value: str, keep_start: int, keep_end: int) -> str:
    """What a mask may show of ``value``: the kept start and end, nothing for short values."""
    if len(value) <= keep_start + keep_end:
        return ""
    return value[:keep_start] + (value[len(value) - keep_end :] if keep_end else "")


@given(st.text(), keeps, keeps)
def test_a_mask_shows_only_the_kept_characters(value: str, keep_start: int, keep_end: int) -> None:
    masked = mask(value, keep_start=keep_start, keep_end=keep_end)
    if len(value) <= keep_start + keep_end:
        assert masked == "*" * len(value)  # short values are hidden whole
        return
    hidden = len(value) - keep_start - keep_end
    stars = min(hidden, 8)
    assert len(masked) == keep_start + stars + keep_end
    assert masked[keep_start : keep_start + stars] == "*" * stars
    # The unmasked characters are exactly the kept start and the kept end.
    unmasked = masked[:keep_start] + masked[keep_start + stars :]
    assert unmasked == _shown(value, keep_start, keep_end)
    assert len(unmasked) == keep_start + keep_end


def test_keep_end_zero_keeps_nothing_at_the_end() -> None:
    assert mask("elizabeth.wilson975", keep_start=1, keep_end=0) == "e********"
    assert mask("Room 1203, 88 Century Avenue", keep_start=6, keep_end=0) == "Room 1********"
    assert mask("13812345678") == "138****5678"
    with pytest.raises(ValueError, match="negative"):
        mask("13812345678", keep_start=-1)


EMAIL = "elizabeth.wilson975@example.com"
ADDRESS = "Room 1203, 88 Century Avenue, Pudong, Shanghai"
CONTACT_COLUMNS = {**CN_COLUMNS, "email": "邮箱", "address": "地址"}


def test_ingested_emails_and_addresses_are_stored_masked(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    objects = platform(app)
    tenant = new_tenant(app)
    add_mapping(objects, tenant, columns=CONTACT_COLUMNS)
    row = cn_row(1, 邮箱=EMAIL, 地址=ADDRESS)
    path = write_csv(tmp_path / "p.csv", [row], header=[*CN_HEADER, "邮箱", "地址"])
    run = ingest(objects, tenant, path)
    assert run.inserted == 1, run.message
    with objects.db.engine.connect() as connection:
        masked: dict[str, str] = dict(
            connection.execute(
                text(
                    f'SELECT kind::text, value_masked FROM "{schema_name_for(tenant)}".contacts'
                    " WHERE kind::text IN ('email', 'address')"
                )
            ).all()
        )
    assert masked == {"email": "e********@example.com", "address": "Room 1********"}


# --- migration 0008 -------------------------------------------------------------------


def _old_mask(value: str, *, keep_start: int, keep_end: int) -> str:
    """``mask`` as it was before the fix, to write the copies the old code stored."""
    if len(value) <= keep_start + keep_end:
        return "*" * len(value)
    hidden = len(value) - keep_start - keep_end
    return value[:keep_start] + "*" * min(hidden, 8) + value[-keep_end:]


def _old_email(value: str) -> str:
    local, _, domain = value.partition("@")
    return (_old_mask(local, keep_start=1, keep_end=0) + "@" + domain)[:64]


def _old_address(value: str) -> str:
    return _old_mask(value, keep_start=6, keep_end=0)[:64]


def _new_email(value: str) -> str:
    local, _, domain = value.partition("@")
    return (mask(local, keep_start=1, keep_end=0) + "@" + domain)[:64]


def _new_address(value: str) -> str:
    return mask(value, keep_start=6, keep_end=0)[:64]


def _migration() -> ModuleType:
    path = MIGRATIONS_DIR / "tenant" / "versions" / "0008_tenant_masks.py"
    spec = importlib.util.spec_from_file_location("tenant_0008", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


M0008 = _migration()
# Local parts and addresses as they come: printable, no "@" in a local part.
locals_ = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="@", exclude_categories=["Cc", "Cs"]),
    min_size=1,
    max_size=70,
)
domains = st.text(alphabet="abcdefghijklmnopqrstuvwxyz.-0123456789", min_size=1, max_size=40)
addresses = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=90
)


@given(addresses)
def test_the_repair_gives_the_new_mask_of_every_address(value: str) -> None:
    old, new = _old_address(value), _new_address(value)
    repaired = M0008.repaired_text(old, M0008.ADDRESS_KEEP)
    fixed = old if repaired is None else repaired
    # An all-star copy shows nothing and cannot be told apart from a right one: kept.
    assert fixed == new or set(old) <= {"*"}
    assert M0008.repaired_text(new, M0008.ADDRESS_KEEP) is None  # a right copy is left alone


@given(locals_, domains)
def test_the_repair_gives_the_new_mask_of_every_email(local: str, domain: str) -> None:
    value = f"{local}@{domain}"
    old, new = _old_email(value), _new_email(value)
    repaired = M0008.repaired_email(old)
    fixed = old if repaired is None else repaired
    if set(old.partition("@")[0]) <= {"*"}:
        return  # an all-star local part shows nothing and is kept as it is
    if len(old) < 64:
        assert fixed == new
    # Cut at the column length, the domain may be cut too; the local part never shows.
    assert fixed.partition("@")[0] == new.partition("@")[0]
    assert new.startswith(fixed)
    assert M0008.repaired_email(new) is None


def _insert_contacts(connection: Any, schema: str, rows: list[tuple[str, str, bytes]]) -> None:
    connection.execute(
        text(f"INSERT INTO \"{schema}\".debtors (external_id, full_name) VALUES ('D-1', 'X')")
    )
    for number, (kind, masked, ciphertext) in enumerate(rows):
        connection.execute(
            text(
                f'INSERT INTO "{schema}".contacts (debtor_id, kind, relation, value_ciphertext,'
                f' value_index, value_masked) SELECT id, CAST(:kind AS "{schema}".contact_kind),'
                f" 'self', :ct, :idx, :masked FROM \"{schema}\".debtors WHERE external_id = 'D-1'"
            ),
            {"kind": kind, "ct": ciphertext, "idx": bytes([number]) * 32, "masked": masked},
        )


def test_migration_0008_rewrites_the_stored_masked_copies(app, settings) -> None:  # type: ignore[no-untyped-def]
    objects = platform(app)
    tenant = new_tenant(app)
    schema = schema_name_for(tenant)
    cipher = PersonalDataCipher(settings.data_key)
    long_domain = "mail." + "x" * 50 + ".example.com"
    long_local = "a" + "b" * 60
    values = [
        ("email", EMAIL),
        ("email", "ab@example.com"),
        ("email", "a@example.com"),  # one character: all stars, right already
        ("email", "jo@" + long_domain),  # cut at 64 inside the domain
        ("email", long_local + "@example.com"),  # cut at 64 inside the local part
        ("address", ADDRESS),
        ("address", "Flat 7B"),
        ("address", "Flat 7"),  # six characters: all stars, right already
        ("address", "Building 5, " + "Long Road " * 10),  # cut at 64
        ("phone", "+8613812345678"),
    ]
    with objects.db.engine.begin() as connection:
        downgrade_tenant_schema(connection, schema, to="0007")
    assert _version(objects, schema) == "0007"
    old_copies = {
        "email": _old_email,
        "address": _old_address,
        "phone": lambda v: mask(v, keep_start=6, keep_end=4),
    }
    rows = [
        (kind, old_copies[kind](value), cipher.encrypt(value, context=f"contact.{kind}"))
        for kind, value in values
    ]
    rows.append(("email", "[erased]", b""))  # retention already erased this one
    rows.append(("address", "[erased]", b""))
    rows.append(("email", _new_email("zoe@example.org"), b"x"))  # written by the fixed code
    with objects.db.engine.begin() as connection:
        _insert_contacts(connection, schema, rows)
        assert _old_email(EMAIL) == "e********" + EMAIL  # what a tenant admin saw
        upgrade_tenant_schema(connection, schema)
    assert _version(objects, schema) == head("tenant")

    stored = _stored(objects, schema)
    expected = [
        _new_email(EMAIL),
        "a*@example.com",
        "*@example.com",
        "j*@" + long_domain[:59],  # what survived the cut of "j*jo@..."
        "a********@",
        "Room 1********",
        "Flat 7*",
        "******",
        "Buildi********",
        "+86138****5678",
        "[erased]",
        "[erased]",
        "z**@example.org",
    ]
    assert [masked for _, masked in stored] == expected
    for kind, masked in stored:  # nothing but stars after the kept start
        if masked == "[erased]":
            continue
        if kind == "email":
            assert set(masked.partition("@")[0][1:]) <= {"*"}
        elif kind == "address":
            assert set(masked[6:]) <= {"*"}

    # Running it again (a repair after a partial failure) changes nothing.
    with objects.db.engine.begin() as connection:
        downgrade_tenant_schema(connection, schema, to="0007")
        upgrade_tenant_schema(connection, schema)
    assert _stored(objects, schema) == stored


def _version(objects: Any, schema: str) -> str | None:
    with objects.db.engine.connect() as connection:
        return tenant_versions(connection, [schema])[schema]


def _stored(objects: Any, schema: str) -> list[tuple[str, str]]:
    with objects.db.engine.connect() as connection:
        return [
            (kind, masked)
            for kind, masked in connection.execute(
                text(f'SELECT kind::text, value_masked FROM "{schema}".contacts ORDER BY id')
            )
        ]
