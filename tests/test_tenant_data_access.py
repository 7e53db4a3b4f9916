"""One way into tenant data: the quoting rule, shared tables named from their models, the
driver side of a scoped session, and the agency-contract rule read alike by the ORM and
by the set-based SQL."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from sqlalchemy import text

from recova.billing.models import Invoice
from recova.platform.agencies.contracts import (
    AgencyContract,
    active_contract_sql,
    agency_has_active_contract,
    contracted_agencies_sql,
)
from recova.platform.agencies.models import Agency
from recova.platform.kernel.db import ScopedConnection, quote_identifier, scoped_schema, table_sql
from recova.platform.kernel.extension import platform
from recova.tenants.scope import tenant_scope
from tests.support import World


def test_an_identifier_is_quoted_with_its_quotes_doubled() -> None:
    assert quote_identifier("tenant_lendco") == '"tenant_lendco"'
    assert quote_identifier('a"; DROP SCHEMA x; --') == '"a""; DROP SCHEMA x; --"'
    for bad in ("", "tenant\x00x"):
        with pytest.raises(ValueError, match="not an SQL identifier"):
            quote_identifier(bad)


def test_shared_tables_are_named_from_their_models_and_tenant_tables_are_refused() -> None:
    assert table_sql(AgencyContract) == '"platform"."agency_contracts"'
    assert table_sql(Agency) == '"platform"."agencies"'
    with pytest.raises(ValueError, match="tenant table"):
        table_sql(Invoice)


def test_a_scoped_session_hands_out_its_schema_and_a_cursor_in_its_transaction(
    app: Flask, world: World
) -> None:
    db = platform(app).db
    with db.session() as unscoped, pytest.raises(RuntimeError, match="tenant_scope"):
        scoped_schema(unscoped)
    with tenant_scope(world.a.slug, db=db, pinned=True) as session:
        raw = ScopedConnection(session)
        assert raw.schema == quote_identifier(session.info["tenant"].schema_name)
        cur = raw.cursor()
        cur.execute("CREATE TEMP TABLE scoped_probe (n int) ON COMMIT DROP")
        cur.execute("INSERT INTO scoped_probe VALUES (1)")
        # The ORM session sees what the cursor wrote: one connection, one transaction.
        assert session.execute(text("SELECT count(*) FROM scoped_probe")).scalar_one() == 1
        first_backend = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        raw.commit()  # ON COMMIT DROP: the commit really reached the server
        cur.execute("SELECT to_regclass('pg_temp.scoped_probe') IS NULL")
        assert cur.fetchone() == (True,)
        # Pinned: the next transaction runs on the same connection.
        assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() == first_backend


def test_the_contract_rule_reads_the_same_in_the_orm_and_in_sql(app: Flask, world: World) -> None:
    with platform(app).db.session() as session:
        contract = session.get(AgencyContract, world.contract_a_id)
        assert contract is not None
        start = contract.starts_on
        contract.ends_on = start + dt.timedelta(days=40)  # never committed: rolled back below
        session.flush()
        days = [start + dt.timedelta(days=n) for n in (-1, 0, 1, 39, 40, 41)]
        covered = []
        for day in days:
            by_orm = agency_has_active_contract(
                session, agency_id=contract.agency_id, tenant_id=contract.tenant_id, day=day
            )
            by_sql = session.execute(
                text(
                    f"SELECT EXISTS (SELECT 1 FROM {table_sql(AgencyContract)} ct"
                    f" WHERE ct.id = :id AND {active_contract_sql('ct', 'CAST(:day AS date)')})"
                ),
                {"id": contract.id, "day": day},
            ).scalar_one()
            agencies = session.execute(
                text(contracted_agencies_sql(tenant_id=":tenant", day="CAST(:day AS date)")),
                {"tenant": contract.tenant_id, "day": day},
            ).all()
            assert by_orm == by_sql == (contract.agency_id in {row[0] for row in agencies})
            covered.append(by_orm)
        assert covered == [False, True, True, True, False, False]
        session.rollback()
