"""Message waiting (RFC 3842): the lamps of phones, kept right, in the main sipd only.

- A phone SUBSCRIBEs to `message-summary` for its mailbox (Request-URI
  sip:1001@pbx): authenticated like a REGISTER (401 challenge, the extension's
  password), and only for its own mailbox; it gets 200 with the Expires granted
  and at once a NOTIFY with the counts (RFC 6665 §4.2.1.2); the subscription
  lives in this process until it expires or the phone ends it (Expires: 0).
- A registered phone that never subscribed gets the same NOTIFY out of any
  dialog ("unsolicited", as Asterisk does for phones set up that way).
- Both are sent whenever a mailbox's counts change, whoever changed them (this
  sipd's voicemail, the panel, pbxctl: the counts are read from the database every
  SYNC_EVERY s, and at once after `changed`), to every new registration (bindings
  are read from the database, since registration workers write them), and so
  after a restart to every phone: the state is the database's, never this
  process's memory.

Each NOTIFY is a client transaction (Timer E retransmits it over UDP). A
subscription whose NOTIFY gets 481 is gone (RFC 6665 §4.2.2); an expired one
gets a last NOTIFY with Subscription-State terminated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from core.models import Binding, Extension, Mailbox, VoicemailMessage
from sipd.registrar import Destination, Source, clean_text
from sipd.sip import mwi
from sipd.sip.dialog import new_branch, new_call_id, new_tag, tag_param
from sipd.sip.headers import NameAddr, parse_expires
from sipd.sip.message import Headers, ParseError, Request, Response
from sipd.sip.responses import make_response
from sipd.sip.transaction import ClientTransactions, Event

log = logging.getLogger("sipd")

SYNC_EVERY = 2.0  # seconds between reads of the counts and bindings


@dataclass
class Subscription:
    number: str  # the mailbox
    call_id: str
    remote: str  # the subscriber's From (with its tag): our NOTIFY's To
    local_tag: str  # our To tag in the 200: our NOTIFY's From tag
    target: str  # the subscriber's Contact URI: our NOTIFY's Request-URI
    destination: Destination
    expires_at: float
    cseq: int = 0


@dataclass(frozen=True)
class Phone:
    """A live binding of an extension whose mailbox is on."""

    id: int
    number: str
    aor: str
    contact: str
    destination: Destination

    @property
    def key(self) -> tuple:
        """What makes it the same registration (Destination has no equality of its own)."""
        d = self.destination
        return (self.number, self.contact, d.host, d.port, d.transport)


class Notifier:
    def __init__(self, registrar, send, local_host: str, local_port: int, realm: str,
                 clock=time.time):
        self.registrar = registrar
        self.send = send  # the transports' send(data, Destination) -> bool
        self.local_host, self.local_port, self.realm = local_host, local_port, realm
        self.clock = clock
        self.client = ClientTransactions()
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.counts: dict[str, tuple[int, int]] = {}  # what phones were last told
        self.phones: dict[int, Phone] = {}  # the bindings told so far
        self._next_sync = 0.0
        self._unsolicited_cseq = 0

    # -- SUBSCRIBE ------------------------------------------------------------------------

    def subscribe(self, request: Request, source: Source) -> Response:
        """The answer to a SUBSCRIBE (new or a refresh in its dialog); its NOTIFY is sent."""
        event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != mwi.EVENT:
            # RFC 6665 §4.2.1.1 (and §8.3.2): 489 with the packages we do know.
            return make_response(request, 489, "Bad Event", [("Allow-Events", mwi.EVENT)])
        try:
            to = NameAddr.parse(request.headers.get("To", ""))
            sender = NameAddr.parse(request.headers.get("From", ""))
            contacts = request.headers.get_all("Contact")
            if not contacts:
                raise ParseError("SUBSCRIBE without Contact")  # RFC 6665 §4.1.2
            contact = NameAddr.parse(contacts[0])
            raw = request.headers.get("Expires")
            granted = mwi.granted_expires(parse_expires(raw) if raw else None)
        except ParseError as error:
            return make_response(request, 400, f"Bad Request: {error}")
        except ValueError:
            return make_response(request, 423, "Interval Too Brief",
                                 [("Min-Expires", str(mwi.MIN_EXPIRES))])
        number = sender.uri.user or ""
        user_agent = clean_text(request.headers.get("User-Agent"))
        extension = self.registrar.authenticate(request, number, source, user_agent, self.clock())
        if isinstance(extension, Response):
            return extension
        mailbox = (to.uri.user or "").strip()
        uri_user = _user(request.uri)
        if uri_user and uri_user != mailbox and uri_user.isdigit():
            mailbox = uri_user  # RFC 3842 §3.3: the Request-URI names the account
        if mailbox != extension.number:
            log.warning("[MWI] SUBSCRIBE of %s to mailbox %s from %s refused: not its own",
                        extension.number, mailbox, source)
            return make_response(request, 403, "Forbidden: not your mailbox")
        if not _has_mailbox(mailbox):
            return make_response(request, 404, "Not Found: no mailbox")
        call_id = request.headers.get("Call-ID", "")
        remote_tag = tag_param(request.headers.get("From", "")) or ""
        key = (call_id, remote_tag)
        existing = self.subscriptions.get(key)
        local_tag = tag_param(request.headers.get("To", "")) or (
            existing.local_tag if existing else new_tag())
        now = self.clock()
        destination = Destination(source.host, source.port, source.transport)
        subscription = existing or Subscription(
            mailbox, call_id, request.headers.get("From", ""), local_tag, str(contact.uri),
            destination, now + granted)
        subscription.expires_at = now + granted
        subscription.destination = destination
        subscription.target = str(contact.uri)
        response = make_response(request, 200, "OK", [
            ("Expires", str(granted)),
            ("Contact", self._contact(source.transport)),
        ], to_tag=local_tag)
        if granted:
            self.subscriptions[key] = subscription
            log.info("[MWI] %s subscribed to mailbox %s from %s for %d s", extension.number,
                     mailbox, source, granted)
        else:
            self.subscriptions.pop(key, None)
            log.info("[MWI] %s unsubscribed from mailbox %s", extension.number, mailbox)
        # RFC 6665 §4.2.1.2: the NOTIFY follows the 2xx, with the state now
        # (terminated for Expires: 0, §4.2.1.3).
        self._notify(subscription, self._counts_of(mailbox), now)
        return response

    # -- what changes ---------------------------------------------------------------------

    def changed(self, number: str) -> None:
        """A mailbox's messages changed here (sipd's voicemail): tell its phones now."""
        self._next_sync = 0.0
        self.tick()

    def tick(self) -> None:
        """Run often (0.1 s): retransmissions; every SYNC_EVERY s the database's counts
        and bindings, and whatever must be told from them; expired subscriptions."""
        now = self.clock()
        resend, _ = self.client.tick(now)
        for transaction in resend:
            self.send(transaction.data, transaction.destination)
        for key, subscription in list(self.subscriptions.items()):
            if subscription.expires_at <= now:
                del self.subscriptions[key]
                self._notify(subscription, self.counts.get(subscription.number, (0, 0)), now)
        if now < self._next_sync:
            return
        self._next_sync = now + SYNC_EVERY
        counts = _all_counts()
        phones = self._live_phones(now)
        changed = {n for n, c in counts.items() if self.counts.get(n) != c}
        self.counts = counts
        for subscription in self.subscriptions.values():
            if subscription.number in changed:
                self._notify(subscription, counts[subscription.number], now)
        subscribed = {(s.number, s.destination.host, s.destination.port)
                      for s in self.subscriptions.values()}
        for phone in phones.values():
            if phone.number not in counts:
                continue
            new = phone.id not in self.phones or self.phones[phone.id].key != phone.key
            if (new or phone.number in changed) and (
                    phone.number, phone.destination.host, phone.destination.port) not in subscribed:
                self._unsolicited(phone, counts[phone.number], now)
        self.phones = phones

    def response(self, response: Response, source: Source) -> bool:
        """Whether `response` answers one of our NOTIFYs (then it ends here)."""
        transaction = self.client.match(response)
        if transaction is None:
            return False
        event, _ = self.client.receive(transaction, response, self.clock())
        if event is Event.DELIVER and response.status >= 300:
            key = transaction.context
            if response.status == 481 and key in self.subscriptions:
                del self.subscriptions[key]  # RFC 6665 §4.2.2: the subscription is gone
            log.info("[MWI] NOTIFY to %s answered %d %s", source, response.status,
                     response.reason)
        return True

    # -- sending --------------------------------------------------------------------------

    def _contact(self, transport: str) -> str:
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"<sip:pbx@{self.local_host}:{self.local_port}{suffix}>"

    def _via(self, transport: str) -> str:
        return (f"SIP/2.0/{transport} {self.local_host}:{self.local_port}"
                f";branch={new_branch()};rport")

    def _body(self, number: str, counts: tuple[int, int]) -> bytes:
        summary = mwi.Summary(counts[0], counts[1], account=f"sip:{number}@{self.realm}")
        return mwi.body(summary).encode()

    def _notify(self, subscription: Subscription, counts: tuple[int, int], now: float) -> None:
        subscription.cseq += 1
        remaining = int(subscription.expires_at - now)
        headers = mwi.notify_headers(
            via=self._via(subscription.destination.transport),
            from_=f"<sip:{subscription.number}@{self.realm}>;tag={subscription.local_tag}",
            to=subscription.remote, call_id=subscription.call_id, cseq=subscription.cseq,
            contact=self._contact(subscription.destination.transport),
            state=mwi.subscription_state(remaining))
        request = Request(headers=Headers(headers), method="NOTIFY", uri=subscription.target,
                          body=self._body(subscription.number, counts))
        self._start(request, subscription.destination, (subscription.call_id,
                                                        tag_param(subscription.remote) or ""))
        log.info("[MWI] NOTIFY mailbox %s: %d new, %d old to %s", subscription.number,
                 counts[0], counts[1], subscription.destination)

    def _unsolicited(self, phone: Phone, counts: tuple[int, int], now: float) -> None:
        self._unsolicited_cseq += 1
        headers = mwi.notify_headers(
            via=self._via(phone.destination.transport),
            from_=f"<sip:{phone.number}@{self.realm}>;tag={new_tag()}", to=f"<{phone.aor}>",
            call_id=new_call_id(self.local_host), cseq=self._unsolicited_cseq,
            contact=self._contact(phone.destination.transport), state="active")
        request = Request(headers=Headers(headers), method="NOTIFY", uri=phone.contact,
                          body=self._body(phone.number, counts))
        self._start(request, phone.destination, None)
        log.info("[MWI] Unsolicited NOTIFY mailbox %s: %d new, %d old to %s", phone.number,
                 counts[0], counts[1], phone.destination)

    def _start(self, request: Request, destination: Destination, context) -> None:
        transaction = self.client.start(request, destination.reliable, self.clock(),
                                        destination=destination, context=context)
        if not self.send(transaction.data, destination):
            self.client.forget(transaction)

    # -- the database ---------------------------------------------------------------------

    def _counts_of(self, number: str) -> tuple[int, int]:
        counts = _all_counts([number])
        self.counts.update(counts)
        return counts.get(number, (0, 0))

    def _live_phones(self, now: float) -> dict[int, Phone]:
        rows = (Binding.select(Binding.id, Extension.number, Binding.aor, Binding.contact,
                               Binding.source_host, Binding.source_port, Binding.transport)
                .join(Extension).join(Mailbox, on=(Mailbox.extension == Extension.id))
                .where(Binding.expires_at > now, Mailbox.enabled == True)  # noqa: E712
                .tuples())
        return {row[0]: Phone(row[0], row[1], row[2], row[3],
                              Destination(row[4], row[5], row[6])) for row in rows}


def _user(uri: str) -> str:
    try:
        return NameAddr.parse(f"<{uri}>").uri.user or ""
    except ParseError:
        return ""


def _has_mailbox(number: str) -> bool:
    return (Mailbox.select().join(Extension)
            .where(Extension.number == number, Mailbox.enabled == True)  # noqa: E712
            .exists())


def _all_counts(numbers=None) -> dict[str, tuple[int, int]]:
    """(new, old) of every enabled mailbox (or of `numbers`), in two statements."""
    boxes = (Extension.select(Extension.number).join(Mailbox)
             .where(Mailbox.enabled == True))  # noqa: E712
    if numbers is not None:
        boxes = boxes.where(Extension.number.in_(list(numbers)))
    counts = {row.number: [0, 0] for row in boxes}
    if counts:
        from peewee import fn

        rows = (VoicemailMessage.select(Extension.number, VoicemailMessage.folder,
                                        fn.count(VoicemailMessage.id))
                .join(Mailbox).join(Extension)
                .where(Extension.number.in_(list(counts)))
                .group_by(Extension.number, VoicemailMessage.folder).tuples())
        for number, folder, count in rows:
            counts[number][0 if folder == "new" else 1] += count
    return {number: (new, old) for number, (new, old) in counts.items()}
