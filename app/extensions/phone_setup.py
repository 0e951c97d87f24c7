"""The phone-settings part of the page shown once after a password is made, and the
one-time URL a Linphone QR code points at (app/extensions/provisioning.py)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Response, abort, current_app, request, url_for
from flask_babel import gettext as _

from app.extensions import bp
from app.extensions.provisioning import (
    PROVISION_TTL,
    Account,
    OneTimeFiles,
    data_url,
    linphone_xml,
    microsip_ini,
    qr_svg,
)
from app.filters import translated
from core import audit, phone_settings
from core.models import Extension

log = logging.getLogger("panel")


def _one_time_files() -> OneTimeFiles:
    return current_app.extensions.setdefault("pbx.provisioning", OneTimeFiles())


def fields(account: Account) -> list[tuple[str, str, bool]]:
    """The fields of a softphone's account dialog, as (label, value, secret).

    MicroSIP's own English names in brackets, in every language: those are the
    words on the admin's screen in MicroSIP's account dialog.
    """
    phones = account.phones
    return [
        (_("SIP server"), phones.server, False),
        (_("Domain"), phones.host, False),
        (_("Port"), str(phones.port), False),
        *([(_("TLS port"), str(phones.tls_port), False)] if phones.tls_port else []),
        (_("Transport"), translated(phones.transports), False),
        (_("User name (Username)"), account.number, False),
        (_("Auth user (Login)"), account.number, False),
        (_("Password"), account.password, True),
        (_("Display name"), account.display_name, False),
    ]


def context(extension: Extension, password: str) -> dict:
    """What password_shown.html shows of the phone's settings, made for this response only."""
    phones = phone_settings.current(current_app.config["PBX_SETTINGS"])
    account = Account(extension.number, extension.name, password, phones)
    token = _one_time_files().put(extension.number, linphone_xml(account))
    url = url_for("extensions.provision", token=token, _external=True,
                  _scheme="https" if current_app.config["PBX_SETTINGS"].server else None)
    return {
        "phones": phones,
        "fields": fields(account),
        "linphone_url": url,
        "linphone_qr": qr_svg(url, _("QR code for Linphone")),
        "linphone_minutes": int(PROVISION_TTL // 60),
        "linphone_warning": _link_warning(url),
        "microsip_file": data_url(microsip_ini(account)),
    }


def _link_warning(url: str) -> str | None:
    """The phone opens the link itself: at the address the admin opened the panel with."""
    host = urlsplit(url).hostname or ""
    if not phone_settings.warnings_for(host, dns_reminder=False):
        return None
    return _("The phone opens this link itself, at %(host)s, the address this panel was opened"
             " with, which other machines may not reach (a loopback address, or a name they may"
             " not resolve). Open the panel at an address the phone can reach and set the password"
             " again for a code that works there.", host=host)


@bp.route("/provision/<token>")
def provision(token: str):
    """Linphone's remote-provisioning file, once: the phone has no login, the token is
    the secret (random, single use, PROVISION_TTL s)."""
    found = _one_time_files().take(token)
    if found is None:
        abort(404, description=_("This provisioning link was used already or has expired."))
    number, body = found
    audit.record("provisioning", "extension.provisioned", number, request.remote_addr,
                 "Linphone configuration fetched")
    log.info("Panel: Linphone configuration of %s fetched from %s", number, request.remote_addr)
    response = Response(body, mimetype="application/xml")
    response.headers["Cache-Control"] = "no-store"
    return response
