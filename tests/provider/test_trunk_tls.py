"""A trunk over TLS to Kamailio (SIP over TLS on loopback, a certificate from a CA the
test makes with the openssl CLI): sipd registers on a TLS connection of its own, an
extension's call goes out through it and a DID's call comes in on it, with audio both
ways through the relay. The provider's certificate is verified: with its CA in
PBX_TRUNK_TLS_CA it is trusted; without it, or for another name than the trunk's
host, sipd sends nothing (the digest exchange would go to whoever answers), and the
trunk's status says why."""

from __future__ import annotations

import subprocess

import pytest

from tests.provider.kamailio import Carrier
from tests.provider.test_trunk_register import trunk_state
from tests.sip import callkit as ck
from tests.support import require_tool, self_signed

FAR = "998901234567"
DIALLED = "9901234567"
DID = "712000001"
OUTSIDE = "998907654321"


def openssl(*argv, cwd) -> None:
    subprocess.run([require_tool("openssl"), *argv], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, and the carrier's certificate from it for carrier.test and 127.0.0.1."""
    where = tmp_path_factory.mktemp("pki")
    ca, _ = self_signed(
        where,
        "/CN=Carrier Test CA",
        "basicConstraints=critical,CA:TRUE",
        "keyUsage=critical,keyCertSign,cRLSign",
        name="ca",
    )
    openssl(
        *"req -newkey rsa:2048 -nodes -subj /CN=carrier.test -keyout key.pem".split(),
        *"-out cert.csr".split(),
        cwd=where,
    )
    (where / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:carrier.test,IP:127.0.0.1\n"
    )
    openssl(
        *"x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2".split(),
        *"-extfile ext.cnf -out cert.pem".split(),
        cwd=where,
    )
    return {"ca": ca, "cert": where / "cert.pem", "key": where / "key.pem"}


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def carrier(tmp_path, pki):
    server = Carrier(tmp_path / "carrier", tls=(pki["cert"], pki["key"])).start()
    server.add_subscriber("acme1", "s3cret")
    yield server
    server.stop()


def tls_trunk(pbxctl, host: str) -> None:
    for argv in (
        (
            "trunk",
            "add",
            "acme",
            "--host",
            host,
            "--transport",
            "tls",
            "--username",
            "acme1",
            "--password",
            "s3cret",
            "--register",
            "--keepalive",
            "0",
        ),
        # 9 and the national number: 998 in front (as tests/provider/outbound_kit.py).
        ("outbound", "add", "mobile", "--trunks", "acme", "--pattern", "998+9|9XXXXXXXX"),
        ("policy", "set", "--home-country", "998"),
        ("inbound", "add", DID, "--to", "1001"),
    ):
        status, out, err = pbxctl(*argv)
        assert status == 0, f"{argv}: {out}{err}"


def test_a_tls_trunk_registers_and_calls_go_out_and_in_with_audio(tmp_path, pki, carrier, pbxctl):
    sipd = ck.SipdServer(tmp_path, numbers=("1001",), PBX_TRUNK_TLS_CA=str(pki["ca"]))
    tls_trunk(pbxctl, carrier.tls_address)
    sipd.start()
    try:
        assert ck.wait_for(lambda: trunk_state(sipd.db_path)[0] == "registered", 10), (
            f"{trunk_state(sipd.db_path)}\n{sipd.log()}\n{carrier.log()}"
        )
        port = sipd.daemon.port
        assert trunk_state(sipd.db_path)[3] == f"sip:acme1@127.0.0.1:{port};transport=tls"
        assert {r["proto"] for r in carrier.requests("REGISTER")} == {"tls"}
        # Kamailio keeps the connection sipd opened as the binding's way back.
        (binding,) = carrier.locations("acme1")
        assert binding["received"].endswith(";transport=tls"), binding

        # Out: the extension dials 9 + the number; the far phone behind the carrier answers.
        far = ck.callee(
            carrier.address, FAR, "callee_answer.xml", ring_ms=300, register_first=False
        )
        carrier.route_to(FAR, f"{ck.LOOPBACK}:{far.local_port}")
        caller = ck.caller(sipd.address, "1001", DIALLED, "caller_call.xml", duration_ms=2500)
        echo = ck.rtp_echo_check(ck.sdp_media(ck.wait_answer_sdp(caller)), count=40)
        ck.finish(caller, far, server=sipd)
        assert far.requests() == ["INVITE", "ACK", "BYE"], far.flow()
        assert echo["echoed"] >= 35, f"{echo}\n{caller.flow()}\n{sipd.log()[-3000:]}"
        invites = carrier.requests("INVITE")
        assert invites and {r["proto"] for r in invites} == {"tls"}, invites
        assert [r["proto"] for r in carrier.requests("BYE")] == ["tls"]
        assert f"via trunk acme to {carrier.tls_address}/tls as {FAR}" in sipd.log()
        row = ck.ended_calls(sipd.db_path)[-1]
        assert (row["direction"], row["trunk"], row["disposition"]) == (
            "outbound",
            "acme",
            "ANSWERED",
        ), row

        # In: the DID's call reaches sipd on that same connection; the phone answers.
        carrier.did(DID, "acme1")
        phone = ck.callee(sipd.address, "1001", "callee_answer.xml")
        outside_port = ck.free_ports()
        carrier.trust(ck.LOOPBACK, outside_port)
        call = ck.Sipp(
            "outside",
            str(ck.ROOT / "tests/provider/scenarios/outside_call.xml"),
            carrier.address,
            inject=[[OUTSIDE, DID]],
            duration_ms=2500,
            timeout=20,
            local_port=outside_port,
        ).start()
        echo = ck.rtp_echo_check(ck.sdp_media(ck.wait_answer_sdp(call)), count=40)
        ck.finish(call, phone, server=sipd)
        assert echo["echoed"] >= 35, f"{echo}\n{call.flow()}\n{sipd.log()[-3000:]}"
        assert f"[TRUNK] acme: call from {OUTSIDE} to DID {DID} -> 1001" in sipd.log()
        row = ck.ended_calls(sipd.db_path, count=2)[-1]
        assert (row["caller"], row["direction"], row["trunk"], row["disposition"]) == (
            OUTSIDE,
            "inbound",
            "acme",
            "ANSWERED",
        ), row
    finally:
        sipd.stop()


@pytest.mark.parametrize(
    "host, trusted, why",
    [
        # The right name, from a CA nobody configured.
        ("127.0.0.1", False,
         "TLS: certificate verify failed: unable to get local issuer certificate (host 127.0.0.1)"),
        # A trusted CA, but the certificate is not for "localhost": the names it is for.
        ("localhost", True, "TLS: certificate is for carrier.test, 127.0.0.1, not localhost"),
    ],
)
def test_a_provider_certificate_sipd_cannot_verify_gets_nothing_and_the_status_says_why(
    tmp_path, pki, carrier, pbxctl, host, trusted, why
):
    env = {"PBX_TRUNK_TLS_CA": str(pki["ca"])} if trusted else {}
    sipd = ck.SipdServer(tmp_path, numbers=("1001",), **env)
    tls_trunk(pbxctl, f"{host}:{carrier.tls_port}")
    sipd.start()
    try:
        assert ck.wait_for(lambda: trunk_state(sipd.db_path)[0] == "failed", 10), sipd.log()
        assert carrier.requests("REGISTER") == []
        # The trunk's status says why, in the database, pbxctl and the panel (which shows
        # trunk_state.reason as pbxctl does).
        assert trunk_state(sipd.db_path)[2] == why, (trunk_state(sipd.db_path), sipd.log())
        status, out, err = pbxctl("trunk", "show", "acme")
        assert status == 0 and "failed" in out and why in out, out + err
        status, out, err = pbxctl("trunk", "list")
        assert status == 0 and why in out, out + err
        warning = f"[SIP] Could not open TLS to 127.0.0.1:{carrier.tls_port} ({host}): {why}"
        assert warning in sipd.log(), sipd.log()
        assert f"[TRUNK] acme registration at {host}:{carrier.tls_port} failed: {why}" in (
            sipd.log())
    finally:
        sipd.stop()
