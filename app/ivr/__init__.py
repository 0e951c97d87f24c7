"""IVR menus and business hours: the lists, creating, editing and deleting them
(the same core/ivr.py operations as `pbxctl ivr ...` and `pbxctl hours ...`)."""

from flask import Blueprint

# Two prefixes, /ivr/ and /hours/: the routes name them.
bp = Blueprint("ivr", __name__)

from app.ivr import routes  # noqa: E402, F401  (registers the views on bp)
