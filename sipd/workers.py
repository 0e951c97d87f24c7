"""Registration workers: REGISTERs spread over several processes on one UDP port.

sipd is one Python process, and a registration costs it a few hundred
microseconds of CPU, so one process is one core's worth of registrations. With
PBX_SIP_WORKERS=N, the main process and N worker processes each bind the SIP
UDP port with SO_REUSEPORT, and the main process attaches a classic BPF program
to the group (SO_ATTACH_REUSEPORT_CBPF, socket(7)) that the kernel runs on each
arriving datagram to pick the socket it goes to:

- a datagram whose payload starts with "REGI" (a REGISTER) goes to process
  (source address) mod (N + 1): for IPv4 the address as a number, for IPv6
  its low 32 bits;
- anything else (INVITE, BYE, responses, OPTIONS...) goes to index 0, the main
  process, which alone holds the calls, TCP, TLS and the control socket.

Steering by address keeps all the REGISTERs of one source in one process: their
retransmissions meet the transaction that answered them, their nonce counts are
where their nonces were issued (RFC 7616 §3.4: nc replay), and their rate limit
and failed-login count (sipd/security.py) are whole, so workers do not multiply
what a password guesser may try by REGISTER before the ban. (Its other requests
are counted apart, in the main process: a guesser using both REGISTER and INVITE
gets up to twice the threshold.) The price: the phones of one office behind one
NAT address share one process, which their load never fills. A nonce
carries the number of the process that issued it and a random number drawn when
that process started; presented to another process, or to a worker restarted
under the same number, it is treated as stale, and the phone is challenged
again (sipd.sip.digest). It is also bound to the address it was sent to, so a
replay from another address is challenged before the process even matters.

The kernel keeps the group in the order the sockets joined it: the main process
binds first, so it is index 0, and a worker that dies and comes back joins at
the end. While a worker is missing, an index past the group's end falls back to
the kernel's own hash: some process still answers.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import struct
import subprocess
import sys

import gevent

log = logging.getLogger("sipd")

SO_ATTACH_REUSEPORT_CBPF = 51  # asm-generic/socket.h
# Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
_LD, _ALU, _JMP, _RET = 0x00, 0x04, 0x05, 0x06
_W, _ABS = 0x00, 0x20
_JEQ, _MOD = 0x10, 0x90
_K, _A = 0x00, 0x10
# Negative offsets load from the network header instead of the payload (SKF_NET_OFF).
_NET = -0x100000
REGISTER_PREFIX = int.from_bytes(b"REGI", "big")
RESTART_DELAY = 1.0


def steering_program(family: int, processes: int) -> list[tuple[int, int, int, int]]:
    """The (code, jt, jf, k) instructions choosing a socket index for a datagram.

    In a reuseport program the packet starts at the UDP payload; the IP source
    address is read at a fixed offset from the network header (for IPv6 its low
    32 bits). Too short a packet ends the program with 0: the main process.
    """
    address = 12 if family == socket.AF_INET else 20
    return [
        (_LD | _W | _ABS, 0, 0, 0),  # 0: A = the payload's first 4 bytes
        (_JMP | _JEQ | _K, 0, 3, REGISTER_PREFIX),  # 1: "REGI"? else to 5
        (_LD | _W | _ABS, 0, 0, _NET + address),  # 2: A = source address
        (_ALU | _MOD | _K, 0, 0, processes),  # 3: A %= processes
        (_RET | _A, 0, 0, 0),  # 4: deliver to socket A
        (_RET | _K, 0, 0, 0),  # 5: deliver to socket 0, the main process
    ]


def attach_steering(sock, processes: int) -> None:
    """Attach the steering program to the reuseport group `sock` belongs to."""
    program = steering_program(sock.family, processes)
    code = b"".join(struct.pack("HBBI", c, jt, jf, k & 0xFFFFFFFF) for c, jt, jf, k in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


class Workers:
    """The worker processes of a main sipd: started, restarted if they die, stopped."""

    def __init__(self, count: int, port: int, python: str = sys.executable):
        self.count, self.port, self.python = count, port, python
        self.processes: dict[int, subprocess.Popen] = {}
        self._watchers: list = []
        self._stopping = False

    def start(self) -> Workers:
        for index in range(1, self.count + 1):
            self._spawn(index)
            self._watchers.append(gevent.spawn(self._watch, index))
        return self

    def _spawn(self, index: int) -> None:
        command = [self.python, "-m", "sipd", "--worker", str(index),
                   "--port", str(self.port), "--parent", str(os.getpid())]
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        # A worker says "ready" on its stdout once its socket is in the group.
        self.processes[index] = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )

    def wait_ready(self, timeout: float = 10.0) -> int:
        """Wait until every worker's socket has joined the group; how many did.

        The main process starts serving after this: while a worker is still
        joining, a phone's REGISTERs could go to one process and then another,
        and a nonce issued by one is stale at the other.
        """
        ready = 0
        with gevent.Timeout(timeout, False):
            for process in self.processes.values():
                if process.stdout.readline().strip() == b"ready":
                    ready += 1
        if ready < len(self.processes):
            log.error("Only %d of %d registration workers started", ready, len(self.processes))
        return ready

    def _watch(self, index: int) -> None:
        while True:
            process = self.processes[index]
            code = process.wait()  # cooperative: subprocess is gevent's here
            if self._stopping:
                return
            if code == 0:
                # Stopped with SIGTERM: under systemd the whole unit gets it at
                # once, so this is the service stopping, not a crash.
                log.info("Registration worker %d (pid %d) stopped", index, process.pid)
                return
            log.error("Registration worker %d (pid %d) exited with %s; starting it again",
                      index, process.pid, code)
            gevent.sleep(RESTART_DELAY)
            if self._stopping:
                return
            self._spawn(index)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping = True
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        gevent.killall(self._watchers)
