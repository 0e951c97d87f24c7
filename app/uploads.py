"""What the panel's upload forms share (app/ivr, app/sounds, app/voicemail): a limit of
their own above the panel's 1 MB, the answer to a larger file, and the words for a
file core refused.

A form that takes a file takes up to its limit (a default, app.config overrides);
the rest of the panel keeps MAX_CONTENT_LENGTH. A larger upload is refused before
its body is read (Werkzeug's 413, raised when CSRFProtect first reads the form), and
the answer is the form's page again with the file field's error saying the limit in
MB, like any other form error, nothing changed. The body was never parsed, so what
the admin typed beside the file is not there to show again: the page is as a GET
shows it.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app, request
from flask_babel import gettext as _
from werkzeug.exceptions import Forbidden

from app.filters import can_change

MB = 1024 * 1024


def too_large(limit: int) -> str:
    size = f"{limit / MB:g}"
    return _("The file is larger than %(size)s MB, the most this form takes.", size=size)


def upload_error(error) -> str:
    """What was wrong with an uploaded file, in the admin's language (core's
    SoundError/PromptError/MusicError kind)."""
    kind = getattr(error, "kind", "")
    if kind == "empty":
        return _("The file is empty.")
    if kind == "no_sox":
        return _("The server cannot convert audio: sox is not installed (apt-get install sox).")
    return _("This is not an audio file the PBX can read: upload a WAV, FLAC, OGG or MP3 file.")


def limit_uploads(bp, limits: dict[str, tuple[str, int]], page: Callable[[str], object]) -> None:
    """On blueprint `bp`, each endpoint of `limits` (endpoint -> (app.config key, default
    bytes)) takes an admin's upload up to its limit. A larger one is answered with
    `page(error)` with status 413: the endpoint's page with `error` (too_large's words)
    as its file field's error; `page` reads request.view_args as the view does."""

    def limit_of(endpoint: str | None) -> int | None:
        key, default = limits.get(endpoint or "", (None, None))
        return current_app.config.get(key, default) if key else None

    @bp.url_value_preprocessor
    def _raise_the_upload_limit(endpoint, _values) -> None:
        # URL value preprocessors run before every before_request function, so this is
        # in place before CSRFProtect reads the body. Only an admin gets the larger
        # limit: nobody else may upload at all.
        limit = limit_of(endpoint)
        if limit is not None and request.method == "POST" and can_change():
            request.max_content_length = limit

    @bp.errorhandler(413)
    def _too_large(error):
        from app import error_page
        from app.auth import sessions

        # The 413 came before the panel's own before_request functions ran: a session
        # that has ended gets the login page here as it would anywhere.
        ended = sessions.check()
        if ended is not None:
            return ended
        if not can_change():
            return error_page(Forbidden())
        limit = limit_of(request.endpoint)
        if limit is None:  # another form of this blueprint (a bare button)
            return error_page(error)
        response = current_app.make_response(page(too_large(limit)))
        response.status_code = 413
        return response
