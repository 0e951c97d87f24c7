"""What every part of the B2BUA sends through: the transport's `send`, the
handler's `respond` (server transactions), our client transactions, our own
address for Via and Contact, the clock and the scheduler.

One `Stack` per B2BUA; legs, forks and the bridge hold it rather than reaching
for each of these on their own.
"""

from __future__ import annotations

from sipd.registrar import Destination
from sipd.sip.dialog import new_branch
from sipd.sip.headers import NameAddr
from sipd.sip.message import ParseError, Request, Response
from sipd.sip.responses import make_response
from sipd.sip.transaction import ClientTransaction, ClientTransactions, ServerTransaction

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, REGISTER, PRACK"
SERVER = "pbx-sipd"


class Stack:
    __slots__ = ("send", "respond", "local_host", "local_port", "realm", "clock", "scheduler",
                 "client")

    def __init__(self, send, respond, local_host: str, local_port: int, realm: str, clock,
                 scheduler):
        self.send = send  # send(data, Destination)
        self.respond = respond  # respond(ServerTransaction, Response)
        self.local_host = local_host
        self.local_port = local_port
        self.realm = realm
        self.clock = clock
        self.scheduler = scheduler
        self.client = ClientTransactions()

    def via(self, transport: str) -> str:
        return (
            f"SIP/2.0/{transport} {self.local_host}:{self.local_port};branch={new_branch()};rport"
        )

    def contact(self, user: str, transport: str) -> str:
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"<sip:{user}@{self.local_host}:{self.local_port}{suffix}>"

    def start(self, request: Request, destination: Destination, context) -> ClientTransaction:
        """Send `request` in a client transaction of ours. `context` gets its
        responses and its timeout (`on_response(response)`, `on_timeout()`);
        None: nobody needs them (a BYE, a CANCEL)."""
        transaction = self.client.start(
            request, destination.reliable, self.clock(), destination=destination, context=context
        )
        self.send(transaction.data, destination)
        return transaction

    def reply(
        self,
        txn: ServerTransaction,
        request: Request,
        status: int,
        reason: str | None = None,
        headers=None,
        body: bytes = b"",
        to_tag: str | None = None,
    ) -> Response:
        response = self.build(request, status, reason, headers, body, to_tag)
        self.respond(txn, response)
        return response

    def build(self, request: Request, status: int, reason: str | None = None, headers=None,
              body: bytes = b"", to_tag: str | None = None) -> Response:
        """The response `reply` sends, not sent yet (a reliable 1xx, a 2xx that
        waits for its PRACK: sipd/b2bua/prack.py)."""
        extra = list(headers or [])
        if body:
            extra.append(("Content-Type", "application/sdp"))
        response = make_response(request, status, reason, extra, body=body, to_tag=to_tag)
        response.headers.add("Server", SERVER)
        return response


def contact_uri(message) -> str | None:
    """The URI of a message's Contact (None: none, or unreadable)."""
    value = message.headers.get("Contact")
    if not value:
        return None
    try:
        return str(NameAddr.parse(value).uri)
    except ParseError:
        return None
