"""The test world itself behaves: logins, tokens and tenant-scoped reads work."""

from tests.support import bearer, login


def test_tenant_admin_reads_own_cases(world) -> None:
    caller = login(world.app, world.a.admin_email)
    response = caller.get("/api/v1/cases")
    assert response.status_code == 200
    assert [c["account"]["external_id"] for c in response.json] == ["L-3", "L-2", "L-1"]
    assert "X-Pagination" in response.headers


def test_client_reads_own_case(world) -> None:
    caller = bearer(world.app, world.a.client_id, world.a.client_secret)
    response = caller.get(f"/api/v1/cases/{world.a.case_ids[0]}")
    assert response.status_code == 200, response.json
    assert response.json["debtor"]["full_name"] == "Debtor alpha 1"
    assert response.json["debtor"]["national_id"] == "1101********002X"
