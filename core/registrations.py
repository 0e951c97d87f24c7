"""Dropping registrations by hand (the panel's registrations page, `pbxctl reg rm`).

A binding is a row sipd reads for every call (and its qualifier re-reads every
few seconds), so deleting the row is the whole of it: no command to the
running daemon is needed, and it works while sipd is down. The phone comes
back at its next REGISTER refresh, if it is alive.
"""

from __future__ import annotations

from core import audit
from core.models import Binding, Extension, db


class RegistrationError(Exception):
    """Nothing dropped; the message says why."""


def drop(actor: str, source: str, number: str | None = None, contact: str | None = None,
         binding_id: int | None = None) -> list[Binding]:
    """Delete the bindings named (one by id, one by number and contact, or all of a
    number) with one audit row each, in one transaction; the bindings dropped."""
    with db.atomic():
        query = Binding.select(Binding, Extension).join(Extension)
        if binding_id is not None:
            query = query.where(Binding.id == binding_id)
        else:
            extension = Extension.get_or_none(Extension.number == number)
            if extension is None:
                raise RegistrationError(f"no extension {number}")
            query = query.where(Binding.extension == extension.id)
            if contact is not None:
                query = query.where(Binding.contact == contact)
        found = list(query)
        if not found:
            raise RegistrationError(_nothing(number, contact, binding_id))
        Binding.delete().where(Binding.id.in_([b.id for b in found])).execute()
        for binding in found:
            audit.record(actor, "registration.drop", binding.extension.number, source,
                         f"{binding.contact} from {binding.source_host}:{binding.source_port}"
                         f"/{binding.transport}")
    return found


def _nothing(number, contact, binding_id) -> str:
    if binding_id is not None:
        return "that registration is gone already"
    if contact is not None:
        return f"extension {number} has no registration with contact {contact}"
    return f"extension {number} is not registered"
