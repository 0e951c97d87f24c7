"""Settings read from the environment (core/config.py)."""

import pytest

from core.config import ConfigError, load_settings, parse_workers


@pytest.mark.parametrize(
    ("raw", "cpus", "workers"),
    [("auto", 1, 0), ("auto", 2, 1), ("", 4, 3), ("auto", 64, 3), ("0", 8, 0), ("5", 1, 5)],
)
def test_sip_workers_setting(raw, cpus, workers):
    assert parse_workers(raw, cpus) == workers


@pytest.mark.parametrize("raw", ["-1", "17", "two", "1.5"])
def test_sip_workers_setting_refuses_nonsense(raw):
    with pytest.raises(ConfigError, match="PBX_SIP_WORKERS"):
        parse_workers(raw, 2)


def test_sip_workers_default_is_auto():
    settings = load_settings({"PBX_DB": "/tmp/unused.db"})
    assert settings.sip_workers == parse_workers("auto")
