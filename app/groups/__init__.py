"""Ring groups: the list, one group's page, and creating, editing and deleting them."""

from flask import Blueprint

bp = Blueprint("groups", __name__, url_prefix="/groups")

from app.groups import routes  # noqa: E402, F401  (registers the views on bp)
