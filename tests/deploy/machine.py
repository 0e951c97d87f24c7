"""A Debian 12 machine for the deployment test: debootstrap, systemd-nspawn, a veth.

The root file system is built once with debootstrap and cached outside the
clone (PBX_TEST_CACHE, default /var/cache/pbx-test), keyed by a hash of its
package list and of the build steps below. Each run boots an overlay of it
(the cache stays clean) with `systemd-nspawn --register=no --keep-unit -b` in
a network namespace of its own, joined to the host by a veth pair whose two
addresses (a /30 in 10.213.0.0/16) this test assigns itself. The container
has no route anywhere else: no default route, no forwarding, no NAT.

Network use: only the veth addresses created here, and loopback.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "ansible" / "roles"
CACHE = Path(os.environ.get("PBX_TEST_CACHE", "/var/cache/pbx-test"))
STATE = Path("/run/pbx-deploy-test")  # one record per running test machine
SUITE = "bookworm"
SUBNET_PREFIX = "10.213"  # machine n gets 10.213.n.0/30: .1 host, .2 container

# What the image has besides what the roles install: an init, SSH for Ansible,
# and the python3 and python3-apt that Ansible's modules need. The container
# reaches no mirror, so every package the roles ask for must be here already.
BASE_PACKAGES = [
    "dbus",
    "iproute2",
    "libpam-systemd",
    "netbase",
    "openssh-server",
    "python3",
    "python3-apt",
    "python3-venv",
    "systemd",
    "systemd-sysv",
]
# Bump when the build steps below change (it is part of the cache key).
BUILD_VERSION = "1"


class MachineError(AssertionError):
    """The test machine could not be built, booted or reached."""


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MachineError(f"{name} is not installed (make test installs it with apt-get)")
    return path


def run(argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run(argv, **kwargs)
    if check and result.returncode != 0:
        raise MachineError(
            f"{shlex.join(argv)} exited with {result.returncode}:\n"
            f"{result.stdout or ''}{result.stderr or ''}"
        )
    return result


# -- the cached root file system ----------------------------------------------------


def role_packages() -> list[str]:
    """Packages the roles install with apt: they must be in the image (no mirror inside)."""
    names: set[str] = set()
    defaults = yaml.safe_load((ROLES / "common" / "defaults" / "main.yml").read_text())
    names.update(defaults["common_packages"])
    for tasks in ROLES.glob("*/tasks/*.yml"):
        if tasks.name == "letsencrypt.yml":  # only with a domain and the internet
            continue
        for task in yaml.safe_load(tasks.read_text()) or []:
            apt = task.get("ansible.builtin.apt") or {}
            wanted = apt.get("name")
            if isinstance(wanted, str) and "{{" not in wanted:
                names.add(wanted)
            elif isinstance(wanted, list):
                names.update(n for n in wanted if "{{" not in n)
    return sorted(names)


def packages() -> list[str]:
    return sorted(set(BASE_PACKAGES) | set(role_packages()))


def host_mirror() -> str:
    """The Debian mirror the host's APT uses (the one this machine can reach)."""
    override = os.environ.get("PBX_TEST_MIRROR")
    if override:
        return override
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for source in sources:
        with suppress(OSError):
            text = source.read_text()
            for uri in re.findall(r"(?:URIs:|^deb)\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M):
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    return "http://deb.debian.org/debian"


def rootfs() -> Path:
    """The cached Debian root for this package list, built with debootstrap if missing."""
    wanted = packages()
    key = hashlib.sha256("\n".join([SUITE, BUILD_VERSION, *wanted]).encode()).hexdigest()[:16]
    target = CACHE / f"{SUITE}-{key}"
    if (target / ".complete").exists():
        return target
    require_tool("debootstrap")
    CACHE.mkdir(parents=True, exist_ok=True)
    with _locked(CACHE / ".lock"):
        if (target / ".complete").exists():  # built by another run meanwhile
            return target
        partial = CACHE / f".{target.name}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        debs = CACHE / "debs"
        debs.mkdir(exist_ok=True)
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(wanted)}",
                f"--cache-dir={debs}",
                SUITE,
                str(partial),
                host_mirror(),
            ]
        )
        _prepare_image(partial)
        (partial / ".complete").write_text("\n".join(wanted) + "\n")
        partial.rename(target)
    return target


def _prepare_image(root: Path) -> None:
    # A machine-id per boot of the overlay, a hostname per run (set later).
    (root / "etc" / "machine-id").write_text("")
    with suppress(FileNotFoundError):
        (root / "var" / "lib" / "dbus" / "machine-id").unlink()
    # APT's nightly jobs would only fail here (no mirror) and could hold the
    # dpkg lock while the playbook installs; the test image does without them.
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        link = root / "etc" / "systemd" / "system" / f"{timer}"
        with suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to("/dev/null")
    run(["chroot", str(root), "apt-get", "clean"])


@contextmanager
def _locked(path: Path):
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- one booted machine -----------------------------------------------------------


class Machine:
    """A booted container reachable over a veth; always `close()` it."""

    def __init__(self, image: Path):
        for tool in ("systemd-nspawn", "ip", "ssh", "ssh-keygen", "mount", "umount"):
            require_tool(tool)
        self.image = image
        self.work = Path(tempfile.mkdtemp(prefix="pbx-deploy-"))
        self.index: int | None = None
        self.nspawn: subprocess.Popen | None = None
        self.boots = 0
        self.root = self.work / "root"
        self.console = self.work / "console.log"
        self.key = self.work / "id_ed25519"
        self.known_hosts = self.work / "known_hosts"

    # names and addresses of machine n
    @property
    def name(self) -> str:
        return f"pbxdt{self.index}"

    @property
    def netns(self) -> str:
        return self.name

    @property
    def host_address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.1"

    @property
    def address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.2"

    def start(self) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        with _locked(STATE / ".lock"):
            _clean_stale()
            self.index = _free_index()
            (STATE / f"{self.index}.pid").write_text(f"{os.getpid()} {self.work}\n")
        self._network()
        self._overlay()
        self._boot()

    def _network(self) -> None:
        host_if, guest_if = f"{self.name}h", f"{self.name}c"
        run(["ip", "netns", "add", self.netns])
        run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", guest_if])
        run(["ip", "link", "set", guest_if, "netns", self.netns])
        run(["ip", "addr", "add", f"{self.host_address}/30", "dev", host_if])
        run(["ip", "link", "set", host_if, "up"])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.netns, "addr", "add", f"{self.address}/30", "dev", guest_if])
        run(["ip", "-n", self.netns, "link", "set", guest_if, "up"])

    def _overlay(self) -> None:
        for part in ("upper", "work", "root"):
            (self.work / part).mkdir()
        run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={self.image},upperdir={self.work}/upper,workdir={self.work}/work",
                str(self.root),
            ]
        )
        (self.root / "etc" / "hostname").write_text("pbx-test\n")
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "pbx-deploy-test",
                "-f",
                str(self.key),
            ]
        )
        ssh_dir = self.root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)

    def _boot(self) -> None:
        self.boots += 1
        console = open(self.console, "a")
        console.write(f"\n===== boot {self.boots} =====\n")
        console.flush()
        self.nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                "--register=no",
                "--keep-unit",
                "--boot",
                f"--directory={self.root}",
                f"--machine={self.name}",
                f"--network-namespace-path=/run/netns/{self.netns}",
                # nftables inside needs it; it acts on the container's own netns only.
                "--capability=CAP_NET_ADMIN",
                "--console=read-only",
                "--link-journal=no",
                "--resolv-conf=off",
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        console.close()
        with _locked(STATE / ".lock"):
            (STATE / f"{self.index}.pid").write_text(
                f"{os.getpid()} {self.work} {self.nspawn.pid}\n"
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait for SSH and a booted system; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise MachineError(
                    f"systemd-nspawn exited with {self.nspawn.returncode}:\n{self.console_tail()}"
                )
            with suppress(OSError), socket.create_connection((self.address, 22), timeout=1):
                break
            time.sleep(0.2)
        else:
            raise MachineError(f"no SSH on {self.address} after {timeout} s\n{self.console_tail()}")
        while time.monotonic() < deadline:
            result = self.ssh("systemctl is-system-running --wait", check=False, timeout=60)
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                self._start_master()
                if state == "degraded":
                    failed = self.ssh("systemctl --failed --no-legend", check=False).stdout
                    print(f"[deploy] container booted degraded:\n{failed}")
                return time.monotonic() - started
            time.sleep(0.5)
        raise MachineError(f"the container did not finish booting\n{self.console_tail()}")

    def console_tail(self, lines: int = 40) -> str:
        with suppress(OSError):
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def ssh_argv(self) -> list[str]:
        return [
            "ssh",
            "-i",
            str(self.key),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            # Reuse the master connection started by _start_master when it is
            # there; never become one (a master would hold our pipes open).
            "-o",
            "ControlMaster=no",
            "-o",
            f"ControlPath={self.work}/ssh-%C",
            f"root@{self.address}",
        ]

    def _start_master(self) -> None:
        argv = self.ssh_argv()
        argv[argv.index("ControlMaster=no")] = "ControlMaster=yes"
        subprocess.run(
            [*argv[:-1], "-o", "ControlPersist=600", "-N", "-f", argv[-1]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )

    def ssh(
        self, command: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess:
        return run([*self.ssh_argv(), command], check=check, timeout=timeout, input=input)

    def reboot(self) -> float:
        """`systemctl reboot` inside; nspawn exits with 133 and is started again."""
        self.ssh("systemctl reboot", check=False, timeout=30)
        try:
            code = self.nspawn.wait(timeout=90)
        except subprocess.TimeoutExpired:
            raise MachineError("the container did not go down for its reboot") from None
        if code != 133:
            raise MachineError(f"systemd-nspawn exited with {code}, not 133 (reboot)")
        self._forget_ssh_master()
        started = time.monotonic()
        self._boot()
        return time.monotonic() - started

    def _forget_ssh_master(self) -> None:
        run([*self.ssh_argv()[:-1], "-O", "exit", self.ssh_argv()[-1]], check=False, timeout=10)
        for socket_path in self.work.glob("ssh-*"):
            with suppress(OSError):
                socket_path.unlink()

    def close(self) -> None:
        """Power off and remove everything this machine made (safe to call twice)."""
        if self.index is not None:
            self._forget_ssh_master()
        if self.nspawn is not None and self.nspawn.poll() is None:
            # SIGTERM to nspawn shuts a booted container down cleanly.
            self.nspawn.terminate()
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait(timeout=30)
        if self.index is not None:
            _remove(self.index, self.work)
            with suppress(FileNotFoundError):
                (STATE / f"{self.index}.pid").unlink()
            self.index = None
        shutil.rmtree(self.work, ignore_errors=True)


def _free_index() -> int:
    used = set()
    with suppress(FileNotFoundError):
        used.update(int(p.stem) for p in STATE.glob("*.pid"))
    addresses = run(["ip", "-4", "-o", "addr", "show"]).stdout
    namespaces = run(["ip", "netns", "list"]).stdout
    for index in range(1, 250):
        if index in used or f"{SUBNET_PREFIX}.{index}." in addresses:
            continue
        if re.search(rf"^pbxdt{index}\b", namespaces, re.M):
            continue
        return index
    raise MachineError("no free test subnet in 10.213.0.0/16")


def _remove(index: int, work: Path) -> None:
    root = work / "root"
    if os.path.ismount(root):
        if run(["umount", str(root)], check=False).returncode != 0:
            run(["umount", "--lazy", str(root)], check=False)
    run(["ip", "link", "del", f"pbxdt{index}h"], check=False)
    run(["ip", "netns", "del", f"pbxdt{index}"], check=False)
    shutil.rmtree(work, ignore_errors=True)


def _clean_stale() -> None:
    """Remove the machines of earlier test runs whose process is gone."""
    for record in STATE.glob("*.pid"):
        fields = record.read_text().split()
        owner = int(fields[0]) if fields else 0
        if owner and Path(f"/proc/{owner}").exists():
            continue
        if len(fields) >= 3:
            nspawn = int(fields[2])
            with suppress(OSError):
                cmdline = Path(f"/proc/{nspawn}/cmdline").read_bytes()
                if b"systemd-nspawn" in cmdline and f"pbxdt{record.stem}".encode() in cmdline:
                    os.kill(nspawn, signal.SIGKILL)
                    time.sleep(1)
        _remove(int(record.stem), Path(fields[1]) if len(fields) > 1 else Path("/nonexistent"))
        record.unlink()
