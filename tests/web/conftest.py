"""Fixtures for the panel: an app on a fresh SQLite file per test, a client, an auth helper."""

from __future__ import annotations

import pytest
from panel_testing import ADMIN, VIEWER, Rows, make_app

from core.models import db


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    if not db.is_closed():
        db.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, username=ADMIN[0], password=ADMIN[1], next_url=""):
        return self._client.post(
            "/login", data={"username": username, "password": password, "next": next_url}
        )

    def login_viewer(self):
        return self.login(*VIEWER)

    def logout(self):
        return self._client.post("/logout")


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def admin_client(client, auth):
    auth.login()
    return client


@pytest.fixture
def rows(app):
    return Rows()
