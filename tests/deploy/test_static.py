"""Checks of the deployment files that need no machine: lint, syntax, Vagrant, docs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.machine import ROOT, packages

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(300)]

ANSIBLE = ROOT / "ansible"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed (make install / make test install it)")
    return found


def ansible_env() -> dict[str, str]:
    return dict(
        os.environ,
        ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
    )


def test_playbook_syntax():
    result = subprocess.run(
        [
            tool("ansible-playbook"),
            "--syntax-check",
            "-i",
            str(ANSIBLE / "inventory.example.yml"),
            str(ANSIBLE / "site.yml"),
        ],
        capture_output=True,
        text=True,
        env=ansible_env(),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile():
    result = subprocess.run(
        [tool("ansible-lint"), "--offline", "--nocolor", "--profile", "production", "ansible/"],
        capture_output=True,
        text=True,
        env=ansible_env(),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def role_defaults() -> dict[str, dict]:
    return {
        path.parent.parent.name: yaml.safe_load(path.read_text())
        for path in sorted((ANSIBLE / "roles").glob("*/defaults/main.yml"))
    }


def test_every_setting_is_documented_in_group_vars():
    documented = (ANSIBLE / "group_vars" / "all.yml").read_text()
    for role, defaults in role_defaults().items():
        assert {"common", "firewall", "pbx", "nginx"} >= {role}
        for name in defaults:
            assert name.startswith(f"{role}_"), f"{role}: {name} lacks the role prefix"
            assert re.search(rf"^#? ?{name}:", documented, re.M), (
                f"{name} is not in ansible/group_vars/all.yml"
            )


def test_vagrantfile_validates():
    vagrant = shutil.which("vagrant")
    assert vagrant, "vagrant is not installed (make test installs it with apt-get)"
    # Without a provider installed (none here) only the provider-independent part
    # is checked; a missing VirtualBox/libvirt is the machine's business.
    result = subprocess.run(
        [vagrant, "validate", "--ignore-provider"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, VAGRANT_CHECKPOINT_DISABLE="1"),
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Vagrantfile").read_text()
    assert 'config.vm.box = "debian/bookworm64"' in text
    # `vagrant validate` does not look at the provisioner's files: check they exist.
    for key in ("playbook", "config_file", "extra_vars"):
        match = re.search(rf'ansible\.{key} = "([^"]+)"', text)
        assert match and (ROOT / match.group(1)).exists(), f"ansible.{key} in the Vagrantfile"


def test_image_has_every_package_the_roles_install():
    # The container has no mirror: whatever the roles install must be in the image.
    wanted = set(packages())
    for name in ("nginx", "nftables", "sqlite3", "openssh-server", "python3-venv"):
        assert name in wanted
