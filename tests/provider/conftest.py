"""Fixtures of the provider tests: Kamailio as the phone company (tests/provider/kamailio.py)."""

import pytest

from tests.provider.kamailio import Carrier


@pytest.fixture
def carrier(tmp_path):
    """A started carrier (MD5 digest); stopped after the test."""
    server = Carrier(tmp_path / "carrier").start()
    yield server
    server.stop()


@pytest.fixture
def make_carrier(tmp_path):
    """make_carrier(**options) -> a started Carrier with other options (algorithm,
    max_expires ...); each stopped after the test."""
    started = []

    def make(**options):
        server = Carrier(tmp_path / f"carrier{len(started)}", **options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
