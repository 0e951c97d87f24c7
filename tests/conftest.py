"""Shared fixtures: a temporary database bound to the models."""

import pytest

from core.config import load_settings
from core.database import connect


@pytest.fixture
def settings(tmp_path):
    return load_settings({"PBX_DB": str(tmp_path / "pbx.db"), "PBX_REALM": "pbx.test"})


@pytest.fixture
def database(settings):
    db = connect(settings)
    yield db
    db.close()
