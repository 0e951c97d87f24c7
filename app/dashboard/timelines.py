"""The dashboard's two charts: the figures' time slots as columns, labelled on the
server's local clock, and the sentence that sums each up (also the chart's accessible name).
"""

from __future__ import annotations

import time

from flask_babel import gettext as _
from flask_babel import ngettext

from app.dashboard import figures
from app.dashboard.charts import Column, Tick, column_chart
from app.filters import format_duration
from app.i18n import local_strftime
from core import samples

# Hours a day needs on the week's chart for its label to fit at a phone's width.
FULL_DAY = 20


# -- calls per hour over the week -----------------------------------------------------


def _hour_title(slot: figures.Slot) -> str:
    start = time.localtime(slot.start)
    end = time.localtime(slot.start + figures.HOUR)
    return (f"{local_strftime('%a %d %b, %H:%M', start)}–{time.strftime('%H:%M', end)}: "
            + ngettext("%(num)s call", "%(num)s calls", slot.value or 0))


def day_ticks(starts: list[float]) -> list[Tick]:
    """A line at each local midnight, and after it the day's name and date; a day
    with less than FULL_DAY columns on the chart is labelled only where there is
    room (minor: not on a phone), one with less than 8 not at all."""
    ticks, first = [], 0
    for index in range(1, len(starts) + 1):
        if index < len(starts) and (time.localtime(starts[index])[:3]
                                    == time.localtime(starts[first])[:3]):
            continue
        if first > 0:
            ticks.append(Tick(first, "", line=True))
        if index - first >= 8:
            ticks.append(Tick(first, local_strftime("%a %d", time.localtime(starts[first])),
                              minor=index - first < FULL_DAY, align="start"))
        first = index
    return ticks


def calls_chart(hours: list[figures.Slot]):
    columns = [Column(slot.value, _hour_title(slot)) for slot in hours]
    return column_chart(columns, day_ticks([slot.start for slot in hours]),
                        label=_("Calls per hour, last 7 days.") + " " + calls_summary(hours),
                        unit=_("calls/h"), chart_id="calls-chart")


def calls_summary(hours: list[figures.Slot]) -> str:
    total = sum(slot.value or 0 for slot in hours)
    if not total:
        return _("No calls in the last 7 days.")
    busiest = max(hours, key=lambda slot: (slot.value or 0, slot.start))
    when = local_strftime("%a %d %b %H:00", time.localtime(busiest.start))
    return ngettext(
        "%(num)s call in the last 7 days; the busiest hour was %(when)s with %(most)s.",
        "%(num)s calls in the last 7 days; the busiest hour was %(when)s with %(most)s.",
        total, when=when, most=busiest.value)


# -- registrations over the day -------------------------------------------------------


def _slot_title(slot: figures.Slot, began: float | None) -> str:
    at = time.strftime("%H:%M", time.localtime(slot.start))
    if slot.value is not None:
        return at + ": " + ngettext("%(num)s extension registered",
                                    "%(num)s extensions registered", slot.value)
    if began is None or slot.start + samples.SAMPLE_EVERY <= began:
        return at + ": " + _("no sample (sampling had not begun)")
    return at + ": " + _("no sample (sipd was not running)")


def hour_ticks(starts: list[float], every: int = 3) -> list[Tick]:
    """A tick at each local hour that is a multiple of `every` (minor unless of 6),
    a line at midnight."""
    ticks = []
    for index, start in enumerate(starts):
        moment = time.localtime(start)
        if moment.tm_min == 0 and moment.tm_hour % every == 0:
            ticks.append(Tick(index, time.strftime("%H:%M", moment),
                              minor=moment.tm_hour % 6 != 0, line=moment.tm_hour == 0))
    return ticks


def registrations_chart(slots: list[figures.Slot], began: float | None):
    columns = [Column(slot.value, _slot_title(slot, began)) for slot in slots]
    return column_chart(columns, hour_ticks([slot.start for slot in slots]),
                        label=_("Registered extensions, last 24 hours.") + " "
                        + registrations_summary(slots, began),
                        unit=_("extensions"), gap=0, chart_id="registrations-chart")


def registrations_summary(slots: list[figures.Slot], began: float | None) -> str:
    known = [slot for slot in slots if slot.value is not None]
    if not known:
        return _("No samples in the last 24 hours.")
    low = min(known, key=lambda slot: (slot.value, slot.start))
    high = max(known, key=lambda slot: (slot.value, -slot.start))
    text = _("Between %(low)s (%(low_at)s) and %(high)s (%(high_at)s) extensions registered.",
             low=low.value, low_at=_clock(low.start), high=high.value, high_at=_clock(high.start))
    if began is not None and began > slots[0].start:
        text += " " + _("Sampling began at %(time)s.", time=_clock(began))
    # Slots after the first sample without one of their own: sipd was not running.
    missing = sum(1 for slot in slots if slot.value is None
                  and began is not None and slot.start + samples.SAMPLE_EVERY > began)
    if missing:
        minutes = missing * samples.SAMPLE_EVERY // 60
        text += " " + _("No samples for %(duration)s: sipd was not running.",
                        duration=_duration(minutes))
    return text


def _clock(timestamp: float) -> str:
    return time.strftime("%H:%M", time.localtime(timestamp))


def _duration(minutes: int) -> str:
    hours, minutes = divmod(minutes, 60)
    return format_duration(hours * 3600 + minutes * 60)
