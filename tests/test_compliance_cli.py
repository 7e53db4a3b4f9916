"""``recova compliance``: show the rules in force, tighten them, refuse loosening, simulate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recova.platform.audit import events
from tests.compliance_support import local, make_lender
from tests.support import recova


def test_show_set_and_simulate(
    app: Any, cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    lender = make_lender(app, "CN")
    # The debtor's own zone: the command's process never needs to decrypt a phone.
    debt = lender.debt(timezone="Asia/Shanghai")
    env = {**cli_env, "DATABASE_URL": database_url}

    shown = recova(env, "compliance", "show", lender.slug)
    assert shown.exit_code == 0, shown.output
    assert "pack CN-2026" in shown.output
    assert "max_connected_calls_per_day" in shown.output

    loose = recova(env, "compliance", "set", lender.slug, "window_start=07:00")
    assert loose.exit_code == 1
    assert "refused" in loose.output
    assert "window_start" in loose.output

    tight = recova(env, "compliance", "set", lender.slug, "max_connected_calls_per_day=1")
    assert tight.exit_code == 0, tight.output
    assert "max_connected_calls_per_day                1  (pack: 3)" in tight.output
    with lender.scope() as session:
        changed = events(session, action="config.changed")
        assert [e.actor for e in changed] == ["cli:compliance"]

    schedule = [
        {
            "case_id": debt.case_id,
            "contact_id": debt.phones[0],
            "channel": "call_out",
            "at": local("Asia/Shanghai", 2031, 5, 5, hour).isoformat(),
        }
        for hour in (9, 10)
    ]
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(schedule))
    simulated = recova(env, "compliance", "simulate", lender.slug, str(path))
    assert simulated.exit_code == 0, simulated.output
    lines = simulated.output.strip().splitlines()
    assert lines[0].endswith("allowed")
    assert "BLOCKED cn.connected_calls_per_day (next 2031-05-06 00:00Z)" in lines[1]
    assert lender.attempts(debt) == []
