"""A register trunk's registration to its provider, as a client (RFC 3261 §10.2).

No I/O and no clock: `ClientRegistration.request(...)` builds the REGISTER,
`response(...)` / `timeout(...)` / `error(...)` say what came of it as an
`Outcome` (send again with credentials, registered for N seconds, or failed
with the reason and when to try again). sipd/trunks/manager.py sends, keeps
the transactions and the timers, and writes TrunkState.

The policy, from issue 12 ("a trunk registration that silently gives up after
some retries" is what peers' trackers complain about):
- digest on 401/407 with sipd/sip/digest_client.py (MD5, SHA-256);
- refreshed at half the granted time, but never later than REFRESH_MARGIN
  before it runs out (a 3600 s registration is refreshed after 3000 s);
- after a failure, tried again after 30, 60, 120, 300 s, then every 600 s
  forever; after a 403 only every 1800 s (the provider said no: hammering it
  gets the office's address blocked), with a 503's Retry-After honoured when
  it asks for longer (RFC 3261 §21.5.4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sipd.sip.digest_client import Authorization, ClientCredentials
from sipd.sip.headers import NameAddr, parse_expires
from sipd.sip.message import Headers, ParseError, Request, Response
from sipd.trunks.path import Path

BACKOFF = (30, 60, 120, 300)
BACKOFF_CAP = 600
FORBIDDEN_WAIT = 1800
REFRESH_MARGIN = 600
USER_AGENT = "pbx-sipd"


def retry_wait(failures: int, status: int | None = None, retry_after: int | None = None) -> int:
    """Seconds before the next attempt after `failures` failures in a row."""
    if status == 403:
        wait = FORBIDDEN_WAIT
    else:
        wait = BACKOFF[failures - 1] if 0 < failures <= len(BACKOFF) else BACKOFF_CAP
    if retry_after:
        wait = max(wait, min(retry_after, FORBIDDEN_WAIT))
    return wait


def refresh_after(granted: int) -> float:
    """Seconds after a 200 to refresh a registration granted for `granted` seconds."""
    return max(granted / 2, granted - REFRESH_MARGIN)


@dataclass(frozen=True)
class Outcome:
    kind: str  # "resend" (credentials added: send request() again now) | "registered" | "failed"
    code: int | None = None
    reason: str = ""
    expires: int = 0  # registered: the seconds granted
    retry_in: float = 0.0  # failed: seconds until the next attempt


class ClientRegistration:
    """One trunk's registration: its Call-ID and CSeq (§10.2.4: one Call-ID for
    all the registrations a UA sends a registrar, CSeq counting up) and its
    digest credentials (the provider's nonce cached, RFC 3261 §22.3)."""

    def __init__(self, name: str, username: str, auth_user: str, password: str, expires: int,
                 call_id: str, cnonce: Callable[[], str] | None = None):
        self.name = name
        self.username = username
        self.expires = expires
        self.call_id = call_id
        self.cseq = 0
        self.failures = 0
        self.credentials = ClientCredentials(auth_user or username, password, cnonce)
        self._sent: Authorization | None = None
        self._contact = ""
        self._min_expires: int | None = None

    def request(self, path: Path, contact: str, via: str, tag: str, expires: int | None = None,
                ) -> Request:
        """The next REGISTER (§10.2): Request-URI the provider's domain, To and From
        the address of record, our Contact, Expires asked (0: remove it)."""
        self.cseq += 1
        self._contact = contact
        uri = path.uri()
        asked = self.expires if expires is None else expires
        if asked and self._min_expires:
            asked = max(asked, self._min_expires)
        aor = f"<{path.uri(self.username)}>"
        headers = Headers([
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"{aor};tag={tag}"),
            ("To", aor),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", f"<{contact}>"),
            ("Expires", str(asked)),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE, PRACK"),
            ("User-Agent", USER_AGENT),
        ])
        if path.route:
            headers.add("Route", path.route)  # §8.1.2: the outbound proxy, preloaded
        self._sent = self.credentials.authorize("REGISTER", uri)
        for name, value in self._sent.headers:
            headers.add(name, value)
        return Request(headers=headers, method="REGISTER", uri=uri)

    def response(self, response: Response) -> Outcome:
        status = response.status
        if status < 200:
            raise ValueError("a provisional response is not an outcome")
        if 200 <= status < 300:
            self.failures = 0
            return Outcome("registered", status, f"{status} {response.reason}",
                           expires=self._granted(response))
        if status in (401, 407):
            why = self.credentials.challenged(response, self._sent)
            if why is None:
                return Outcome("resend", status)
            return self._failed(status, f"{status} {response.reason}: {why}")
        if status == 423:
            # §10.2.8: Interval Too Brief; ask again at once with the Min-Expires given.
            try:
                minimum = parse_expires(response.headers.get("Min-Expires", ""))
            except ParseError:
                minimum = 0
            if minimum and minimum != self._min_expires:
                self._min_expires = minimum
                return Outcome("resend", status)
        retry_after = None
        if response.headers.get("Retry-After"):
            try:
                retry_after = parse_expires(response.headers.get("Retry-After").split(";")[0])
            except ParseError:
                retry_after = None
        return self._failed(status, f"{status} {response.reason}", retry_after)

    def timeout(self, address: str) -> Outcome:
        """No answer (Timer F, §17.1.2.2)."""
        return self._failed(None, f"no response from {address}")

    def error(self, reason: str) -> Outcome:
        """It could not be sent at all (a name that does not resolve, no connection)."""
        return self._failed(None, reason)

    def _failed(self, status: int | None, reason: str, retry_after: int | None = None) -> Outcome:
        self.failures += 1
        return Outcome("failed", status, reason,
                       retry_in=retry_wait(self.failures, status, retry_after))

    def _granted(self, response: Response) -> int:
        """§10.2.4: the expires parameter of our Contact in the 200, else its Expires
        header, else what we asked."""
        ours = _uri_key(self._contact)
        for value in response.headers.get_all("Contact"):
            try:
                contact = NameAddr.parse(value)
            except ParseError:
                continue
            if _uri_key(str(contact.uri)) == ours and contact.params.get("expires"):
                try:
                    return parse_expires(contact.params["expires"])
                except ParseError:
                    break
        try:
            return parse_expires(response.headers.get("Expires", ""))
        except ParseError:
            return self.expires


def _uri_key(uri: str) -> str:
    """user@host:port of a SIP URI, lower-cased: registrars add or reorder parameters."""
    return uri.split(":", 1)[-1].split(";", 1)[0].strip("<>").lower()
