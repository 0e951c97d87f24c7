"""A DNS server on loopback for the tests (dnspython builds and reads the messages):
the records a test adds, NXDOMAIN for every other name, each question recorded.

    with DnsServer() as dns:
        dns.add("_sip._udp.carrier.test", "SRV", "10 60 5070 sip1.carrier.test.")
        dns.add("sip1.carrier.test", "A", "127.0.0.1")
        dns.address            # ("127.0.0.1", port): PBX_DNS_SERVERS=127.0.0.1:port
        dns.asked              # [("_sip._udp.carrier.test", "SRV"), ...]

No test asks the machine's resolver for SRV: tests/conftest.py points sipd's
lookups (sipd/trunks/srv.py) at one of these, which knows no names of its own.
"""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 60


class DnsServer:
    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)  # to notice close()
        self._closed = False
        self.address = self.socket.getsockname()
        self.records: dict[tuple[str, str], list[str]] = {}
        self.asked: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def add(self, name: str, kind: str, *values: str) -> None:
        self.records.setdefault((name.lower().rstrip("."), kind.upper()), []).extend(values)

    def clear(self) -> None:
        self.records.clear()
        self.asked.clear()

    def _serve(self) -> None:
        while not self._closed:
            try:
                data, peer = self.socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            self.socket.sendto(self._answer(query).to_wire(), peer)

    def _answer(self, query):
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, kind))
        values = self.records.get((name, kind))
        if values:
            response.answer.append(dns.rrset.from_text_list(
                question.name, TTL, dns.rdataclass.IN, question.rdtype, values))
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response  # a known name without records of this type: NOERROR, no answer

    def close(self) -> None:
        self._closed = True
        self._thread.join(1)
        self.socket.close()

    def __enter__(self) -> DnsServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
