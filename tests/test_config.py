"""Reading settings from the environment: what production demands, what development fills in."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from recova.platform.kernel.config import ConfigError, Settings, new_secrets, normalise_database_url

PRODUCTION_VARIABLES = ("SECRET_KEY", "RECOVA_DATA_KEY", "DATABASE_URL", "REDIS_URL")
INTEGER_VARIABLES = (
    "RECOVA_ACCESS_TOKEN_TTL",
    "RECOVA_LOGIN_MAX_FAILURES",
    "RECOVA_LOGIN_LOCKOUT_SECONDS",
    "RECOVA_DB_POOL_SIZE",
    "RECOVA_DB_MAX_OVERFLOW",
)


def _production(home: Path) -> dict[str, str]:
    keys = new_secrets()
    return {
        "RECOVA_ENV": "production",
        "RECOVA_HOME": str(home),
        "SECRET_KEY": keys["SECRET_KEY"],
        "RECOVA_DATA_KEY": keys["RECOVA_DATA_KEY"],
        "DATABASE_URL": "postgresql://recova@db.internal:5432/recova",
        "REDIS_URL": "redis://cache.internal:6379/0",
    }


def test_production_with_everything_set_reads_it_and_writes_nothing(tmp_path: Path) -> None:
    env = _production(tmp_path)
    settings = Settings.from_env(env)
    assert settings.production
    assert settings.secret_key == env["SECRET_KEY"]
    assert settings.data_key == base64.urlsafe_b64decode(env["RECOVA_DATA_KEY"])
    assert settings.database_url == "postgresql+psycopg://recova@db.internal:5432/recova"
    assert settings.redis_url == env["REDIS_URL"]
    assert list(tmp_path.iterdir()) == []  # production never generates or stores secrets


def test_production_with_nothing_set_names_every_missing_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"RECOVA_ENV": "production", "RECOVA_HOME": str(tmp_path)})
    for name in PRODUCTION_VARIABLES:
        assert name in str(error.value)
    assert "recova keys" in str(error.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", PRODUCTION_VARIABLES)
def test_production_names_the_one_missing_variable(tmp_path: Path, missing: str) -> None:
    for blank in (False, True):  # unset and set-but-empty are both missing
        env = _production(tmp_path)
        if blank:
            env[missing] = ""
        else:
            del env[missing]
        with pytest.raises(ConfigError) as error:
            Settings.from_env(env)
        message = str(error.value)
        named = [name for name in PRODUCTION_VARIABLES if name in message.replace(missing, "")]
        assert missing in message
        assert named == [], f"{message!r} names variables that are set"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("environment", ["development", "test"])
def test_secrets_are_generated_once_and_kept_in_home(tmp_path: Path, environment: str) -> None:
    env = {"RECOVA_ENV": environment, "RECOVA_HOME": str(tmp_path / "home")}
    first = Settings.from_env(env)
    stored = tmp_path / "home" / "secrets.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    values = json.loads(stored.read_text())
    assert values["SECRET_KEY"] == first.secret_key
    assert len(first.secret_key) >= 32
    assert base64.urlsafe_b64decode(values["RECOVA_DATA_KEY"]) == first.data_key
    assert len(first.data_key) == 32
    assert first.database_url is None  # embedded services are started later, on demand
    assert first.redis_url is None

    second = Settings.from_env(env)
    assert (second.secret_key, second.data_key) == (first.secret_key, first.data_key)
    assert json.loads(stored.read_text()) == values
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600


def test_explicit_secrets_win_over_stored_ones(tmp_path: Path) -> None:
    Settings.from_env({"RECOVA_HOME": str(tmp_path)})
    keys = new_secrets()
    settings = Settings.from_env(
        {
            "RECOVA_HOME": str(tmp_path),
            "SECRET_KEY": keys["SECRET_KEY"],
            "RECOVA_DATA_KEY": keys["RECOVA_DATA_KEY"],
        }
    )
    assert settings.secret_key == keys["SECRET_KEY"]
    assert settings.data_key == base64.urlsafe_b64decode(keys["RECOVA_DATA_KEY"])


def test_development_with_explicit_secrets_writes_no_file(tmp_path: Path) -> None:
    keys = new_secrets()
    Settings.from_env({"RECOVA_HOME": str(tmp_path / "home"), **keys})
    assert not (tmp_path / "home" / "secrets.json").exists()


def test_processes_starting_together_agree_on_the_generated_secrets(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import base64, json
        from recova.platform.kernel.config import Settings
        s = Settings.from_env()
        print(json.dumps([s.secret_key, base64.urlsafe_b64encode(s.data_key).decode()]))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "RECOVA_DATA_KEY")}
    env.update(RECOVA_HOME=str(tmp_path / "shared"), RECOVA_ENV="development")

    def run(_: int) -> str:
        return subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout

    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(run, range(4)))
    assert len(set(outputs)) == 1
    stored = json.loads((tmp_path / "shared" / "secrets.json").read_text())
    assert json.loads(outputs[0]) == [stored["SECRET_KEY"], stored["RECOVA_DATA_KEY"]]


@pytest.mark.parametrize(
    "raw",
    [
        "abc",  # not base64 at all (bad padding)
        base64.urlsafe_b64encode(b"k" * 16).decode(),  # AES-128 sized
        base64.urlsafe_b64encode(b"k" * 33).decode(),
    ],
)
def test_an_invalid_data_key_is_a_clear_error(tmp_path: Path, raw: str) -> None:
    for environment in ("development", "production"):
        env = _production(tmp_path)
        env.update(RECOVA_ENV=environment, RECOVA_DATA_KEY=raw)
        with pytest.raises(ConfigError, match="RECOVA_DATA_KEY") as error:
            Settings.from_env(env)
        assert "32 bytes" in str(error.value)


@pytest.mark.parametrize("name", INTEGER_VARIABLES)
def test_a_non_integer_setting_is_a_clear_error(tmp_path: Path, name: str) -> None:
    for raw in ("ten", "1.5", "5s"):
        with pytest.raises(ConfigError) as error:
            Settings.from_env({"RECOVA_HOME": str(tmp_path), name: raw})
        assert name in str(error.value)
        assert repr(raw) in str(error.value)
        assert "integer" in str(error.value)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("RECOVA_ACCESS_TOKEN_TTL", "0"),
        ("RECOVA_ACCESS_TOKEN_TTL", "-5"),
        ("RECOVA_LOGIN_MAX_FAILURES", "0"),
        ("RECOVA_LOGIN_LOCKOUT_SECONDS", "0"),
        ("RECOVA_DB_POOL_SIZE", "0"),
        ("RECOVA_DB_MAX_OVERFLOW", "-1"),
    ],
)
def test_an_out_of_range_setting_is_a_clear_error(tmp_path: Path, name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be at least"):
        Settings.from_env({"RECOVA_HOME": str(tmp_path), name: raw})


@pytest.mark.parametrize("raw", ["LOUD", "trace", "5"])
def test_an_unknown_log_level_is_a_clear_error(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="RECOVA_LOG_LEVEL"):
        Settings.from_env({"RECOVA_HOME": str(tmp_path), "RECOVA_LOG_LEVEL": raw})


def test_integer_settings_are_read(tmp_path: Path) -> None:
    values = {name: str(index + 7) for index, name in enumerate(INTEGER_VARIABLES)}
    settings = Settings.from_env({"RECOVA_HOME": str(tmp_path), **values})
    assert (
        settings.access_token_ttl,
        settings.login_max_failures,
        settings.login_lockout_seconds,
        settings.db_pool_size,
        settings.db_max_overflow,
    ) == (7, 8, 9, 10, 11)


@pytest.mark.parametrize("environment", ["prod", "Production", "staging", ""])
def test_an_unknown_environment_is_an_error(tmp_path: Path, environment: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"RECOVA_ENV": environment, "RECOVA_HOME": str(tmp_path)})
    message = str(error.value)
    assert "RECOVA_ENV" in message
    for known in ("development", "test", "production"):
        assert known in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgres://u@/d?host=/run/pg", "postgresql+psycopg://u@/d?host=/run/pg"),
    ],
)
def test_database_urls_use_the_psycopg_driver(tmp_path: Path, url: str, expected: str) -> None:
    assert normalise_database_url(url) == expected
    settings = Settings.from_env({"RECOVA_HOME": str(tmp_path), "DATABASE_URL": url})
    assert settings.database_url == expected


def test_empty_service_urls_mean_embedded(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"RECOVA_HOME": str(tmp_path), "DATABASE_URL": "", "REDIS_URL": ""}
    )
    assert (settings.database_url, settings.redis_url) == (None, None)


IMPORT_EVERYTHING = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import recova

    failures = []
    names = []
    for info in pkgutil.walk_packages(recova.__path__, "recova.", onerror=failures.append):
        importlib.import_module(info.name)
        names.append(info.name)
    assert not failures, failures
    print("\\n".join(names))
    """
)


def test_importing_every_module_connects_to_nothing(tmp_path: Path) -> None:
    """Import all of ``recova`` with service URLs pointing at sockets that count visitors."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as postgres,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as redis,
    ):
        for listener in (postgres, redis):
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            listener.setblocking(False)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("RECOVA_") and key not in ("DATABASE_URL", "REDIS_URL")
        }
        env.update(
            RECOVA_HOME=str(tmp_path / "home"),
            DATABASE_URL=f"postgresql://nobody@127.0.0.1:{postgres.getsockname()[1]}/none",
            REDIS_URL=f"redis://127.0.0.1:{redis.getsockname()[1]}/0",
        )
        result = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-W", "error", "-c", IMPORT_EVERYTHING],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        for listener in (postgres, redis):
            with pytest.raises(BlockingIOError):
                listener.accept()  # nobody ever connected
    imported = result.stdout.split()
    assert "recova.platform.entry.app" in imported
    assert "recova.platform.entry.cli" in imported
    assert "recova.platform.cases.jobs" in imported
    assert len(imported) > 20
    # No embedded server was started and no secret was generated either.
    assert not (tmp_path / "home").exists()


def test_importing_every_module_survives_an_unreachable_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOVA_")}
    env.update(
        RECOVA_HOME=str(tmp_path / "home"),
        DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/x",
        REDIS_URL="redis://127.0.0.1:1/0",
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-W", "error", "-c", IMPORT_EVERYTHING],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "home").exists()
