"""What the PBX itself answers: feature codes (features.py); applications run on
an answered call (call.py's AppCall), registered in APPS by name, the name a
routing plan's `Application` step gives. Each helper adds its own line;
importing lazily keeps sipd's start free of what a call may never use."""



def _echo(call) -> None:
    from sipd.apps import echo  # noqa: PLC0415 - lazily, see above

    echo.run(call)


def _voicemail(call) -> None:
    from sipd.apps import voicemail  # noqa: PLC0415 - lazily, see above

    voicemail.run(call)


def _ivr(call) -> None:
    from sipd.apps import ivr  # noqa: PLC0415 - lazily, see above

    ivr.run(call)


APPS: dict = {
    "echo": _echo,  # *43
    "voicemail": _voicemail,
    "ivr": _ivr,
}
