"""The deployed machine shared by the deployment tests (one per test module run).

Setup: the cached Debian root (built with debootstrap when missing), booted with
systemd-nspawn in its own network namespace, then `ansible-playbook site.yml`
against it over SSH across the veth. Teardown removes the container, the
overlay, the veth and the namespace, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.machine import ROOT, Machine, MachineError, require_tool, rootfs

REALM = "pbx.test"
# The checkout deployed: this one, or another (PBX_TEST_SOURCE) to try other code.
SOURCE = Path(os.environ.get("PBX_TEST_SOURCE") or ROOT)
LOGS = ROOT / "build"  # playbook output and timings of the last run (git-ignored)
TIMINGS = LOGS / "deploy-timings.json"


@dataclass
class PlaybookRun:
    returncode: int
    output: str
    seconds: float
    recap: dict[str, int] = field(default_factory=dict)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def recap_of(output: str) -> dict[str, int]:
    """The numbers of the PLAY RECAP line (one host)."""
    for line in reversed(output.splitlines()):
        if "ok=" in line and "changed=" in line:
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    return {}


class Deployment:
    def __init__(self, machine: Machine):
        self.machine = machine
        self.inventory = machine.work / "inventory.yml"
        self.runs: list[PlaybookRun] = []
        self.timings: dict[str, float] = {}

    def write_inventory(self) -> None:
        host = {
            "ansible_host": self.machine.address,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.machine.key),
            "ansible_ssh_common_args": (
                f"-o StrictHostKeyChecking=no -o UserKnownHostsFile={self.machine.known_hosts}"
            ),
            "ansible_python_interpreter": "/usr/bin/python3",
            # The container reaches no mirror; the image has every package.
            "common_apt_update_cache": False,
            "pbx_realm": REALM,
            "pbx_public_address": self.machine.address,
        }
        host["pbx_source_dir"] = str(SOURCE)
        inventory = {"all": {"children": {"pbx": {"hosts": {"pbx-test": host}}}}}
        self.inventory.write_text(json.dumps(inventory, indent=2))  # JSON is YAML

    def playbook(self, name: str, extra_vars: dict | None = None) -> PlaybookRun:
        binary = Path(sys.executable).parent / "ansible-playbook"
        if not binary.exists():
            raise MachineError(f"{binary} is missing (make install installs ansible-core)")
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(ROOT / "ansible" / "ansible.cfg"),
            ANSIBLE_HOST_KEY_CHECKING="False",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.machine.work / "ansible-cp"),
            ANSIBLE_LOCAL_TEMP=str(self.machine.work / "ansible-tmp"),
            PATH=f"{binary.parent}:{os.environ.get('PATH', '')}",
        )
        started = time.monotonic()
        result = subprocess.run(
            [str(binary), "-i", str(self.inventory), str(ROOT / "ansible" / "site.yml")]
            + (["--extra-vars", json.dumps(extra_vars)] if extra_vars else []),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        seconds = time.monotonic() - started
        output = result.stdout + result.stderr
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"deploy-playbook-{name}.log").write_text(output)
        run = PlaybookRun(result.returncode, output, seconds, recap_of(result.stdout))
        self.runs.append(run)
        self.timings[f"playbook_{name}_s"] = round(seconds, 1)
        print(f"[deploy] playbook {name}: {seconds:.1f} s, recap {run.recap}")
        return run

    def pbxctl(self, arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.machine.ssh(f"pbxctl {arguments}", check=check)

    def journal(self, lines: int = 150) -> str:
        """The PBX services' recent journal, for a failure message."""
        result = self.machine.ssh(
            f"journalctl --no-pager -o short-iso -n {lines} "
            "-u pbx-sipd -u pbx-panel -u nginx -u nftables",
            check=False,
        )
        return result.stdout + result.stderr

    def save_timings(self) -> None:
        TIMINGS.parent.mkdir(parents=True, exist_ok=True)
        TIMINGS.write_text(json.dumps(self.timings, indent=2) + "\n")


@pytest.fixture(scope="module")
def deployment():
    """A Debian 12 container with site.yml applied; removed after the module."""
    for tool in ("debootstrap", "systemd-nspawn", "ssh", "ip"):
        require_tool(tool)
    if os.geteuid() != 0:
        raise MachineError("the deployment test needs root (debootstrap, netns, nspawn)")
    started = time.monotonic()
    image = rootfs()
    image_seconds = time.monotonic() - started
    machine = Machine(image)
    deployment = Deployment(machine)
    deployment.timings["rootfs_s"] = round(image_seconds, 1)
    try:
        boot_started = time.monotonic()
        machine.start()
        deployment.timings["boot_s"] = round(time.monotonic() - boot_started, 1)
        deployment.write_inventory()
        first = deployment.playbook("first")
        if first.returncode != 0:
            raise MachineError(
                f"site.yml failed (exit {first.returncode}):\n{first.tail(60)}\n"
                f"--- journal of the container ---\n{deployment.journal()}"
            )
        deployment.timings["deploy_total_s"] = round(time.monotonic() - started, 1)
        yield deployment
    finally:
        deployment.timings["module_total_s"] = round(time.monotonic() - started, 1)
        deployment.save_timings()
        print(f"[deploy] timings: {deployment.timings}")
        machine.close()
