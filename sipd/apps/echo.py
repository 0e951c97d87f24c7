"""The echo test (*43): the caller hears a prompt, then itself, until it
presses # or hangs up. It shows the whole path of a call's audio through the
PBX both ways (the phone's microphone, the network, the codec, the phone's
speaker), which is the first thing to try when someone says "I can't hear"."""

from __future__ import annotations

from core import prompts

MAX_SECONDS = 600


def run(call) -> None:
    call.play(prompts.path("demo-echotest", call.language))  # a key skips it
    call.echo(MAX_SECONDS, end_keys="#")
    call.play(prompts.path("demo-echodone", call.language), interrupt=False)
    call.hangup()
