"""Trunks and outside calls in the panel: the same core/trunks.py and core/outbound.py
operations as `pbxctl trunk|inbound|outbound|policy|fraud ...`.

Each change runs in one transaction with its audit row; an AccountError from core is
the form's error, in the admin's language. A trunk's password is never sent back to
a browser: the form shows only whether one is set. Viewers see the lists and get 403
on the pages that would change them.
"""

from __future__ import annotations

import logging

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from app.auth.forms import EmptyForm
from app.filters import can_change, sentence, translated
from app.names import names_of
from app.trunks import bp
from app.trunks.forms import (
    EditTrunkForm,
    ExtensionOutboundForm,
    InboundForm,
    OutboundForm,
    PolicyForm,
    TrunkForm,
)
from core import audit, outbound, trunks
from core.accounts import AccountError
from core.models import Extension, InboundRoute, OutboundRoute, Trunk, TrunkState, db

log = logging.getLogger("panel")


def _admins_only() -> None:
    if not can_change():
        abort(403)


def _audit(action: str, target: str, detail: str = "") -> None:
    """Call inside the change's transaction: the row and the change go together."""
    audit.record(current_user.username, action, target, request.remote_addr, detail)
    log.info("Panel: %s: %s %s%s", current_user.username, action, target,
             f" ({detail})" if detail else "")


def _core_error(form, error: AccountError) -> None:
    form.form_errors.append(sentence(translated(error.args[0])))


def _trunk_names() -> list[str]:
    return [t.name for t in trunks.list_trunks()]


def _tell_sipd() -> None:
    why = trunks.notify_sipd(current_app.config["PBX_SETTINGS"])
    if why:
        log.info("Panel: trunks changed, %s", why)


def states() -> dict[int, TrunkState]:
    """{trunk id: what sipd last knew of it}, in one query (also for the dashboard)."""
    return {s.trunk_id: s for s in TrunkState.select()}


# -- trunks ---------------------------------------------------------------------------------


@bp.route("/")
@login_required
def index():
    return render_template("trunks/index.html", trunks=trunks.list_trunks(), states=states(),
                           orphans=outbound.routes_without_trunks(), toggle=EmptyForm())


def _trunk_or_404(name: str) -> Trunk:
    trunk = Trunk.get_or_none(Trunk.name == name)
    if trunk is None:
        abort(404, description=_("There is no trunk %(name)s.", name=name))
    return trunk


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():
    _admins_only()
    form = TrunkForm()
    if form.validate_on_submit():
        try:
            with db.atomic():
                trunk = trunks.create_trunk(form.name.data, form.host.data, **form.values())
                _audit("trunk.create", trunk.name, trunks.detail(trunk))
        except AccountError as error:
            _core_error(form, error)
        else:
            _tell_sipd()
            flash(_("Trunk %(name)s created.", name=trunk.name), "success")
            return redirect(url_for(".index"))
    return render_template("trunks/form.html", form=form, trunk=None)


@bp.route("/<name>/edit", methods=["GET", "POST"])
@login_required
def edit(name: str):
    _admins_only()
    trunk = _trunk_or_404(name)
    form = EditTrunkForm(obj=trunk)
    if request.method == "GET":
        form.host.data = trunks.describe(trunk)["host"]
        form.password.data = ""
    if form.validate_on_submit():
        values = form.values()
        if form.clear_password.data and not form.password.data:
            values["password"] = ""
        try:
            with db.atomic():
                before = trunks.detail(trunk)
                changed = trunks.update_trunk(trunk.name, host=form.host.data, **values)
                _audit("trunk.edit", trunk.name, f"{before} -> {trunks.detail(changed)}")
        except AccountError as error:
            _core_error(form, error)
        else:
            _tell_sipd()
            flash(_("Trunk %(name)s saved.", name=trunk.name), "success")
            return redirect(url_for(".index"))
    return render_template("trunks/form.html", form=form, trunk=trunk)


@bp.route("/<name>/disable", methods=["POST"])
@login_required
def disable(name: str):
    return _set_enabled(name, False)


@bp.route("/<name>/enable", methods=["POST"])
@login_required
def enable(name: str):
    return _set_enabled(name, True)


def _set_enabled(name: str, enabled: bool):
    """A disabled trunk is kept but not used: sipd removes its registration, routes skip
    it, and its provider's calls are challenged like a stranger's (sipd/trunks/)."""
    _admins_only()
    trunk = _trunk_or_404(name)
    if EmptyForm().validate_on_submit() and trunk.enabled != enabled:
        with db.atomic():
            trunks.update_trunk(trunk.name, enabled=enabled)
            _audit("trunk.enable" if enabled else "trunk.disable", trunk.name)
        _tell_sipd()
        if enabled:
            flash(_("Trunk %(name)s is enabled.", name=trunk.name), "success")
        else:
            flash(_("Trunk %(name)s is disabled: no registration, no calls out or in"
                    " through it.", name=trunk.name), "info")
    return redirect(url_for(".index"))


@bp.route("/<name>/delete", methods=["GET", "POST"])
@login_required
def delete(name: str):
    _admins_only()
    trunk = _trunk_or_404(name)
    form = EmptyForm()
    if form.validate_on_submit():
        with db.atomic():
            trunks.delete_trunk(trunk.name)
            _audit("trunk.delete", trunk.name)
            orphans = outbound.routes_without_trunks()
        _tell_sipd()
        flash(_("Trunk %(name)s deleted.", name=trunk.name), "success")
        if orphans:
            flash(_("These outbound routes have no trunk left and take no call: %(names)s.",
                    names=", ".join(orphans)), "info")
        return redirect(url_for(".index"))
    used_by = [r.name for r in outbound.list_outbound() if trunk.name in r.trunk_names()]
    dids = [r.did for r in InboundRoute.select().where(InboundRoute.trunk == trunk.id)]
    return render_template("trunks/delete.html", form=form, what="trunk", name=trunk.name,
                           used_by=used_by, dids=dids, cancel=url_for(".index"))


# -- inbound routes -------------------------------------------------------------------------


@bp.route("/inbound/")
@login_required
def inbound():
    routes = outbound.list_inbound()
    return render_template("trunks/inbound.html", routes=routes,
                           names=names_of([r.destination for r in routes]))


def _inbound_choices(form: InboundForm) -> None:
    form.trunk.choices = [("", _("Any trunk")), *[(n, n) for n in _trunk_names()]]


@bp.route("/inbound/new", methods=["GET", "POST"])
@login_required
def inbound_create():
    _admins_only()
    form = InboundForm()
    _inbound_choices(form)
    if form.validate_on_submit():
        try:
            with db.atomic():
                route = outbound.create_inbound(form.did.data, form.destination.data,
                                                form.trunk.data or None,
                                                record=form.record.data)
                _audit("inbound.create", route.did, outbound.describe_inbound(route))
        except AccountError as error:
            _core_error(form, error)
        else:
            flash(_("Inbound route for %(did)s saved.", did=route.did), "success")
            return redirect(url_for(".inbound"))
    return render_template("trunks/inbound_form.html", form=form, route=None)


def _inbound_or_404(route_id: int) -> InboundRoute:
    route = InboundRoute.get_or_none(InboundRoute.id == route_id)
    if route is None:
        abort(404, description=_("There is no such inbound route."))
    return route


@bp.route("/inbound/<int:route_id>/edit", methods=["GET", "POST"])
@login_required
def inbound_edit(route_id: int):
    _admins_only()
    route = _inbound_or_404(route_id)
    form = InboundForm(data={"did": route.did, "destination": route.destination,
                             "trunk": route.trunk.name if route.trunk_id else "",
                             "record": route.record})
    _inbound_choices(form)
    if form.validate_on_submit():
        try:
            with db.atomic():
                before = outbound.describe_inbound(route)
                changed = outbound.update_inbound(route.id, form.did.data, form.destination.data,
                                                  form.trunk.data or None,
                                                  record=form.record.data)
                _audit("inbound.edit", changed.did,
                       f"{before} -> {outbound.describe_inbound(changed)}")
        except AccountError as error:
            _core_error(form, error)
        else:
            flash(_("Inbound route for %(did)s saved.", did=changed.did), "success")
            return redirect(url_for(".inbound"))
    return render_template("trunks/inbound_form.html", form=form, route=route)


@bp.route("/inbound/<int:route_id>/delete", methods=["GET", "POST"])
@login_required
def inbound_delete(route_id: int):
    _admins_only()
    route = _inbound_or_404(route_id)
    form = EmptyForm()
    if form.validate_on_submit():
        with db.atomic():
            words = outbound.describe_inbound(route)
            outbound.delete_inbound(route.id)
            _audit("inbound.delete", route.did, words)
        flash(_("Inbound route for %(did)s deleted.", did=route.did), "success")
        return redirect(url_for(".inbound"))
    return render_template("trunks/delete.html", form=form, what="inbound", name=route.did,
                           route=route, cancel=url_for(".inbound"))


# -- outbound routes ------------------------------------------------------------------------


@bp.route("/outbound/")
@login_required
def outbound_routes():
    return render_template("trunks/outbound.html", routes=outbound.list_outbound())


def _outbound_or_404(name: str) -> OutboundRoute:
    route = OutboundRoute.get_or_none(OutboundRoute.name == name)
    if route is None:
        abort(404, description=_("There is no outbound route %(name)s.", name=name))
    return route


def _outbound_values(form: OutboundForm) -> dict:
    return {"trunks": form.ordered_trunks(), "patterns": form.patterns.data or "",
            "caller_id": form.caller_id.data or "", "emergency": form.emergency.data,
            "record": form.record.data, "position": form.position.data}


@bp.route("/outbound/new", methods=["GET", "POST"])
@login_required
def outbound_create():
    _admins_only()
    names = _trunk_names()
    form = OutboundForm()
    if request.method == "GET":
        form.fill_trunks([], names)
    form.set_trunk_choices(names)
    if request.method == "POST" and form.validate_on_submit():
        try:
            with db.atomic():
                route = outbound.create_outbound(form.name.data, **_outbound_values(form))
                _audit("outbound.create", route.name, outbound.describe_outbound(route))
        except AccountError as error:
            _core_error(form, error)
        else:
            flash(_("Outbound route %(name)s created.", name=route.name), "success")
            return redirect(url_for(".outbound_routes"))
    return render_template("trunks/outbound_form.html", form=form, route=None,
                           no_trunks=not names)


@bp.route("/outbound/<name>/edit", methods=["GET", "POST"])
@login_required
def outbound_edit(name: str):
    _admins_only()
    route = _outbound_or_404(name)
    names = _trunk_names()
    form = OutboundForm(data={"name": route.name, "patterns": route.patterns,
                              "caller_id": route.caller_id, "emergency": route.emergency,
                              "record": route.record, "position": route.position + 1})
    if request.method == "GET":
        form.fill_trunks(route.trunk_names(), names)
    form.set_trunk_choices(names)
    if request.method == "POST" and form.validate_on_submit():
        values = _outbound_values(form)
        try:
            with db.atomic():
                before = outbound.describe_outbound(route)
                changed = outbound.update_outbound(route.name, new_name=form.name.data,
                                                   **values)
                _audit("outbound.edit", changed.name,
                       f"{before} -> {outbound.describe_outbound(changed)}")
        except AccountError as error:
            _core_error(form, error)
        else:
            flash(_("Outbound route %(name)s saved.", name=changed.name), "success")
            return redirect(url_for(".outbound_routes"))
    return render_template("trunks/outbound_form.html", form=form, route=route,
                           no_trunks=not names)


@bp.route("/outbound/<name>/delete", methods=["GET", "POST"])
@login_required
def outbound_delete(name: str):
    _admins_only()
    route = _outbound_or_404(name)
    form = EmptyForm()
    if form.validate_on_submit():
        with db.atomic():
            outbound.delete_outbound(route.name)
            _audit("outbound.delete", route.name, outbound.describe_outbound(route))
        flash(_("Outbound route %(name)s deleted.", name=route.name), "success")
        return redirect(url_for(".outbound_routes"))
    return render_template("trunks/delete.html", form=form, what="outbound", name=route.name,
                           cancel=url_for(".outbound_routes"))


# -- toll fraud -----------------------------------------------------------------------------


@bp.route("/fraud")
@login_required
def fraud():
    events = outbound.fraud_events(limit=200)
    return render_template("trunks/fraud.html", events=events,
                           blocked=outbound.blocked_extensions(), policy=outbound.get_policy(),
                           names=names_of([e.extension for e in events]), form=EmptyForm())


@bp.route("/fraud/unblock/<number>", methods=["POST"])
@login_required
def unblock(number: str):
    _admins_only()
    if EmptyForm().validate_on_submit():
        try:
            with db.atomic():
                extension, reason = outbound.unblock(number)
                _audit("extension.unblock", extension.number, f"was: {reason}" if reason else "")
        except AccountError as error:
            flash(sentence(translated(error.args[0])), "error")
        else:
            flash(_("Extension %(number)s may call out again.", number=extension.number),
                  "success")
    return redirect(request.form.get("back") == "extension"
                    and url_for(".extension", number=number) or url_for(".fraud"))


@bp.route("/policy", methods=["GET", "POST"])
@login_required
def policy():
    _admins_only()
    current = outbound.get_policy()
    form = PolicyForm(obj=current)
    if request.method == "GET":
        form.allowed_countries.data = ", ".join(
            c for c in current.allowed_countries.split(",") if c)
    if form.validate_on_submit():
        try:
            with db.atomic():
                before = outbound.describe_policy(current)
                changed = outbound.set_policy(
                    home_country=form.home_country.data or "",
                    allowed_countries=form.allowed_countries.data or "",
                    **{key: getattr(form, key).data for key in outbound.LIMITS})
                _audit("policy.edit", "outbound",
                       f"{before} -> {outbound.describe_policy(changed)}")
        except AccountError as error:
            _core_error(form, error)
        else:
            flash(_("Toll-fraud policy saved."), "success")
            return redirect(url_for(".fraud"))
    return render_template("trunks/policy.html", form=form)


# -- an extension's outside calls -----------------------------------------------------------


@bp.route("/extension/<number>", methods=["GET", "POST"])
@login_required
def extension(number: str):
    found = Extension.by_number(number)
    if found is None:
        abort(404, description=_("There is no extension %(number)s.", number=number))
    form = ExtensionOutboundForm(data={
        "permission": found.outbound_permission, "caller_id": found.outbound_caller_id,
        "max_calls": found.outbound_max_calls, "calls_per_hour": found.outbound_calls_per_hour,
        "minutes_per_hour": found.outbound_minutes_per_hour})
    if request.method == "POST":
        _admins_only()
        if form.validate_on_submit():
            limits = {key: "" if getattr(form, key).data is None else getattr(form, key).data
                      for key in outbound.EXTENSION_LIMITS}
            try:
                with db.atomic():
                    before = outbound.describe_extension(found)
                    if form.permission.data != found.outbound_permission:
                        outbound.set_permission(found.number, form.permission.data)
                        _audit("extension.permit", found.number, form.permission.data)
                    changed = outbound.set_extension_outbound(
                        found.number, caller_id=form.caller_id.data or "", **limits)
                    after = outbound.describe_extension(changed)
                    if after.split(", ", 1)[1:] != before.split(", ", 1)[1:]:
                        _audit("extension.outbound", found.number, f"{before} -> {after}")
            except AccountError as error:
                _core_error(form, error)
            else:
                flash(_("Outside calls of %(number)s saved.", number=found.number), "success")
                return redirect(url_for(".extension", number=found.number))
    return render_template("trunks/extension.html", form=form, extension=found,
                           policy=outbound.get_policy(), unblock_form=EmptyForm())
