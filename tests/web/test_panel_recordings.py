"""Call recordings in the panel (issue 13 item 5): a recorded call in the history and on
its own page carries a player and a download, served by the panel from the file its
row names under PBX_RECORDING_DIR (never a path from the URL); a call still being
recorded, a file gone, and a row naming a path outside the directory each say so
instead of a player. The extension page turns recording on and off, audited, as
`pbxctl ext record` does."""

from __future__ import annotations

import os
import wave

import pytest
from panel_testing import make_app

from core.models import AuditEntry, Extension, db


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, RECORDING_DIR=str(tmp_path / "recordings"))
    yield app
    if not db.is_closed():
        db.close()


def write_recording(app, name: str, seconds: float = 1.0) -> bytes:
    """A stereo WAV as the media process's tap writes it (caller left, other right)."""
    path = os.path.join(app.config["PBX_SETTINGS"].recording_dir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with wave.open(path, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x10\x00\x20" * int(8000 * seconds))
    with open(path, "rb") as f:
        return f.read()


def test_a_recorded_call_plays_and_downloads_from_the_history(app, admin_client, rows):
    call = rows.call("1001", "1002")
    call.recording = f"2026/12/03/{call.id}-1001-1002.wav"
    call.save()
    data = write_recording(app, call.recording)
    other = rows.call("1003", "1004")

    history = admin_client.get("/calls/").get_data(as_text=True)
    row = history[history.index(f'id="call-{call.id}"'):]
    row = row[:row.index("</tr>")]
    assert f'<audio controls preload="none" src="/calls/{call.id}/recording">' in row
    assert f'href="/calls/{call.id}/recording?download=1"' in row
    plain = history[history.index(f'id="call-{other.id}"'):]
    assert "<audio" not in plain[:plain.index("</tr>")]

    page = admin_client.get(f"/calls/{call.id}").get_data(as_text=True)
    assert f'src="/calls/{call.id}/recording"' in page
    assert 'data-recording="ready"' in page
    assert "not recorded" in admin_client.get(f"/calls/{other.id}").get_data(as_text=True)

    played = admin_client.get(f"/calls/{call.id}/recording")
    assert played.status_code == 200 and played.mimetype == "audio/wav"
    assert played.data == data
    assert "attachment" not in played.headers.get("Content-Disposition", "")
    # The browser's player asks for ranges.
    part = admin_client.get(f"/calls/{call.id}/recording", headers={"Range": "bytes=0-43"})
    assert part.status_code == 206 and part.data == data[:44]
    downloaded = admin_client.get(f"/calls/{call.id}/recording?download=1")
    assert downloaded.headers["Content-Disposition"] == (
        f"attachment; filename=call-{call.id}-1001-1002.wav")
    assert downloaded.data == data


def test_no_recording_a_live_one_and_a_missing_file_each_say_so(app, admin_client, rows):
    plain = rows.call()
    response = admin_client.get(f"/calls/{plain.id}/recording")
    assert response.status_code == 404
    assert "This call was not recorded." in response.get_data(as_text=True)

    live = rows.call("1001", "1002", live=True, recording="2026/12/03/9-1001-1002.wav")
    assert 'data-recording="live"' in admin_client.get(f"/calls/{live.id}").get_data(
        as_text=True)
    response = admin_client.get(f"/calls/{live.id}/recording")
    assert response.status_code == 404
    assert "still being recorded" in response.get_data(as_text=True)

    gone = rows.call("1001", "1002", recording="2026/01/01/3-1001-1002.wav")
    page = admin_client.get(f"/calls/{gone.id}").get_data(as_text=True)
    assert 'data-recording="missing"' in page and "recording missing" in page
    assert "<audio" not in page
    response = admin_client.get(f"/calls/{gone.id}/recording")
    assert response.status_code == 404
    assert "missing from the server" in response.get_data(as_text=True)
    assert 'data-recording="missing"' in admin_client.get("/calls/").get_data(as_text=True)


@pytest.mark.parametrize("name", ["../pbx.db", "/etc/passwd", "2026/../../pbx.db", "."])
def test_a_row_naming_a_file_outside_the_directory_serves_nothing(app, admin_client, rows,
                                                                   name):
    call = rows.call(recording=name)
    response = admin_client.get(f"/calls/{call.id}/recording")
    assert response.status_code == 404
    assert b"SQLite" not in response.data and b"root:" not in response.data


def test_recordings_need_a_login_and_viewers_may_listen(app, client, auth, rows):
    call = rows.call()
    call.recording = f"{call.id}-1002-1003.wav"
    call.save()
    write_recording(app, call.recording)
    response = client.get(f"/calls/{call.id}/recording")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    auth.login_viewer()
    assert client.get(f"/calls/{call.id}/recording").status_code == 200
    assert client.get("/calls/99999/recording").status_code == 404


def test_recording_is_switched_on_and_off_on_the_extension_page(app, admin_client, rows):
    rows.extension("1002")
    page = admin_client.get("/extensions/1002").get_data(as_text=True)
    state = page[page.index('id="record-state"'):]
    assert state.startswith('id="record-state">off')
    assert 'action="/extensions/1002/record-on"' in page

    response = admin_client.post("/extensions/1002/record-on", follow_redirects=True)
    text = response.get_data(as_text=True)
    assert "The calls of 1002 are recorded from the next one; each recording is kept 90 days." in text
    assert Extension.by_number("1002").record_calls
    assert 'action="/extensions/1002/record-off"' in text

    admin_client.post("/extensions/1002/record-off")
    assert not Extension.by_number("1002").record_calls
    assert [(e.action, e.target, e.detail) for e in AuditEntry.select()
            .where(AuditEntry.action == "extension.record").order_by(AuditEntry.id)] == [
        ("extension.record", "1002", "on"), ("extension.record", "1002", "off")]
    assert admin_client.post("/extensions/1999/record-on").status_code == 404


def test_a_viewer_sees_the_state_but_no_switch(app, client, auth, rows):
    rows.extension("1002")
    auth.login_viewer()
    page = client.get("/extensions/1002").get_data(as_text=True)
    assert 'id="record-state"' in page and "record-on" not in page
    assert client.post("/extensions/1002/record-on").status_code == 403
    assert not Extension.by_number("1002").record_calls
