"""An extension's forwarding and do-not-disturb: its page, the DND switch, and how the
extension pages show them. The same core/forwarding.py operations as `pbxctl ext
forward` / `pbxctl ext dnd` and the phone's feature codes (*78, *79, *72, *73).

A save changes only the forwards whose fields changed, all in one transaction
with the audit rows: one refused destination (a number that does not exist,
the extension itself) is said at its field and nothing is changed.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import login_required

from app.auth.forms import EmptyForm
from app.extensions import bp
from app.extensions.forms import ForwardingForm
from app.extensions.routes import _audit, _extension_or_404
from app.filters import can_change, sentence, translated
from core.accounts import AccountError
from core.forwarding import clear_forward, set_dnd, set_forward
from core.groups import groups_of
from core.models import Extension, db

# (kind as core/forwarding.py names it, the Extension column, the audit log's word)
FORWARDS = (
    ("always", "forward_always", "always"),
    ("busy", "forward_busy", "busy"),
    ("no_answer", "forward_no_answer", "no answer"),
    ("unavailable", "forward_unavailable", "unavailable"),
)


class _Refused(Exception):
    """A destination was refused: the whole save is rolled back."""


@bp.app_template_global("forwards")
def forwards(extension: Extension) -> list[tuple[str, str, str, str]]:
    """(kind, destination, short label, sentence) for each forward that is on."""

    def target(text: str) -> str:
        return _("hang up") if text == "hangup" else text

    found = []
    if extension.forward_always:
        found.append(("always", extension.forward_always, _("always"),
                      _("Every call goes to %(target)s", target=target(extension.forward_always))))
    if extension.forward_busy:
        found.append(("busy", extension.forward_busy, _("busy"),
                      _("When busy, calls go to %(target)s",
                        target=target(extension.forward_busy))))
    if extension.forward_no_answer:
        seconds = extension.forward_no_answer_after
        found.append(("no_answer", extension.forward_no_answer,
                      _("no answer %(seconds)s s", seconds=seconds),
                      _("Unanswered after %(seconds)s s, calls go to %(target)s", seconds=seconds,
                        target=target(extension.forward_no_answer))))
    if extension.forward_unavailable:
        found.append(("unavailable", extension.forward_unavailable, _("unavailable"),
                      _("When no phone is registered, calls go to %(target)s",
                        target=target(extension.forward_unavailable))))
    return found


# The ring groups an extension is in, for its page.
bp.add_app_template_global(groups_of, "groups_of")


def _form_for(extension: Extension) -> ForwardingForm:
    return ForwardingForm(data={
        "dnd": extension.dnd,
        "no_answer_after": extension.forward_no_answer_after,
        **{kind: getattr(extension, column) for kind, column, _word in FORWARDS},
    })


def _apply(extension: Extension, form: ForwardingForm) -> list[str]:
    """Carry out the changed forwards; their audit words. Refusals go to their fields."""
    changes, refused = [], False
    after = form.no_answer_after.data
    for kind, column, word in FORWARDS:
        old, new = getattr(extension, column), form[kind].data or ""
        timing = kind == "no_answer" and new and after != extension.forward_no_answer_after
        if new == old and not timing:
            continue
        try:
            if new:
                set_forward(extension.number, kind, new,
                            after=after if kind == "no_answer" else None)
            else:
                clear_forward(extension.number, kind)
        except AccountError as error:
            form[kind].errors.append(sentence(translated(error.args[0])))
            refused = True
            continue
        if kind == "no_answer" and new:
            before = (f"{old} after {extension.forward_no_answer_after} s" if old else "off")
            changes.append(f"{word} {before} -> {new} after {after} s")
        else:
            changes.append(f"{word} {old or 'off'} -> {new or 'off'}")
    if refused:
        raise _Refused
    return changes


@bp.route("/<number>/forwarding", methods=["GET", "POST"])
@login_required
def forwarding(number: str):
    if not can_change():
        abort(403)
    extension = _extension_or_404(number)
    form = _form_for(extension)
    if form.validate_on_submit():
        try:
            with db.atomic():
                changes = _apply(extension, form)
                if changes:
                    _audit("forward", extension.number, ", ".join(changes))
                if form.dnd.data != extension.dnd:
                    set_dnd(extension.number, form.dnd.data)
                    _audit("dnd", extension.number, "on" if form.dnd.data else "off")
        except AccountError as error:
            form.form_errors.append(sentence(translated(error.args[0])))
        except _Refused:
            pass
        else:
            flash(_("Forwarding of %(number)s saved.", number=extension.number), "success")
            return redirect(url_for(".show", number=extension.number))
    return render_template("extensions/forwarding.html", form=form, extension=extension)


@bp.route("/<number>/dnd-on", methods=["POST"])
@login_required
def dnd_on(number: str):
    return _set_dnd(number, True)


@bp.route("/<number>/dnd-off", methods=["POST"])
@login_required
def dnd_off(number: str):
    return _set_dnd(number, False)


def _set_dnd(number: str, on: bool):
    extension = _extension_or_404(number)
    if not EmptyForm().validate_on_submit():
        return redirect(url_for(".show", number=extension.number))
    if extension.dnd != on:
        with db.atomic():
            set_dnd(extension.number, on)
            _audit("dnd", extension.number, "on" if on else "off")
    if on:
        flash(_("Do not disturb is on for %(number)s: its callers get busy, or its busy forward.",
                number=extension.number), "info")
    else:
        flash(_("Do not disturb is off for %(number)s.", number=extension.number), "success")
    return redirect(url_for(".show", number=extension.number))
