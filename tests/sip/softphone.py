"""Real softphones for the audio tests: baresip 1.0 (Debian) with a WAV tone as
its microphone and a recorder of what it hears, tone detection in plain
Python, and a NAT router made of network namespaces.

baresip here: aufile plays a WAV file as the audio source (8 kHz mono S16LE),
sndfile writes what the phone sends and receives to dump-*-enc.wav and
dump-*-dec.wav in the phone's directory (the received audio, decoded, is the
-dec file), aubridge is a silent player (no sound card in CI), ctrl_tcp is
the remote control (dial, hangup, events) on a loopback port, and calls to a
phone with answermode=auto are answered at once.

Networks: 127.0.0.1, and 10.77.1.0/24 and 10.77.2.0/24 inside namespaces
and a veth made by NatLab, never routed anywhere else.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import time
import wave
from pathlib import Path

from tests.sip.callkit import workdir
from tests.support import require_tool

RATE = 8000


# --- sound ---------------------------------------------------------------------------------

def write_tone(path: Path, frequency: float, seconds: float, amplitude: float = 0.4) -> Path:
    """A mono 16-bit 8 kHz WAV file holding one sine tone."""
    frames = bytearray()
    for n in range(int(seconds * RATE)):
        value = int(amplitude * 32767 * math.sin(2 * math.pi * frequency * n / RATE))
        frames += struct.pack("<h", value)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(frames))
    return path


def read_samples(path: Path) -> tuple[list[int], int]:
    """(16-bit samples of the first channel, sample rate) of a WAV file."""
    with wave.open(str(path), "rb") as source:
        channels, width, rate = source.getnchannels(), source.getsampwidth(), source.getframerate()
        data = source.readframes(source.getnframes())
    if width != 2:
        raise AssertionError(f"{path}: {8 * width}-bit samples, expected 16")
    samples = list(struct.unpack(f"<{len(data) // 2}h", data))
    return samples[::channels], rate


def goertzel_power(samples: list[int], rate: int, frequency: float) -> float:
    """The power of `frequency` in `samples` (Goertzel), normalised so that a
    full-scale sine gives about 0.25 and silence 0."""
    if not samples:
        return 0.0
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    s_prev = s_prev2 = 0.0
    for x in samples:
        s = x / 32768 + coefficient * s_prev - s_prev2
        s_prev2, s_prev = s_prev, s
    power = s_prev2 ** 2 + s_prev ** 2 - coefficient * s_prev * s_prev2
    return power / (len(samples) ** 2)



def stereo_tones(path: Path, left_hz: float, right_hz: float) -> None:
    """A call recording (sipd/recording.py: stereo, the caller left): a second from the
    middle of it holds `left_hz` on the left channel and `right_hz` on the right, each
    twenty times stronger than the other's tone."""
    from sipd.media import wav

    sound = wav.read(path)
    assert sound.channels == 2 and sound.format == "pcm16", (sound.channels, sound.format)
    frames = struct.unpack(f"<{len(sound.data) // 2}h", sound.data)
    middle = len(frames) // 4
    left = list(frames[0::2][middle - 4000:middle + 4000])
    right = list(frames[1::2][middle - 4000:middle + 4000])
    assert goertzel_power(left, 8000, left_hz) > 20 * goertzel_power(left, 8000, right_hz)
    assert goertzel_power(right, 8000, right_hz) > 20 * goertzel_power(right, 8000, left_hz)

def mean_square(samples: list[int]) -> float:
    return sum((x / 32768) ** 2 for x in samples) / len(samples) if samples else 0.0


def tone_report(path: Path, frequencies=(440.0, 1000.0), skip_s: float = 0.5) -> dict:
    """For a recording: its length, its energy, and for each frequency the
    share of the energy it holds (a pure tone: about 1; absent: about 0),
    over the part after `skip_s` that holds sound."""
    samples, rate = read_samples(path)
    samples = samples[int(skip_s * rate):]
    # leave out the silence before the audio started flowing
    block = rate // 50
    loud = [i for i in range(0, len(samples) - block, block)
            if mean_square(samples[i:i + block]) > 1e-5]
    if loud:
        samples = samples[loud[0]:loud[-1] + block]
    energy = mean_square(samples)
    report = {"seconds": round(len(samples) / rate, 2), "energy": energy}
    for frequency in frequencies:
        # a sine of amplitude A has mean square A^2/2 and Goertzel power A^2/4
        share = 2 * goertzel_power(samples, rate, frequency) / energy if energy else 0.0
        report[frequency] = round(share, 3)
    return report


def block_tone_report(path: Path, frequencies=(440.0, 1000.0), block_s: float = 0.2,
                      skip_s: float = 0.5) -> dict:
    """tone_report, made over blocks of `block_s` seconds: for each frequency the
    median of its share over the blocks that hold sound, and "seconds" of them.

    One Goertzel over a whole recording is a filter a fraction of a hertz wide:
    a single jump in the tone's phase (a jitter buffer dropping or adding a few
    samples, which linphone's adaptive buffer does) cancels much of it. Per block
    a jump costs one block, and the median ignores it.
    """
    samples, rate = read_samples(path)
    samples = samples[int(skip_s * rate):]
    block = max(1, int(block_s * rate))
    loud = [samples[i:i + block] for i in range(0, len(samples) - block + 1, block)
            if mean_square(samples[i:i + block]) > 1e-5]
    report: dict = {"seconds": round(len(loud) * block / rate, 2)}
    for frequency in frequencies:
        shares = sorted(2 * goertzel_power(b, rate, frequency) / mean_square(b) for b in loud)
        report[frequency] = round(shares[len(shares) // 2], 3) if shares else 0.0
    return report


# --- baresip -------------------------------------------------------------------------------

class Baresip:
    """One baresip with its own config directory.

    number/password: the extension it registers as, at registrar "host:port".
    listen: its own SIP address (host:port). ctrl_port: its ctrl_tcp port on
    ctrl_host (None: no remote control). netns: run it inside that namespace.
    """

    def __init__(self, name: str, number: str, password: str, registrar: str, listen: str,
                 tone_hz: float, *, ctrl_host: str = "127.0.0.1", ctrl_port: int | None = None,
                 netns: str | None = None, auto_answer: bool = True, quit_after: int = 90,
                 modules: tuple[str, ...] = ()):
        self.name = name
        self.number = number
        self.registrar = registrar
        self.netns = netns
        self.dir = workdir(f"baresip-{name}-")
        self.tone = write_tone(self.dir / "tone.wav", tone_hz, 30.0)
        self.ctrl = (ctrl_host, ctrl_port) if ctrl_port else None
        self.quit_after = quit_after
        extra = modules  # e.g. ("mwi.so",): it SUBSCRIBEs to message-summary
        modules = ["g711.so", "aufile.so", "aubridge.so", "sndfile.so", *extra]
        if ctrl_port:
            modules.append("ctrl_tcp.so")
        config = [
            "poll_method epoll",
            f"sip_listen {listen}",
            "call_local_timeout 120",
            "call_max_calls 4",
            # the microphone: the tone file; the speaker: nowhere (no sound card),
            # what is heard is recorded by sndfile before it reaches the player
            f"audio_source aufile,{self.tone}",
            "audio_player aubridge,speaker-" + name,
            "audio_alert aubridge,alert-" + name,
            "audio_level no",
            "ausrc_format s16",
            "auplay_format s16",
            "auenc_format s16",
            "audec_format s16",
            "audio_buffer 20-160",
            "rtcp_mux no",
            "jitter_buffer_delay 5-10",
            "rtp_stats no",
            "module_path /usr/lib/baresip/modules",
            *[f"module {m}" for m in modules],
            "module_tmp account.so",
            "module_app menu.so",
            f"snd_path {self.dir}",
        ]
        if ctrl_port:
            config.append(f"ctrl_tcp_listen {ctrl_host}:{ctrl_port}")
        (self.dir / "config").write_text("\n".join(config) + "\n")
        params = [f"auth_pass={password}", "audio_codecs=PCMU", "regint=300",
                  "answermode=" + ("auto" if auto_answer else "manual")]
        (self.dir / "accounts").write_text(
            f"<sip:{number}@{registrar};transport=udp>;" + ";".join(params) + "\n")
        (self.dir / "contacts").write_text("")
        self.process: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self.events: list[dict] = []

    def start(self) -> Baresip:
        # -s: the SIP trace goes to its log, for the test and for a reader of a failure
        command = [require_tool("baresip"), "-s", "-f", str(self.dir),
                   "-t", str(self.quit_after)]
        if self.netns:
            command = [require_tool("ip"), "netns", "exec", self.netns, *command]
        self._log = open(self.dir / "baresip.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.dir)
        if self.ctrl:
            deadline = time.monotonic() + 10
            while True:
                try:
                    self._sock = socket.create_connection(self.ctrl, timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise AssertionError(
                            f"baresip {self.name}: no ctrl_tcp on {self.ctrl}\n{self.log()}"
                        ) from None
                    time.sleep(0.1)
        return self

    def log(self) -> str:
        try:
            return (self.dir / "baresip.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ctrl_tcp: netstring-framed JSON both ways

    def command(self, command: str, params: str = "") -> None:
        assert self._sock is not None, "no ctrl_tcp for this phone"
        payload = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._sock.sendall(str(len(payload)).encode() + b":" + payload + b",")

    def _read_messages(self, timeout: float) -> None:
        assert self._sock is not None
        self._sock.settimeout(timeout)
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            return
        if not chunk:
            raise AssertionError(f"baresip {self.name} closed ctrl_tcp\n{self.log()[-3000:]}")
        self._buffer += chunk
        while True:
            match = re.match(rb"(\d+):", self._buffer)
            if not match:
                return
            size = int(match.group(1))
            start = match.end()
            if len(self._buffer) < start + size + 1:
                return
            payload = self._buffer[start:start + size]
            self._buffer = self._buffer[start + size + 1:]
            try:
                self.events.append(json.loads(payload))
            except ValueError:
                continue

    def wait_event(self, kind: str, timeout: float = 10) -> dict:
        """The first event of type `kind` (e.g. CALL_ESTABLISHED) seen so far or
        within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("type") == kind:
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"baresip {self.name}: no {kind} within {timeout} s; events "
                    f"{[e.get('type') for e in self.events]}\n{self.log()[-4000:]}")
            self._read_messages(min(remaining, 0.5))

    def stop(self) -> None:
        """Quit (ours, by pid): SIGTERM, then SIGKILL."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.process is not None and self.process.poll() is None:
            # baresip 1.0 lingers ~5 s after SIGTERM (unregistering); the test
            # is over by now, so it gets a short grace only
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=1.5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if getattr(self, "_log", None):
            self._log.close()

    def recordings(self, kind: str) -> list[Path]:
        """sndfile's dumps: kind "dec" (what it heard) or "enc" (what it sent)."""
        return sorted(self.dir.glob(f"dump-*-{kind}.wav"))

    def heard_seconds(self) -> float:
        """Seconds of audio in the stream's recording of what it hears, as written so
        far (sndfile writes each frame as it comes; the WAV header's sizes only at
        the end, so the file's size is what counts)."""
        found = self.recordings("dec")
        if not found:
            return 0.0
        try:
            with found[-1].open("rb") as f:
                header = f.read(44)
            size = found[-1].stat().st_size
        except OSError:
            return 0.0
        if len(header) < 44:
            return 0.0
        channels, rate = struct.unpack_from("<HI", header, 22)
        bits = struct.unpack_from("<H", header, 34)[0]
        return max(0, size - 44) / (rate * channels * bits // 8 or 1)

    def wait_heard(self, seconds: float, timeout: float) -> None:
        """Until the current stream's recording holds `seconds` of audio: the call
        has really carried that much sound to this phone (no fixed talk time)."""
        from tests.sip.callkit import wait_for

        if not wait_for(lambda: self.heard_seconds() >= seconds, timeout, 0.05):
            raise AssertionError(f"{self.name}: heard {self.heard_seconds():.1f} s, not "
                                 f"{seconds} s within {timeout} s\n{self.log()[-3000:]}")


# --- a NAT router made of namespaces --------------------------------------------------------

def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)}: {result.stderr.strip() or result.stdout}")


class NatLab:
    """phone (10.77.1.2) -- router (10.77.1.1 | 10.77.2.1, masquerade) -- host (10.77.2.2).

    The phone's default route is the router; the router forwards and
    masquerades (nftables, with random source ports, so neither the address
    nor the port a packet leaves with is what the phone's SDP says); the host
    gets only 10.77.2.2/24 on its end of a veth: no route to 10.77.1.0/24, so
    the phone is reachable only through what its own packets opened.
    Everything is removed again by close(), also after a failure.
    """

    PHONE, ROUTER_IN, ROUTER_OUT, HOST = "10.77.1.2", "10.77.1.1", "10.77.2.1", "10.77.2.2"

    def __init__(self):
        self.ip = require_tool("ip")
        self.nft = require_tool("nft")
        tag = f"{os.getpid() % 100000}"
        self.phone_ns = f"pbxt-phone-{tag}"
        self.router_ns = f"pbxt-router-{tag}"
        self.host_if = f"pbxh{tag}"
        self.created: list[tuple[str, str]] = []

    def __enter__(self) -> NatLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        ip, phone, router = self.ip, self.phone_ns, self.router_ns
        for ns in (phone, router):
            _run(ip, "netns", "add", ns)
            self.created.append(("netns", ns))
            _run(ip, "-n", ns, "link", "set", "lo", "up")
        # phone <-> router
        _run(ip, "link", "add", "pbxp0", "netns", phone, "type", "veth",
             "peer", "name", "pbxr0", "netns", router)
        # router <-> host
        _run(ip, "link", "add", self.host_if, "type", "veth", "peer", "name", "pbxr1",
             "netns", router)
        self.created.append(("link", self.host_if))
        _run(ip, "-n", phone, "addr", "add", f"{self.PHONE}/24", "dev", "pbxp0")
        _run(ip, "-n", phone, "link", "set", "pbxp0", "up")
        _run(ip, "-n", phone, "route", "add", "default", "via", self.ROUTER_IN)
        _run(ip, "-n", router, "addr", "add", f"{self.ROUTER_IN}/24", "dev", "pbxr0")
        _run(ip, "-n", router, "addr", "add", f"{self.ROUTER_OUT}/24", "dev", "pbxr1")
        _run(ip, "-n", router, "link", "set", "pbxr0", "up")
        _run(ip, "-n", router, "link", "set", "pbxr1", "up")
        _run(ip, "addr", "add", f"{self.HOST}/24", "dev", self.host_if)
        _run(ip, "link", "set", self.host_if, "up")
        _run(ip, "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        rules = self.dir() / "nat.nft"
        rules.write_text(
            "table ip pbxtest {\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority 100; policy accept;\n"
            '    oifname "pbxr1" masquerade random\n'
            "  }\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy drop;\n"
            '    iifname "pbxr0" oifname "pbxr1" accept\n'
            "    ct state established,related accept\n"
            "  }\n"
            "}\n")
        _run(ip, "netns", "exec", router, self.nft, "-f", str(rules))

    def dir(self) -> Path:
        if not hasattr(self, "_dir"):
            self._dir = workdir("natlab-")
        return self._dir

    def close(self) -> None:
        for kind, name in reversed(self.created):
            if kind == "link":
                subprocess.run([self.ip, "link", "del", name], capture_output=True, timeout=20)
            else:
                subprocess.run([self.ip, "netns", "del", name], capture_output=True, timeout=20)
        self.created = []

    def conntrack_view(self) -> str:
        """The router's NAT table, for failure messages."""
        result = subprocess.run([self.ip, "netns", "exec", self.router_ns, self.nft, "list",
                                 "ruleset"], capture_output=True, text=True, timeout=10)
        return result.stdout
