"""pbxctl's commands for what the PBX says and answers itself (issue 13 items 3, 6, 7):

    pbxctl prompts build [--force]    convert Asterisk's English prompts, speak uz/ru
    pbxctl prompts list               each prompt, language, and whether it is built or uploaded

A refusal is one line on stderr and exit status 1 (pbxcli.main). A module of
its own because pbxcli.py is long enough; pbxcli.build_parser adds these.
"""

from __future__ import annotations

from core import prompts
from pbxcli_common import CliError, table

# -- prompts --------------------------------------------------------------------------------


def cmd_prompts_build(args, settings) -> int:
    try:
        written = prompts.build(force=args.force, settings=settings)
    except prompts.PromptError as error:
        raise CliError(str(error)) from None
    total = len(prompts.PROMPTS) * len(prompts.LANGUAGES)
    print(f"Prompts in {settings.prompts_dir}: {written} built, {total - written} up to date")
    return 0


def cmd_prompts_list(args, settings) -> int:
    rows = [("NAME", "LANGUAGE", "SOURCE", "FILE")]
    rows += [(name, language, state, str(file))
             for name, language, state, file in prompts.listing(settings)]
    table(rows)
    return 0


def add_commands(sub) -> None:
    prompt = sub.add_parser("prompts", help="the spoken prompts (built at install)")
    actions = prompt.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="build the prompts of every language")
    build.add_argument("--force", action="store_true", help="rebuild those already built")
    build.set_defaults(func=cmd_prompts_build)
    actions.add_parser("list", help="prompts: built, uploaded or missing").set_defaults(
        func=cmd_prompts_list
    )
