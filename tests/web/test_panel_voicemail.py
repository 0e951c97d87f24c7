"""Voicemail in the panel (issue 13 item 7): the messages of every mailbox (played in the
browser from the panel's own URL, downloaded, deleted with their file, each deletion
audited), a mailbox's settings from the extension's page (on/off, PIN, e-mail,
language; core's refusals as the form's error); viewers listen but change nothing."""

from __future__ import annotations

import wave

import pytest
from panel_testing import make_app

from core import voicemail
from core.models import AuditEntry, Mailbox, VoicemailMessage, db


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, VOICEMAIL_DIR=str(tmp_path / "vm"))
    yield app
    if not db.is_closed():
        db.close()


@pytest.fixture
def office(app, rows):
    rows.extension("1001", name="Alice")
    rows.extension("1002", name="Bob")
    return app.config["PBX_SETTINGS"]


def leave(settings, number="1001", seconds=3.0, caller="1002", name="Bob", at=1_790_000_000):
    path = voicemail.new_recording_path(number, settings, at)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x10" * int(8000 * seconds))
    return voicemail.add_message(number, path, seconds, settings, caller, name, at), path


def test_messages_listed_played_downloaded_and_deleted(admin_client, office):
    message, path = leave(office, seconds=65.0)
    page = admin_client.get("/voicemail/").get_data(as_text=True)
    assert f'id="message-{message.id}"' in page and 'data-folder="new"' in page
    assert "1:05" in page and "Bob" in page
    assert f'<audio controls preload="none" src="/voicemail/{message.id}/audio">' in page
    played = admin_client.get(f"/voicemail/{message.id}/audio")
    assert played.status_code == 200 and played.mimetype == "audio/wav"
    assert played.data == path.read_bytes()
    assert "attachment" not in played.headers.get("Content-Disposition", "")
    downloaded = admin_client.get(f"/voicemail/{message.id}/audio?download=1")
    assert "attachment" in downloaded.headers["Content-Disposition"]
    assert voicemail.export_name(message) in downloaded.headers["Content-Disposition"]

    only = admin_client.get("/voicemail/?mailbox=1002").get_data(as_text=True)
    assert "No voicemail messages." in only
    assert admin_client.get("/voicemail/?mailbox=1999").status_code == 404

    deleted = admin_client.post(f"/voicemail/{message.id}/delete", follow_redirects=True)
    assert f"Message {message.id} of mailbox 1001 deleted." in deleted.get_data(as_text=True)
    assert VoicemailMessage.select().count() == 0 and not path.exists()
    (entry,) = AuditEntry.select().where(AuditEntry.action == "voicemail.delete")
    assert (entry.actor, entry.target) == ("admin", "1001")
    assert admin_client.get(f"/voicemail/{message.id}/audio").status_code == 404


def test_viewers_listen_but_do_not_delete_or_change(client, auth, office):
    message, _ = leave(office)
    auth.login_viewer()
    page = client.get("/voicemail/").get_data(as_text=True)
    assert "/delete" not in page
    assert client.get(f"/voicemail/{message.id}/audio").status_code == 200
    assert client.post(f"/voicemail/{message.id}/delete").status_code == 403
    assert client.get("/voicemail/mailbox/1001").status_code == 403
    assert VoicemailMessage.select().count() == 1


def test_mailbox_settings_from_the_extension_page(admin_client, office):
    page = admin_client.get("/extensions/1001").get_data(as_text=True)
    assert 'id="voicemail-state"' in page and "/voicemail/mailbox/1001" in page
    form = admin_client.get("/voicemail/mailbox/1001").get_data(as_text=True)
    assert 'name="enabled" type="checkbox" value="y" checked' in form or "checked" in form
    done = admin_client.post("/voicemail/mailbox/1001", data={
        "enabled": "y", "pin": "97531", "email": "alice@office.example", "language": "uz"},
        follow_redirects=True)
    assert "Voicemail settings of 1001 saved." in done.get_data(as_text=True)
    box = voicemail.mailbox_of("1001")
    assert (box.enabled, box.email, box.language) == (True, "alice@office.example", "uz")
    assert voicemail.pin_matches(box, "97531")
    (entry,) = AuditEntry.select().where(AuditEntry.action == "extension.voicemail")
    assert entry.detail == "on, PIN set, e-mail alice@office.example, language uz"
    admin_client.post("/voicemail/mailbox/1001", data={"pin": "", "email": "", "language": ""})
    box = voicemail.mailbox_of("1001")
    assert (box.enabled, box.email) == (False, "")
    assert voicemail.pin_matches(box, "97531")  # an empty PIN keeps the one it has


@pytest.mark.parametrize(("data", "error"), [
    ({"enabled": "y", "pin": "12"}, "A voicemail PIN is 4 to 10 digits."),
    ({"enabled": "y", "email": "not an address"}, "is not an e-mail address"),
])
def test_refusals_are_the_forms_error(admin_client, office, data, error):
    before = list(Mailbox.select().tuples())
    page = admin_client.post("/voicemail/mailbox/1001", data=data).get_data(as_text=True)
    assert error in page.replace("&#39;", "'")
    assert list(Mailbox.select().tuples()) == before


def test_a_mailbox_turned_on_without_pin_shows_the_generated_one_once(admin_client, office):
    Mailbox.delete().execute()
    page = admin_client.post("/voicemail/mailbox/1002", data={"enabled": "y"},
                             follow_redirects=True).get_data(as_text=True)
    assert "Voicemail of 1002 is on. Its PIN, shown once:" in page


def test_deleting_the_extension_deletes_its_recordings(admin_client, office, tmp_path):
    _, path = leave(office)
    admin_client.post("/extensions/1001/delete")
    assert not path.exists() and VoicemailMessage.select().count() == 0


# -- the greeting an admin uploads (issue 13 item 2) ------------------------------------------


def greeting_upload(client, data, filename="hello.wav", number="1001"):
    import io

    return client.post(f"/voicemail/mailbox/{number}/greeting",
                       data={"file": (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")


def test_an_uploaded_greeting_is_converted_played_and_removed(admin_client, office):
    from sipd.media import wav
    from tests.web.test_panel_sounds import tone_wav

    page = admin_client.get("/voicemail/mailbox/1001").get_data(as_text=True)
    assert 'id="greeting-form"' in page and "the standard greeting" in page
    response = greeting_upload(admin_client, tone_wav(seconds=1.0))
    assert response.status_code == 302, response.get_data(as_text=True)
    box = voicemail.mailbox_of("1001")
    assert box.greeting == "1001/greeting.wav"
    path = voicemail.greeting_file(box, office)
    sound = wav.read(path)  # what phones play: 8 kHz mono G.711, not the 44.1 kHz stereo sent
    assert sound.channels == 1 and round(sound.seconds, 1) == 1.0
    assert sorted(p.name for p in path.parent.iterdir()) == ["greeting.wav"]  # no scratch left
    page = admin_client.get("/voicemail/mailbox/1001").get_data(as_text=True)
    assert 'src="/voicemail/mailbox/1001/greeting.wav"' in page
    played = admin_client.get("/voicemail/mailbox/1001/greeting.wav")
    assert played.status_code == 200 and played.data == path.read_bytes()
    assert admin_client.post("/voicemail/mailbox/1001/greeting/delete").status_code == 302
    assert voicemail.mailbox_of("1001").greeting == "" and not path.exists()
    assert admin_client.get("/voicemail/mailbox/1001/greeting.wav").status_code == 404
    assert [(e.action, e.target, e.detail) for e in AuditEntry.select()
            .where(AuditEntry.action == "voicemail.greeting").order_by(AuditEntry.id)] == [
        ("voicemail.greeting", "1001", "uploaded hello.wav"),
        ("voicemail.greeting", "1001", "standard greeting")]


@pytest.mark.parametrize(("data", "filename", "words"), [
    (b"just some text\n" * 20, "notes.txt", "This is not an audio file the PBX can read"),
    (b"", "empty.wav", "The file is empty."),
    (bytes(11 * 1024 * 1024), "long.wav", "The file is larger than 10 MB, the most this form takes."),
])
def test_a_bad_greeting_is_the_forms_error_and_nothing_changes(admin_client, office, data,
                                                               filename, words):
    response = greeting_upload(admin_client, data, filename)
    assert response.status_code == (413 if filename == "long.wav" else 400)
    page = response.get_data(as_text=True)
    assert f'<p class="error">{words}' in page and 'id="greeting-form"' in page
    assert voicemail.mailbox_of("1001").greeting == ""
    assert not (office.voicemail_dir and any((voicemail.storage(office) / "1001").glob("*.wav")))
    assert AuditEntry.select().where(AuditEntry.action == "voicemail.greeting").count() == 0


def test_viewers_cannot_change_a_greeting(client, auth, office):
    from tests.web.test_panel_sounds import tone_wav

    auth.login_viewer()
    assert greeting_upload(client, tone_wav()).status_code == 403
    assert client.post("/voicemail/mailbox/1001/greeting/delete").status_code == 403
    assert voicemail.mailbox_of("1001").greeting == ""
