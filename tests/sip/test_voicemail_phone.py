"""Voicemail by phone end to end against a real sipd: a message is left with a
known tone, then *97 (one's own mailbox) and *98 (any mailbox: its number, then
its PIN) play it back, and the keys after each message (1 again, 7 delete, 9 save,
# next) change what the database holds. Three wrong PINs end the call with a BYE
from the PBX and ban the caller's address, like wrong SIP passwords would.

sipp does the signalling (caller_app.xml); the phone's audio is `Phone`, a socket
of the test on a 20 ms clock: silence, what the caller says, and keys as RFC 4733
telephone-events. Every prompt is a short upload (PBX_SOUNDS_DIR) of a tone of
its own and every message a tone of its own, so what the caller hears is told
packet by packet with Goertzel and read as a list of names ("vm-password",
"msg1", "vm-instructions", ...)."""

from __future__ import annotations

import math
import queue
import socket
import sqlite3
import struct
import threading
import time
import wave
from pathlib import Path

import pytest

from sipd.media import g711, wav
from tests.sip import callkit as ck

SSRC = 0x0CA11E97
PIN = "246810"
# One tone per prompt (the digits share one), 70 Hz apart: told apart within a
# 20 ms packet, whose Goertzel bin is 50 Hz wide.
PROMPTS = (
    "vm-theperson",
    "vm-isunavail",
    "vm-isonphone",
    "vm-intro",
    "beep",
    "vm-password",
    "vm-incorrect",
    "vm-login",
    "vm-youhave",
    "vm-INBOX",
    "vm-message",
    "vm-messages",
    "vm-nomore",
    "vm-instructions",
    "vm-deleted",
    "vm-saved",
    "vm-goodbye",
    "digit",
    "vm-menu",
    "vm-greeting-menu",
    "vm-rec-greeting",
    "vm-review",
    "vm-tooshort",
    "vm-greeting-saved",
    "vm-greeting-deleted",
)
TONES = {name: 300.0 + 70 * index for index, name in enumerate(PROMPTS)}
# The messages' and greetings' tones, well above every prompt's.
TONES.update({"msg1": 2300.0, "msg2": 2650.0, "msg3": 3000.0, "greet1": 3300.0, "greet2": 3600.0})
EVENT_PT = 101
KEY_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}


def tone(hz: float, seconds: float, level: int = 9000) -> bytes:
    """16-bit linear PCM at 8 kHz."""
    count = int(seconds * 8000)
    return struct.pack(
        f"<{count}h", *(int(level * math.sin(2 * math.pi * hz * n / 8000)) for n in range(count))
    )


def ulaw_tone(hz: float, seconds: float) -> bytes:
    return g711.encode(tone(hz, seconds), g711.PCMU)


# --- the phone's audio --------------------------------------------------------------


def _share(samples, hz: float, energy: float) -> float:
    """The share of `samples`' energy at `hz` (Goertzel; a pure tone: about 1)."""
    coefficient = 2 * math.cos(2 * math.pi * hz / 8000)
    s_prev = s_prev2 = 0.0
    for x in samples:
        s_prev2, s_prev = s_prev, x + coefficient * s_prev - s_prev2
    power = s_prev2**2 + s_prev**2 - coefficient * s_prev * s_prev2
    return 2 * power / len(samples) / energy


def label(payload: bytes, tones: dict[str, float] = TONES) -> str:
    """What one PCMU packet holds: the name of the tone of `tones` it is, or ""
    (silence, noise)."""
    samples = struct.unpack(f"<{len(payload)}h", g711.decode(payload, g711.PCMU))
    energy = sum(s * s for s in samples) / len(samples)
    if energy < 1e5:  # well below the prompts' (9000 peak: 4e7)
        return ""
    shares = {name: _share(samples, hz, energy * len(samples)) for name, hz in tones.items()}
    best = max(shares, key=shares.get)
    return best if shares[best] > 0.5 else ""


class Phone:
    """The caller's RTP: one thread sends a packet every 20 ms (what `say` queued,
    the keys `press` queued as RFC 4733 events, else silence), another reads what
    the PBX plays and names each packet (`label`, by `tones`). Started without a
    target, it sends to where the PBX's packets come from, once one has (a
    called phone, which learns the PBX's address from its first packet)."""

    def __init__(self, tones: dict[str, float] = TONES, ssrc: int = SSRC):
        self.tones, self.ssrc = tones, ssrc
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ck.LOOPBACK, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.target = None
        self.outgoing: queue.Queue = queue.Queue()
        self.labels: list[str] = []
        self.mark = 0  # how many names were heard before the last key
        self.stopped = threading.Event()
        self.threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._receive, daemon=True),
        ]

    def start(self, target=None) -> Phone:
        self.target = target
        for thread in self.threads:
            thread.start()
        return self

    def close(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(timeout=2)
        self.sock.close()

    # what the caller does

    def say(self, linear: bytes) -> None:
        encoded = g711.encode(linear, g711.PCMU)
        for n in range(0, len(encoded), 160):
            self.outgoing.put(("audio", encoded[n : n + 160].ljust(160, b"\xff")))

    def press(self, keys: str) -> None:
        """Each key an event of 5 packets (§2.5.1.4: the end three times), 60 ms apart.
        What is heard from here on is what `wait_heard` looks at."""
        self.mark = len(self.heard())
        for key in keys:
            code = KEY_CODES[key]
            for index, (flags, duration) in enumerate(
                ((10, 160), (10, 320), (0x8A, 640), (0x8A, 640), (0x8A, 640))
            ):
                self.outgoing.put(("event", struct.pack("!BBH", code, flags, duration), index == 0))
            for _ in range(3):
                self.outgoing.put(("audio", b"\xff" * 160))

    def _send(self) -> None:
        try:
            ck.send_paced(self.sock, lambda: self.target, self._packets(), self.ssrc,
                          until=self.stopped.is_set)
        except OSError:  # the socket closed under it
            return

    def _packets(self):
        """What was queued, else silence; taken one a packet, so `seq` is the packet's."""
        seq, event_start = 0, 0
        while True:
            try:
                item = self.outgoing.get_nowait()
            except queue.Empty:
                item = ("audio", b"\xff" * 160)
            if item[0] == "event":
                if item[2]:
                    event_start = seq * 160  # every packet of an event: its start (§2.3.1)
                yield item[1], EVENT_PT, event_start
            else:
                yield item[1], 0, seq * 160
            seq += 1

    def _receive(self) -> None:
        while not self.stopped.is_set():
            try:
                packet, source = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.target is None:
                self.target = source
            if len(packet) > 12 and packet[1] & 0x7F == 0:
                self.labels.append(label(packet[12:], self.tones))

    # what the caller heard

    def heard(self) -> list[str]:
        """The names heard, in order, each once per stretch of at least 3 packets
        (a packet across two prompts is neither)."""
        found: list[str] = []
        run_label, run = "", 0
        for name in [*self.labels, ""]:
            if name == run_label:
                run += 1
                continue
            if run_label and run >= 3 and (not found or found[-1] != run_label):
                found.append(run_label)
            run_label, run = name, 1
        return found

    def wait_heard(self, *names: str, timeout: float = 15, server=None) -> list[str]:
        """Until the names heard since the last key end with `names`; all heard so far."""
        wanted = list(names)
        if not ck.wait_for(
            lambda: self.heard()[self.mark :][-len(wanted) :] == wanted,
            timeout=timeout,
            interval=0.05,
        ):
            log = server.log()[-3000:] if server is not None else ""
            raise AssertionError(f"never heard {wanted}: heard {self.heard()}\n{log}")
        return self.heard()


# --- the PBX -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


def sounds_dir(tmp_path) -> Path:
    directory = tmp_path / "sounds"
    for name, hz in TONES.items():
        if name.startswith(("msg", "greet")):
            continue
        names = [f"digits/{d}" for d in range(10)] if name == "digit" else [name]
        for each in names:
            path = directory / "en" / f"{each}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            wav.write(path, ulaw_tone(hz, 0.3), "ulaw")
    return directory


def make_server(tmp_path, **env) -> ck.SipdServer:
    server = ck.SipdServer(
        tmp_path,
        voicemail=("1001", "1002"),
        PBX_SOUNDS_DIR=str(sounds_dir(tmp_path)),
        PBX_PROMPTS_DIR=str(tmp_path / "prompts"),
        PBX_VOICEMAIL_DIR=str(tmp_path / "vm"),
        **env,
    )
    with database(server):
        from core import voicemail

        voicemail.set_voicemail("1002", True, pin=PIN)
    return server


@pytest.fixture
def server(tmp_path):
    server = make_server(tmp_path)
    server.start()
    yield server
    server.stop()


class database:
    """The server's database bound in this process (as pbxctl would), for a while."""

    def __init__(self, server):
        self.server = server

    def __enter__(self):
        from core.config import load_settings
        from core.database import connect

        self.settings = load_settings(
            {
                "PBX_DB": str(self.server.db_path),
                "PBX_REALM": ck.REALM,
                "PBX_VOICEMAIL_DIR": self.server.env["PBX_VOICEMAIL_DIR"],
            }
        )
        connect(self.settings)
        return self.settings

    def __exit__(self, *exc):
        from core.models import db

        db.close()


def seed(server, number: str, name: str, received: float, seconds: float = 1.5) -> int:
    """A message holding the tone `name` (TONES), as the application keeps one."""
    from core import voicemail

    with database(server) as settings:
        path = voicemail.new_recording_path(number, settings, received)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(tone(TONES[name], seconds))
        return voicemail.add_message(number, path, seconds, settings, "1003", "", received).id


def rows(server) -> dict[int, dict]:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=5) as connection:
        connection.row_factory = sqlite3.Row
        return {
            r["id"]: dict(r)
            for r in connection.execute(
                "SELECT m.*, e.number FROM voicemail_message m JOIN mailbox b ON b.id = m.mailbox_id"
                " JOIN extension e ON e.id = b.extension_id"
            )
        }


@pytest.fixture
def phone():
    phone = Phone()
    yield phone
    phone.close()


def dial(server, caller: str, number: str, phone: Phone) -> ck.Sipp:
    """`caller` calls `number`; the phone's audio starts once the PBX has answered."""
    run = ck.Sipp(
        f"vm-{caller}-{number.strip('*')}",
        "caller_app.xml",
        server.address,
        timeout=90,
        inject=[ck.user_row(caller, ck.PASSWORD, number, str(phone.port))],
    )
    run.start()
    phone.start(ck.sdp_media(ck.wait_answer_sdp(run)))
    return run


def hung_up_by_pbx(run: ck.Sipp, server, timeout: float = 30) -> None:
    """sipp's scenario ends with the PBX's BYE (answered 200)."""
    ck.finish(run, timeout=timeout, server=server)
    assert "BYE" in run.requests(), ck.explain(run, server=server)


def leave_message(server, seconds: float = 2.0) -> None:
    """1001 calls 1002 (not registered): its mailbox takes the call; the caller
    says msg1's tone after the beep and ends the message with #."""
    phone = Phone()
    try:
        run = dial(server, "1001", "1002", phone)
        phone.wait_heard("beep", server=server)
        phone.say(tone(TONES["msg1"], seconds))
        phone.press("#")
        phone.wait_heard("vm-saved", "vm-goodbye", server=server)
        hung_up_by_pbx(run, server)
    finally:
        phone.close()


# --- the tests ------------------------------------------------------------------------


def test_a_message_left_is_heard_with_star_97_and_1_7_9_hash_act_on_it(server, tmp_path):
    leave_message(server)
    (first,) = ck.wait_for(lambda: list(rows(server).values()), timeout=5)
    assert (first["number"], first["caller"], first["folder"]) == ("1002", "1001", "new")
    second = seed(server, "1002", "msg2", time.time() + 1)
    third = seed(server, "1002", "msg3", time.time() + 2)

    phone = Phone()
    try:
        run = dial(server, "1002", "*97", phone)
        phone.wait_heard("vm-password", server=server)
        phone.press(PIN + "#")
        # "You have 3 new messages", the menu; 1: the oldest new one, the one left above.
        phone.wait_heard("vm-youhave", "digit", "vm-INBOX", "vm-messages", "vm-menu")
        phone.press("1")
        phone.wait_heard("msg1", "vm-instructions", server=server)
        assert ck.wait_for(lambda: rows(server)[first["id"]]["folder"] == "old"), rows(server)
        assert rows(server)[second]["folder"] == "new"
        phone.press("1")  # again
        phone.wait_heard("msg1", "vm-instructions", server=server)
        phone.press("9")  # saved: the next one
        phone.wait_heard("vm-saved", "msg2", "vm-instructions", server=server)
        phone.press("#")  # next
        phone.wait_heard("msg3", "vm-instructions", server=server)
        phone.press("7")  # deleted
        phone.wait_heard("vm-deleted", "vm-nomore", "vm-menu", server=server)
        phone.press("#")  # the end
        heard = phone.wait_heard("vm-goodbye", server=server)
        hung_up_by_pbx(run, server)
    finally:
        phone.close()
    assert heard == [
        "vm-password",
        "vm-youhave",
        "digit",
        "vm-INBOX",
        "vm-messages",
        "vm-menu",
        "msg1",
        "vm-instructions",
        "msg1",
        "vm-instructions",
        "vm-saved",
        "msg2",
        "vm-instructions",
        "msg3",
        "vm-instructions",
        "vm-deleted",
        "vm-nomore",
        "vm-menu",
        "vm-goodbye",
    ], "\n".join(heard)
    left = rows(server)
    assert sorted(left) == [first["id"], second], left
    assert left[first["id"]]["folder"] == left[second]["folder"] == "old"
    assert all(left[i]["heard_at"] for i in left), left
    kept = sorted(p.name for p in (tmp_path / "vm" / "1002").iterdir())
    assert kept == sorted(Path(left[i]["path"]).name for i in left), kept
    log = server.log()
    assert "[VM] Mailbox 1002 opened from 127.0.0.1" in log
    assert f"[VM] Message {third} of mailbox 1002 deleted by phone" in log


def test_star_98_asks_for_the_mailbox_then_its_pin(server, phone):
    message = seed(server, "1002", "msg2", time.time())
    run = dial(server, "1001", "*98", phone)
    try:
        phone.wait_heard("vm-login", server=server)
        phone.press("1009#")  # no such mailbox: a wrong try, not told apart from a PIN
        phone.wait_heard("vm-password", server=server)
        phone.press(PIN + "#")
        phone.wait_heard("vm-incorrect", "vm-login", server=server)
        phone.press("1002#")
        phone.wait_heard("vm-password", server=server)
        phone.press(PIN + "#")
        # No key at the menu: the messages.
        phone.wait_heard(
            "vm-youhave",
            "digit",
            "vm-INBOX",
            "vm-message",
            "vm-menu",
            "msg2",
            "vm-instructions",
            server=server,
        )
        phone.press("#")
        phone.wait_heard("vm-nomore", "vm-menu", "vm-goodbye", server=server)
        hung_up_by_pbx(run, server)
    finally:
        run.stop()
    assert rows(server)[message]["folder"] == "old"
    log = server.log()
    assert "[VM] Wrong PIN for mailbox 1009 from 127.0.0.1 (1001), try 1 of 3" in log
    assert "[VM] Mailbox 1002 opened from 127.0.0.1 (1001)" in log


def test_three_wrong_pins_end_the_call_and_ban_the_address(tmp_path, phone):
    # 127.0.0.1 is not trusted here, and three failures make a ban.
    server = make_server(tmp_path, PBX_TRUSTED_NETWORKS="127.0.0.2/32", PBX_BAN_THRESHOLD="3")
    server.start()
    try:
        message = seed(server, "1002", "msg1", time.time())
        run = dial(server, "1002", "*97", phone)
        try:
            for _ in range(3):
                phone.wait_heard("vm-password", server=server)
                phone.press("135790#")
                phone.wait_heard("vm-incorrect", server=server)
            phone.wait_heard("vm-goodbye", server=server)
            hung_up_by_pbx(run, server)
        finally:
            run.stop()
        assert "msg1" not in phone.heard()
        assert rows(server)[message]["folder"] == "new"
        log = server.log()
        assert "[VM] 3 wrong PINs from 127.0.0.1 (1002): call ended" in log
        assert "[SIP] Banned 127.0.0.1" in log, log[-3000:]
        with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as connection:
            bans = connection.execute("SELECT address, failures FROM ban").fetchall()
        assert bans == [("127.0.0.1", 3)], bans
    finally:
        server.stop()


def test_the_greeting_recorded_by_phone_is_what_callers_hear_until_deleted(server, tmp_path):
    phone = Phone()
    try:
        run = dial(server, "1002", "*97", phone)
        phone.wait_heard("vm-password", server=server)
        phone.press(PIN + "#")
        phone.wait_heard("vm-youhave", "digit", "vm-INBOX", "vm-messages", "vm-menu", server=server)
        phone.press("0")
        phone.wait_heard("vm-greeting-menu", server=server)
        phone.press("1")
        phone.wait_heard("vm-rec-greeting", "beep", server=server)
        phone.say(tone(TONES["greet1"], 0.4))  # shorter than a second: not kept
        phone.press("#")
        phone.wait_heard("vm-tooshort", "vm-greeting-menu", server=server)
        phone.press("1")
        phone.wait_heard("vm-rec-greeting", "beep", server=server)
        phone.say(tone(TONES["greet1"], 1.5))
        phone.press("#")
        phone.wait_heard("greet1", "vm-review", server=server)  # heard back
        phone.press("3")  # recorded again
        phone.wait_heard("vm-rec-greeting", "beep", server=server)
        phone.say(tone(TONES["greet2"], 1.5))
        phone.press("#")
        phone.wait_heard("greet2", "vm-review", server=server)
        phone.press("1")  # kept
        phone.wait_heard("vm-greeting-saved", "vm-greeting-menu", server=server)
        phone.press("*")
        phone.wait_heard("vm-menu", server=server)
        phone.press("#")
        phone.wait_heard("vm-goodbye", server=server)
        hung_up_by_pbx(run, server)
    finally:
        phone.close()
    greeting = tmp_path / "vm" / "1002" / "greeting.wav"
    assert greeting.is_file()
    assert sorted(p.name for p in greeting.parent.iterdir()) == ["greeting.wav"]
    log = server.log()
    assert "[VM] Greeting of mailbox 1002 not kept: 0." in log
    assert "[VM] Greeting of mailbox 1002 recorded by phone" in log
    assert caller_hears(server) == "greet2"

    phone = Phone()
    try:
        run = dial(server, "1002", "*97", phone)
        phone.wait_heard("vm-password", server=server)
        phone.press(PIN + "#0")
        phone.wait_heard("vm-greeting-menu", server=server)
        phone.press("3")  # deleted
        phone.wait_heard("vm-greeting-deleted", "vm-greeting-menu", server=server)
        phone.press("2")  # heard: the standard greeting again
        phone.wait_heard(
            "vm-theperson", "digit", "vm-isunavail", "vm-intro", "vm-greeting-menu", server=server
        )
        phone.press("*#")
        phone.wait_heard("vm-goodbye", server=server)
        hung_up_by_pbx(run, server)
    finally:
        phone.close()
    assert not greeting.exists()
    assert "[VM] Greeting of mailbox 1002 deleted by phone" in server.log()
    assert caller_hears(server) == "vm-theperson"


def caller_hears(server) -> str:
    """What 1001 hears first calling 1002's mailbox (then # at the beep: no message)."""
    phone = Phone()
    try:
        run = dial(server, "1001", "1002", phone)
        heard = phone.wait_heard("beep", server=server)
        phone.press("#")
        phone.wait_heard("vm-goodbye", server=server)
        hung_up_by_pbx(run, server)
    finally:
        phone.close()
    return heard[0]
