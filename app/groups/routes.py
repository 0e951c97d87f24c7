"""Ring groups in the panel: the same core/groups.py operations as `pbxctl group ...`.

Each change runs in one transaction with its audit row; an AccountError from
core (a member that does not exist, a number an extension has) is the form's
error, in the admin's language. Viewers see the list and the groups, and get
403 on the pages that would change them.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from peewee import fn

from app.auth.forms import EmptyForm
from app.filters import can_change, sentence, translated
from app.groups import bp
from app.groups.forms import EditGroupForm, GroupForm
from app.names import leading_to, names_of
from core import audit
from core.accounts import AccountError
from core.groups import create_group, delete_group, update_group
from core.models import Extension, RingGroup, RingGroupMember, db

log = logging.getLogger("panel")


def _group_or_404(number: str) -> RingGroup:
    group = RingGroup.by_number(number)
    if group is None:
        abort(404, description=_("There is no ring group %(number)s.", number=number))
    return group


def _admins_only() -> None:
    # POSTs are refused to viewers panel-wide (app/__init__.py); a form they could
    # only fill in to be refused is not shown either.
    if not can_change():
        abort(403)


def _audit(action: str, number: str, detail: str = "") -> None:
    """Call inside the change's transaction: the row and the change go together."""
    audit.record(current_user.username, f"group.{action}", number, request.remote_addr, detail)
    log.info("Panel: %s: group.%s %s%s", current_user.username, action, number,
             f" ({detail})" if detail else "")


def members_by_group(group_ids: list[int]) -> dict[int, list[str]]:
    """{group id: its members' numbers in position order}, in one query."""
    members: dict[int, list[str]] = defaultdict(list)
    if not group_ids:
        return members
    query = (RingGroupMember.select(RingGroupMember.group, Extension.number)
             .join(Extension)
             .where(RingGroupMember.group.in_(group_ids))
             .order_by(RingGroupMember.group, RingGroupMember.position))
    for member in query:
        members[member.group_id].append(member.extension.number)
    return members


def _settings_of(group: RingGroup, members: list[str]) -> dict:
    return {"name": group.name, "strategy": group.strategy, "ring_time": group.ring_time,
            "member_time": group.member_time, "fallback": group.fallback, "members": members}


def _described(values: dict) -> str:
    """A group's settings as the audit log keeps them."""
    return ", ".join(filter(None, [
        f"name {values['name']!r}" if values["name"] else "",
        values["strategy"],
        f"members {','.join(values['members']) or 'none'}",
        f"ring {values['ring_time']} s",
        f"member {values['member_time']} s" if values["strategy"] == "hunt" else "",
        f"fallback {values['fallback']}" if values["fallback"] else "",
    ]))


def _changes(before: dict, after: dict) -> str:
    words = {"name": "name", "strategy": "strategy", "ring_time": "ring time",
             "member_time": "member time", "fallback": "fallback", "members": "members"}
    changes = []
    for key, word in words.items():
        old, new = before[key], after[key]
        if old != new:
            if key == "members":
                old, new = ",".join(old) or "none", ",".join(new) or "none"
            elif key in {"name", "fallback"}:
                old, new = repr(old), repr(new)
            changes.append(f"{word} {old} -> {new}")
    return ", ".join(changes) or "no change"


def _values(form: GroupForm) -> dict:
    return {"name": form.name.data or "", "strategy": form.strategy.data,
            "ring_time": form.ring_time.data, "member_time": form.member_time.data,
            "fallback": form.fallback.data or "", "members": form.ordered_members()}


def _core_error(form: GroupForm, error: AccountError) -> None:
    form.form_errors.append(sentence(translated(error.args[0])))


@bp.route("/")
@login_required
def index():
    groups = list(RingGroup.select().order_by(fn.LENGTH(RingGroup.number), RingGroup.number))
    members = members_by_group([group.id for group in groups])
    numbers = [number for group in groups for number in (*members[group.id], group.fallback)]
    return render_template("groups/index.html", groups=groups, members=members,
                           names=names_of(numbers))


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():
    _admins_only()
    form = GroupForm()
    if request.method == "GET":
        form.fill_members([])
    elif form.more.data:
        form.add_rows()
    elif form.validate_on_submit():
        values = _values(form)
        try:
            with db.atomic():
                create_group(form.number.data, **values)
                _audit("create", form.number.data, _described(values))
        except AccountError as error:
            _core_error(form, error)
        else:
            flash(_("Ring group %(number)s created.", number=form.number.data), "success")
            return redirect(url_for(".show", number=form.number.data))
    return render_template("groups/form.html", form=form, group=None)


@bp.route("/<number>")
@login_required
def show(number: str):
    group = _group_or_404(number)
    members = members_by_group([group.id])[group.id]
    extensions = {e.number: e for e in Extension.select().where(Extension.number.in_(members))}
    return render_template("groups/show.html", group=group, members=members,
                           extensions=extensions, names=names_of([*members, group.fallback]))


@bp.route("/<number>/edit", methods=["GET", "POST"])
@login_required
def edit(number: str):
    _admins_only()
    group = _group_or_404(number)
    before = _settings_of(group, members_by_group([group.id])[group.id])
    # Not obj=group: its `members` backref would fill the rows with model objects.
    form = EditGroupForm(data={key: value for key, value in before.items() if key != "members"})
    if request.method == "GET":
        form.fill_members(before["members"])
    elif form.more.data:
        form.add_rows()
    elif form.validate_on_submit():
        values = _values(form)
        try:
            with db.atomic():
                update_group(group.number, **values)
                _audit("edit", group.number, _changes(before, values))
        except AccountError as error:
            _core_error(form, error)
        else:
            flash(_("Ring group %(number)s saved.", number=group.number), "success")
            return redirect(url_for(".show", number=group.number))
    return render_template("groups/form.html", form=form, group=group)


@bp.route("/<number>/delete", methods=["GET", "POST"])
@login_required
def delete(number: str):
    _admins_only()
    group = _group_or_404(number)
    form = EmptyForm()
    if form.validate_on_submit():
        with db.atomic():
            cleared = delete_group(group.number)
            _audit("delete", group.number, "; ".join(filter(None, [
                f"name {group.name!r}" if group.name else "",
                f"cleared {', '.join(cleared)}" if cleared else ""])))
        flash(_("Ring group %(number)s deleted.", number=group.number), "success")
        if cleared:
            flash(_("Turned off as well: %(what)s.",
                    what=", ".join(translated(text) for text in cleared)), "info")
        return redirect(url_for(".index"))
    forwarders, fallbacks = leading_to(group.number)
    return render_template("groups/delete.html", form=form, group=group,
                           forwarders=forwarders, fallbacks=fallbacks)
