"""The audit log: one row per change, written by the panel and by pbxctl.

`record(actor, action, target, source)` is called inside the transaction of
the change it describes, so a change and its audit row are written together
or not at all. Who: a panel user name, "cli:<unix user>" for pbxctl, or
"phone:<extension>" for a feature code dialled on a phone (sipd/apps/features.py).
From where: the client's address, or "local" (or "ssh ADDRESS") for pbxctl.
"""

from __future__ import annotations

import os
import pwd
import time

from core.models import AuditEntry


def N_(message: str) -> str:  # noqa: N802 - marks a message for the panel's catalogues
    return message


# What each action means, for the panel's audit page (and anyone reading the table);
# N_ marks each for the panel, which shows it in the admin's language (tools/catalogues.py).
ACTIONS = {
    "login": N_("logged in"),
    "logout": N_("logged out"),
    "login_failed": N_("failed login"),
    "extension.create": N_("created extension"),
    "extension.edit": N_("edited extension"),
    "extension.enable": N_("enabled extension"),
    "extension.disable": N_("disabled extension"),
    "extension.password": N_("set the password of extension"),
    "extension.digest": N_("changed the digest challenges of extension"),
    "extension.delete": N_("deleted extension"),
    "extension.forward": N_("changed the call forwarding of extension"),
    "extension.dnd": N_("changed do-not-disturb of extension"),
    "extension.record": N_("changed the call recording of extension"),
    "extension.voicemail": N_("changed the voicemail of extension"),
    "voicemail.delete": N_("deleted a voicemail message of"),
    "voicemail.greeting": N_("changed the voicemail greeting of"),
    "group.create": N_("created ring group"),
    "group.edit": N_("edited ring group"),
    "group.delete": N_("deleted ring group"),
    "ivr.create": N_("created IVR menu"),
    "ivr.edit": N_("edited IVR menu"),
    "ivr.delete": N_("deleted IVR menu"),
    "hours.create": N_("created business hours"),
    "hours.edit": N_("edited business hours"),
    "hours.delete": N_("deleted business hours"),
    "trunk.create": N_("created trunk"),
    "trunk.edit": N_("edited trunk"),
    "trunk.delete": N_("deleted trunk"),
    "inbound.create": N_("created inbound route"),
    "inbound.edit": N_("edited inbound route"),
    "inbound.delete": N_("deleted inbound route"),
    "outbound.create": N_("created outbound route"),
    "outbound.edit": N_("edited outbound route"),
    "outbound.delete": N_("deleted outbound route"),
    "extension.permit": N_("changed the outbound permission of extension"),
    "extension.outbound": N_("changed the outside-call settings of extension"),
    "extension.unblock": N_("lifted the outside-call block of extension"),
    "policy.edit": N_("changed the toll-fraud policy"),
    "admin.create": N_("created panel user"),
    "admin.password": N_("set the password of panel user"),
    "admin.disable": N_("disabled panel user"),
    "admin.enable": N_("enabled panel user"),
    "admin.rename": N_("renamed panel user"),
    "admin.role": N_("changed the role of panel user"),
    "call.hangup": N_("hung up call"),
    "ban.add": N_("banned"),
    "ban.lift": N_("lifted the ban of"),
    "registration.drop": N_("dropped a registration of"),
    "prompt.upload": N_("replaced the prompt"),
    "prompt.revert": N_("restored the built prompt"),
    "moh.upload": N_("added music on hold"),
    "moh.choose": N_("chose the music on hold"),
    "moh.delete": N_("deleted music on hold"),
}


def _fit(value: str | None, length: int) -> str:
    value = "" if value is None else str(value)
    return value if len(value) <= length else value[: length - 1] + "…"


def record(actor: str, action: str, target: str = "", source: str = "", detail: str = "",
           now: float | None = None) -> AuditEntry:
    """Write one audit row; values too long for their column are cut, never refused."""
    return AuditEntry.create(**values(actor, action, target, source, detail, now))


def values(actor: str, action: str, target: str = "", source: str = "", detail: str = "",
           now: float | None = None) -> dict:
    """The columns of one audit row, in the model's order (for a bulk insert)."""
    return {
        "created_at": time.time() if now is None else now,
        "actor": _fit(actor, 80),
        "action": _fit(action, 32),
        "target": _fit(target, 255),
        "source": _fit(source, 80),
        "detail": _fit(detail, 255),
    }


def entries(actor: str = "", action: str = "", since: float | None = None,
            until: float | None = None):
    """Audit rows, newest first: `actor` anywhere in who (any case, "cli" finds every
    pbxctl change), `action` exactly, and since <= created_at < until."""
    query = AuditEntry.select()
    if actor:
        query = query.where(AuditEntry.actor.contains(actor))
    if action:
        query = query.where(AuditEntry.action == action)
    if since is not None:
        query = query.where(AuditEntry.created_at >= since)
    if until is not None:
        query = query.where(AuditEntry.created_at < until)
    return query.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())


def cli_actor() -> str:
    """'cli:<unix user>'; under sudo, the user who ran sudo."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0 and os.environ.get("SUDO_USER"):
        user = os.environ["SUDO_USER"]
    return f"cli:{user}"


def cli_source() -> str:
    """'local', or 'ssh ADDRESS' when pbxctl runs in an SSH session."""
    client = os.environ.get("SSH_CLIENT", "").split()
    return f"ssh {client[0]}" if client else "local"
