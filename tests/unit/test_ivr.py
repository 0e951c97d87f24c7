"""core/ivr.py, the menus and business hours pbxctl and the panel share, on a real
SQLite database and a real sox: what is accepted, what is refused (one line, and
nothing written), and deleting what something still leads to."""

from __future__ import annotations

import datetime as dt

import pytest

from core import accounts, groups, ivr
from core.accounts import AccountError
from core.config import load_settings
from core.models import Ivr, IvrOption, Schedule
from tests.unit.test_prompts_sounds import write_tone

REALM = "pbx.test"


@pytest.fixture
def settings(tmp_path):
    return load_settings({"PBX_DB": str(tmp_path / "pbx.db"), "PBX_REALM": REALM,
                          "PBX_SOUNDS_DIR": str(tmp_path / "sounds")})


@pytest.fixture
def office(database, settings, tmp_path):
    for number in ("1001", "1002"):
        accounts.create_extension(number, REALM, name=f"Desk {number}", generate=True)
    source = tmp_path / "menu.wav"
    write_tone(source, seconds=0.3)
    return settings, (source.read_bytes(), "menu.wav")


def snapshot():
    return (list(Ivr.select().tuples()), list(IvrOption.select().tuples()),
            list(Schedule.select().tuples()))


def refused(function, *args, **kwargs) -> str:
    before = snapshot()
    with pytest.raises(AccountError) as caught:
        function(*args, **kwargs)
    assert snapshot() == before
    return str(caught.value)


def test_a_menu_is_made_with_its_prompt_converted_and_its_keys(office):
    settings, prompt = office
    menu = ivr.create_ivr("Main", prompt, {"1": "1001", "2": "voicemail:1002"},
                          number="700", on_timeout="1001", settings=settings)
    assert menu.name == "main" and menu.number == "700" and menu.language == "en"
    assert ivr.options_of(menu) == {"1": "1001", "2": "voicemail:1002"}
    assert ivr.prompt_file(menu, settings).read_bytes()[:4] == b"RIFF"
    assert (menu.timeout, menu.repeats, menu.on_timeout, menu.on_invalid) == (5, 2, "1001", "")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "a b"}, "a name is 1 to 32 letters, digits, - or _, got 'a b'"),
    ({"options": {"x": "1001"}}, "a menu key is one of 0-9, * or #, got 'x'"),
    ({"options": {"1": "1009"}}, "1009 is no extension or ring group, and no outbound route takes it"),
    ({"options": {"1": "ivr:nope"}}, "there is no IVR menu nope"),
    ({"options": {}}, "a menu needs at least one option (KEY=DESTINATION)"),
    ({"number": "1001"}, "1001 is an extension"),
    ({"timeout": "0"}, "the menu timeout must be 1 to 60 seconds, got '0'"),
    ({"language": "de"}, "prompt language must be one of en, uz, ru"),
    ({"on_invalid": "hours:x"}, "there are no business hours x"),
    ({"prompt": (b"hello, not audio", "menu.wav")}, "the menu prompt is refused: menu.wav:"),
])
def test_a_bad_menu_is_refused_and_nothing_is_written(office, kwargs, message):
    settings, prompt = office
    args = {"name": "main", "prompt": prompt, "options": {"1": "1001"}, **kwargs}
    name, prompt, options = args.pop("name"), args.pop("prompt"), args.pop("options")
    assert refused(ivr.create_ivr, name, prompt, options, settings=settings, **args).startswith(
        message)
    assert not (ivr.Path(settings.sounds_dir) / "ivr" / "main.wav").exists()


def test_options_from_the_command_line():
    assert ivr.parse_options(["1=1001", " # = hangup "]) == {"1": "1001", "#": "hangup"}
    with pytest.raises(AccountError, match="KEY=DESTINATION"):
        ivr.parse_options(["1:1001"])
    with pytest.raises(AccountError, match="key 1 is given twice"):
        ivr.parse_options(["1=1001", "1=1002"])


def test_a_number_is_one_thing_only(office):
    settings, prompt = office
    ivr.create_ivr("main", prompt, {"1": "1001"}, number="700", settings=settings)
    assert refused(ivr.create_schedule, "day", ["mon-fri 09:00-18:00"], "ivr:main", "1002",
                   number="700") == "700 is the number of ivr:main"
    assert refused(ivr.create_ivr, "main", prompt, {"1": "1001"}, settings=settings) == (
        "IVR menu main already exists")


def test_business_hours_judge_the_time_in_their_zone(office):
    schedule = ivr.create_schedule("day", ["Mon-Fri 09:00-18:00"], "1001", "voicemail:1002",
                                   holidays=["2026-12-04"], timezone="Asia/Tashkent")
    assert ivr.rules_of(schedule) == ["mon-fri 09:00-18:00"]
    tashkent = dt.timezone(dt.timedelta(hours=5))
    thursday_10 = dt.datetime(2026, 12, 3, 10, 0, tzinfo=tashkent).timestamp()
    friday_10 = dt.datetime(2026, 12, 4, 10, 0, tzinfo=tashkent).timestamp()
    thursday_19 = dt.datetime(2026, 12, 3, 19, 0, tzinfo=tashkent).timestamp()
    assert ivr.is_open(schedule, thursday_10)
    assert not ivr.is_open(schedule, friday_10)  # the holiday
    assert not ivr.is_open(schedule, thursday_19)


@pytest.mark.parametrize(("args", "message"), [
    ((["mon-fri 9-18"],), "'mon-fri 9-18': '9' is not a time HH:MM"),
    (([],), "business hours need at least one opening rule"),
    ((["daily 00:00-24:00"], "hours:day"), "business hours day cannot lead to themselves"),
    ((["daily 00:00-24:00"], "1001", ""), "business hours need a destination for open"),
])
def test_bad_hours_are_refused(office, args, message):
    full = (*args, "1001", "1002")[:3] if len(args) < 3 else args
    assert refused(ivr.create_schedule, "day", *full).startswith(message)
    assert refused(ivr.create_schedule, "day", ["daily 00:00-24:00"], "1001", "1002",
                   holidays=["4 Dec"]) == "'4 Dec': a holiday is a date YYYY-MM-DD"
    assert refused(ivr.create_schedule, "day", ["daily 00:00-24:00"], "1001", "1002",
                   timezone="Mars/Base") == (
        "'Mars/Base' is not a time zone (e.g. Asia/Tashkent, UTC)")


def test_what_leads_to_a_menu_keeps_it(office, database):
    settings, prompt = office
    ivr.create_ivr("sales", prompt, {"1": "1001", "0": "ivr:sales"}, settings=settings)
    ivr.create_ivr("main", prompt, {"2": "ivr:sales"}, settings=settings)
    ivr.create_schedule("day", ["daily 08:00-20:00"], "ivr:main", "voicemail:1002")
    groups.create_group("600", "Sales", ["1001"], fallback="1002")
    from core.models import Extension, InboundRoute, RingGroup
    Extension.update(forward_busy="ivr:main").where(Extension.number == "1002").execute()
    RingGroup.update(fallback="ivr:main").execute()
    InboundRoute.create(did="712000000", destination="ivr:main")
    assert refused(ivr.delete_ivr, "sales", settings) == (
        "IVR menu sales is in use (key 2 of IVR menu main): point those elsewhere first")
    assert refused(ivr.delete_ivr, "main", settings) == (
        "IVR menu main is in use (forward on busy of 1002, fallback of ring group 600,"
        " inbound route of DID 712000000, business hours day): point those elsewhere first")
    ivr.delete_schedule("day")
    Extension.update(forward_busy="").execute()
    RingGroup.update(fallback="").execute()
    InboundRoute.delete().execute()
    main = ivr.delete_ivr("main", settings)
    assert not ivr.prompt_file(main, settings).exists()
    ivr.delete_ivr("sales", settings)  # its own key 0 does not keep it
    assert ivr.list_ivrs() == []
