"""The CLI's one vocabulary (issue 17, item 1): the shared options of streamml.cli.options and the
old spellings that streamml.cli.deprecated translates for one release.

The command tree is walked from ``typer.main.get_command(app)``, so a command added later is
checked too. End-to-end calls run ``python -m streamml`` as a user would; none of them reaches a
broker (``-b 127.0.0.1:1`` is given only where the command fails before connecting).
"""

from __future__ import annotations

import enum
import os
import re
import shlex
import subprocess
import sys
import typing
from datetime import datetime, timezone
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any, Iterator

import pytest
import typer
from typer.testing import CliRunner

from streamml._version import __version__
from streamml.cli.deprecated import RENAMES, VALUES, translate
from streamml.cli.main import app
from streamml.cli.options import Position, parse_position, parse_properties
from streamml.errors import EXIT_OK, EXIT_USAGE, ConfigError

ROOT = typer.main.get_command(app)
WARNING_TAIL = "(the old spelling goes in the next release)"


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


COMMANDS = dict(_walk(ROOT))


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


def _names(command: Any) -> set[str]:
    return {n for p in _options(command) for n in (*p.opts, *p.secondary_opts)}


def _option(command: Any, name: str) -> Any:
    for p in _options(command):
        if name in (*p.opts, *p.secondary_opts):
            return p
    raise AssertionError(f"{command.name} has no option {name}")


def _enum(param: Any) -> type[enum.Enum] | None:
    """The Enum a parameter's values are checked against, if any (``Optional[E]`` too)."""
    annotation = param.type_descriptor.annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return candidate
    return None


def _where(path: tuple[str, ...]) -> str:
    return " ".join(("streamml", *path))


class Warnings(list[tuple[str, str]]):
    def __call__(self, old: str, new: str) -> None:
        self.append((old, new))


def _sm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMML_")}
    env.update({"HOME": str(cwd), "STREAMML_HOME": str(cwd / "streamml"), "COLUMNS": "200"})
    return subprocess.run([sys.executable, "-m", "streamml", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


# -- translate(): every RENAMES and VALUES entry ------------------------------------------------

RENAME_CASES = [(path, old, new) for path, table in RENAMES.items() for old, new in table.items()]
VALUE_CASES = [(path, option, old, new) for (path, option), table in VALUES.items() for old, new in table.items()]


def _rename_id(case: tuple[tuple[str, ...], str, Any]) -> str:
    return f"{_where(case[0])} {case[1]}"


@pytest.mark.parametrize(("path", "old", "new"), RENAME_CASES, ids=[_rename_id(c) for c in RENAME_CASES])
def test_an_old_option_becomes_the_new_one_with_one_warning(path: tuple[str, ...], old: str, new: Any) -> None:
    warned = Warnings()
    if isinstance(new, tuple):  # an old flag that is an option with a value now (--json -> --format json)
        got = translate([*path, old], ROOT, warn=warned)
        assert got == [*path, *new]
        assert warned == [(f"'{_where(path)} {old}'", f"'{new[0]} {new[1]}'")]
        return
    got = translate([*path, old, "V"], ROOT, warn=warned)
    assert got == [*path, new, "V"]
    assert warned == [(f"'{_where(path)} {old}'", f"'{new}'")]
    # the attached forms: --old=V and -oV
    warned.clear()
    attached = f"{old}=V" if old.startswith("--") else f"{old}V"
    want = f"{new}=V" if new.startswith("--") else f"{new}V"
    assert translate([*path, attached], ROOT, warn=warned) == [*path, want]
    assert len(warned) == 1 and old in warned[0][0] and new in warned[0][1]


@pytest.mark.parametrize(("path", "old", "new"), RENAME_CASES, ids=[_rename_id(c) for c in RENAME_CASES])
def test_each_rename_is_between_a_real_command_s_options(path: tuple[str, ...], old: str, new: Any) -> None:
    assert path in COMMANDS, f"RENAMES names {_where(path)!r}, which is no command"
    command = COMMANDS[path]
    target = new[0] if isinstance(new, tuple) else new
    assert target in _names(command), f"{_where(path)} has no option {target} (the new spelling of {old})"
    assert old not in _names(command), f"{_where(path)} still defines the old spelling {old} as its own option"
    if isinstance(new, tuple):
        choices = _enum(_option(command, new[0]))
        assert choices is not None and new[1] in [c.value for c in choices], (path, new)


@pytest.mark.parametrize(("path", "option", "old", "new"), VALUE_CASES,
                         ids=[f"{_where(c[0])} {c[1]} {c[2]}" for c in VALUE_CASES])
def test_an_old_value_becomes_the_new_one_with_one_warning(path: tuple[str, ...], option: str, old: str,
                                                           new: tuple[str, str]) -> None:
    warned = Warnings()
    assert translate([*path, option, old], ROOT, warn=warned) == [*path, *new]
    assert warned == [(f"'{_where(path)} {option} {old}'", f"'{new[0]} {new[1]}'")]
    warned.clear()
    assert translate([*path, f"{option}={old}"], ROOT, warn=warned) == [*path, f"{new[0]}={new[1]}"]
    assert len(warned) == 1
    # and the new spelling is one the command accepts
    assert path in COMMANDS
    choices = _enum(_option(COMMANDS[path], new[0]))
    assert choices is not None and new[1] in [c.value for c in choices], (path, new)


def test_new_spellings_pass_through_without_a_warning() -> None:
    warned = Warnings()
    argv = ["-N", "ns", "-X", "linger.ms=5", "--log-level", "info", "tail", "t", "--from", "-10",
            "--max-records", "5", "--duration", "3", "--idle", "1", "-f", "json", "--where", "a > 1"]
    assert translate(argv, ROOT, warn=warned) == argv
    argv = ["serve", "--model", "m", "--guarantee", "at-least-once", "--port", "0", "--host", "::1", "-n", "3"]
    assert translate(argv, ROOT, warn=warned) == argv
    assert warned == []


def test_old_spellings_are_translated_only_where_they_were_spelled_so() -> None:
    """-n is the namespace only on the root command; under a command it is -n, --max-records."""
    warned = Warnings()
    for argv in (["generate", "transactions", "-n", "5"], ["kafka", "logs", "-n", "5"],
                 ["run", "app.py", "-w", "2"], ["ingest", "mqtt", "-s", "x", "-t", "a/#"],
                 ["verify", "-i", "a", "-o", "b", "--timeout", "5"], ["kafka", "down", "--timeout", "5"],
                 ["tail", "t", "--max-records", "1"]):
        assert translate(argv, ROOT, warn=warned) == argv
    assert warned == []
    assert translate(["-n", "ns", "head", "t", "-n", "3"], ROOT, warn=warned) == ["-N", "ns", "head", "t", "-n", "3"]
    assert warned == [("'streamml -n'", "'-N'")]


def test_double_dash_stops_translation() -> None:
    warned = Warnings()
    argv = ["run", "app.py", "--", "--idle-exit", "3", "--guarantee", "exactly_once", "-n", "x"]
    assert translate(argv, ROOT, warn=warned) == argv
    assert warned == []
    got = translate(["run", "app.py", "--idle-exit", "3", "--", "--idle-exit"], ROOT, warn=warned)
    assert got == ["run", "app.py", "--idle", "3", "--", "--idle-exit"]
    assert len(warned) == 1


def test_the_value_of_an_option_is_not_taken_for_an_old_option() -> None:
    warned = Warnings()
    argv = ["tail", "t", "--where", "--max", "-f", "json"]
    assert translate(argv, ROOT, warn=warned) == argv
    assert warned == []


def test_the_default_warning_is_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert translate(["models", "promote", "m", "1", "-s", "canary"], ROOT) == \
        ["models", "promote", "m", "1", "--stage", "canary"]
    err = capsys.readouterr().err
    assert err == f"warning: 'streamml models promote -s' is deprecated, use '--stage' {WARNING_TAIL}\n"


def test_an_old_spelling_works_end_to_end_with_a_warning(tmp_path: Path) -> None:
    res = _sm("-b", "127.0.0.1:1", "models", "show", "bad name", "--json", cwd=tmp_path)
    assert res.returncode == EXIT_USAGE, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines[0] == f"warning: 'streamml models show --json' is deprecated, use '--format json' {WARNING_TAIL}"
    assert lines[1].startswith("error: invalid model name 'bad name'"), res.stderr
    assert "Traceback" not in res.stderr


# -- no command defines an old spelling --------------------------------------------------------

#: old long spellings that another command uses for another idea (of its own)
_SAME_NAME_OTHER_IDEA: dict[str, set[tuple[str, ...]]] = {
    "--lines": {("kafka", "logs")},                   # lines of a log file
    "--timeout": {("kafka", "down"), ("verify",)},  # how long to wait, not a stop condition
}


def test_old_long_spellings_live_only_in_the_deprecation_table() -> None:
    old_long = {old for table in RENAMES.values() for old in table if old.startswith("--")}
    offenders = sorted(f"{_where(path)} {name}" for path, command in COMMANDS.items()
                       for name in _names(command) & old_long
                       if path not in _SAME_NAME_OTHER_IDEA.get(name, set()))
    assert not offenders, f"commands still define old spellings as options: {offenders}"


# -- one name and short flag per idea ----------------------------------------------------------

#: short flag -> the one long option it stands for (and the documented exceptions)
_SHORT = {"-n": "--max-records", "-f": "--format", "-b": "--bootstrap-servers", "-N": "--namespace"}
_SHORT_EXCEPTIONS: dict[tuple[tuple[str, ...], str], str] = {
    (("kafka", "logs"), "-n"): "--lines",  # the last N lines of a log file, as tail -n
}


def test_a_short_flag_means_the_same_option_everywhere() -> None:
    offenders = []
    for path, command in COMMANDS.items():
        for p in _options(command):
            for short, long in _SHORT.items():
                want = _SHORT_EXCEPTIONS.get((path, short), long)
                if short in p.opts and want not in p.opts:
                    offenders.append(f"{_where(path)}: {short} is {p.opts}, not {want}")
                if long in p.opts and short not in p.opts and (path, short) not in _SHORT_EXCEPTIONS:
                    offenders.append(f"{_where(path)}: {long} has no {short}")
    assert not offenders, offenders


def test_shared_ideas_are_checked_against_the_same_choices() -> None:
    from streamml.cli.options import Format, Guarantee, TableFormat

    offenders = []
    for path, command in COMMANDS.items():
        for p in _options(command):
            kind = _enum(p)
            if "--guarantee" in p.opts and kind is not Guarantee:
                offenders.append(f"{_where(path)} --guarantee")
            if "--format" in p.opts and kind not in (Format, TableFormat):
                offenders.append(f"{_where(path)} --format")
            if "--from" in p.opts and p.metavar != "POSITION":
                offenders.append(f"{_where(path)} --from")
    assert not offenders, offenders


# -- help text and Enum choices ----------------------------------------------------------------

def test_every_option_and_argument_has_help_text() -> None:
    offenders = sorted(f"{_where(path)} {p.opts[0] if p.opts else p.name}"
                       for path, command in COMMANDS.items() for p in command.params
                       if p.param_type_name in ("option", "argument") and not (p.help or "").strip())
    assert not offenders, f"parameters without help text: {offenders}"


def test_every_command_has_help_text() -> None:
    offenders = sorted(_where(path) for path, command in COMMANDS.items()
                       if path and not (command.help or command.short_help or "").strip())
    assert not offenders, f"commands without help text: {offenders}"


ENUM_OPTIONS = [(path, p.opts[0], _enum(p)) for path, command in COMMANDS.items() for p in _options(command)
                if _enum(p) is not None and not p.hidden]


@pytest.mark.parametrize(("path", "name", "kind"), ENUM_OPTIONS, ids=[f"{_where(c[0])} {c[1]}" for c in ENUM_OPTIONS])
def test_enum_choices_are_shown_in_help(path: tuple[str, ...], name: str, kind: type[enum.Enum]) -> None:
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    choices = "|".join(str(c.value) for c in kind)
    option_line = re.compile(rf"^\s+(-\w, )?{re.escape(name)}\s")
    line = next((ln for ln in res.output.splitlines() if option_line.match(ln)), "")
    assert choices in line, (name, choices, res.output)


def test_enum_options_are_found() -> None:
    """The walk above sees the Enum options (so the help test checks something)."""
    found = {(path, name) for path, name, _ in ENUM_OPTIONS}
    assert {((), "--log-level"), (("run",), "--guarantee"), (("serve",), "--guarantee"),
            (("topics",), "--format"), (("ingest", "file"), "--file-format")} <= found


# -- start positions (kcat's -o) ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "kind", "value"), [
    ("beginning", "beginning", None),
    ("end", "end", None),
    ("  END ", "end", None),
    ("0", "offset", 0),
    ("42", "offset", 42),
    ("-10", "offset", -10),
    ("@1767225600000", "time", 1767225600000),
    ("@0", "time", 0),
    ("@2026-01-01T00:00:00Z", "time", 1767225600000),
    ("@2026-01-01T01:00:00+01:00", "time", 1767225600000),
    ("@2026-01-01T00:00:01.5Z", "time", 1767225601500),
])
def test_start_positions(text: str, kind: str, value: int | None, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_position(text) == Position(kind, value)  # type: ignore[arg-type]
    assert capsys.readouterr().err == ""  # the kcat forms are current: no warning


def test_a_position_as_a_read_bound_and_as_text() -> None:
    assert parse_position("beginning").bound() == "beginning" and str(parse_position("beginning")) == "beginning"
    assert parse_position("end").bound() == "end"
    assert parse_position("-3").bound() == -3 and str(parse_position("-3")) == "-3"
    at = parse_position("@1767225600000")
    assert at.bound() == datetime(2026, 1, 1, tzinfo=timezone.utc) and str(at) == "@1767225600000"


@pytest.mark.parametrize(("text", "new"), [("earliest", Position("beginning")), ("latest", Position("end")),
                                           ("2026-01-01T00:00:00Z", Position("time", 1767225600000))])
def test_older_position_spellings_work_with_a_warning(text: str, new: Position,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_position(text) == new
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: --from {text}") and "is deprecated, use --from " in err[0]


@pytest.mark.parametrize(("text", "message"), [
    ("soon", "--from 'soon' is not a start position"),
    ("", "--from '' is not a start position"),
    ("@", "--from '@' is not a start position"),
    ("1.5", "--from '1.5' is not a start position"),
    ("+-3", "--from '+-3' is not a start position"),
    ("@soon", "--from '@soon' is not a start position: 'soon' is not a time"),
    ("@2026-13-01T00:00:00Z", "is not a time"),
])
def test_bad_start_positions_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_position(text)
    assert message in info.value.message
    assert info.value.hint and ("beginning" in info.value.hint or "@" in info.value.hint)


def test_a_position_error_names_the_flag_it_came_from() -> None:
    with pytest.raises(ConfigError) as info:
        parse_position("soon", flag="--since")
    assert info.value.message.startswith("--since 'soon'")
    assert "beginning, end, N" in (info.value.hint or "")


# -- -X KEY=VALUE ------------------------------------------------------------------------------

def test_properties() -> None:
    assert parse_properties(None) == {} and parse_properties([]) == {}
    assert parse_properties(["linger.ms=5", "client.id=a=b", "x="]) == {"linger.ms": "5", "client.id": "a=b",
                                                                          "x": ""}
    assert parse_properties(["linger.ms=5", " linger.ms =7"]) == {"linger.ms": "7"}  # a later one wins


@pytest.mark.parametrize("item", ["linger.ms", "=5", " =5", ""])
def test_a_bad_property_is_a_config_error_with_a_hint(item: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_properties(["acks=all", item])
    assert info.value.message == f"-X {item!r} is not KEY=VALUE"
    assert info.value.hint and "-X linger.ms=5" in info.value.hint
    assert info.value.exit_code == EXIT_USAGE


def test_a_bad_property_on_the_command_line(tmp_path: Path) -> None:
    res = _sm("-b", "127.0.0.1:1", "-X", "linger.ms", "version", cwd=tmp_path)
    assert res.returncode == EXIT_USAGE
    assert res.stderr.splitlines()[0] == "error: -X 'linger.ms' is not KEY=VALUE", res.stderr
    assert "hint: e.g. -X linger.ms=5" in res.stderr and res.stdout == ""


# -- --version and --log-level -----------------------------------------------------------------

def test_version_prints_the_package_version(tmp_path: Path) -> None:
    assert __version__ == dist_version("streamml")
    res = _sm("--version", cwd=tmp_path)
    assert res.returncode == EXIT_OK, res.stderr
    assert res.stdout == f"streamml {__version__}\n" and res.stderr == ""
    res = _sm("version", cwd=tmp_path)
    assert res.returncode == EXIT_OK and res.stdout.strip() == __version__


def test_version_wins_over_a_command(tmp_path: Path) -> None:
    """--version is eager: it answers before the rest of the line is looked at."""
    res = _sm("--version", "bogus", cwd=tmp_path)
    assert res.returncode == EXIT_OK and res.stdout == f"streamml {__version__}\n", res.stderr


def test_a_bad_log_level_is_refused_with_the_choices(tmp_path: Path) -> None:
    res = _sm("--log-level", "bogus", "version", cwd=tmp_path)
    assert res.returncode == EXIT_USAGE
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--log-level" in errors[0] and "'bogus'" in errors[0], res.stderr
    assert all(f"'{level}'" in errors[0] for level in ("debug", "info", "warning", "error")), errors[0]
    assert res.stdout == ""


def test_a_log_level_is_accepted_in_any_case(tmp_path: Path) -> None:
    res = _sm("--log-level", "DEBUG", "version", cwd=tmp_path)
    assert res.returncode == EXIT_OK and res.stdout.strip() == __version__, res.stderr


# -- the README speaks the same vocabulary -----------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme() -> str:
    if not README.is_file():
        pytest.skip("no README.md next to the tests (an installed package)")
    return README.read_text()


def _readme_commands() -> tuple[list[str], list[str]]:
    """The ``streamml ...`` lines of the README's bash blocks, and its inline ``streamml ...`` spans."""
    text = _readme()
    blocks: list[str] = []
    lang: str | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            lang = None if lang is not None else line[3:].strip()
        elif lang in ("bash", "sh") and line.startswith("streamml "):
            blocks.append(line.split("#")[0].strip())
    spans = [s for s in re.findall(r"`(streamml [^`]*)`", text)
             if "--help" not in s and "COMMAND" not in s and "..." not in s]
    return blocks, spans


def _argv(line: str) -> list[str]:
    return shlex.split(re.sub(r"\[([^\]]*)\]", r"\1", line))[1:]  # [--optional parts] are given


def _unknown_options(argv: list[str]) -> list[str]:
    """The option names in argv that the command they follow does not have."""
    command, unknown, i = ROOT, [], 0
    while i < len(argv):
        tok, i = argv[i], i + 1
        if not tok.startswith("-") or tok == "-":
            command = getattr(command, "commands", {}).get(tok, command)
            continue
        name = tok.partition("=")[0] if tok.startswith("--") else tok[:2]
        attached = "=" in tok if tok.startswith("--") else len(tok) > 2
        if name not in _names(command):
            unknown.append(f"{command.name} {name}")
        elif not attached and not (_option(command, name).is_flag or _option(command, name).count):
            i += 1  # its value
    return unknown


def _rest(ctx: Any) -> list[str]:
    return [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]


def _parse(argv: list[str]) -> Any:
    """Parse (and convert) argv as the CLI does, without running a command."""
    ctx = ROOT.make_context("streamml", list(argv))
    command: Any = ROOT
    args = _rest(ctx)
    while getattr(command, "commands", None) and args:
        name, sub, args = command.resolve_command(ctx, args)
        ctx = sub.make_context(name, args, parent=ctx)
        command, args = sub, _rest(ctx) if getattr(sub, "commands", None) else ctx.args
    return command


def test_the_readme_commands_use_the_current_spellings() -> None:
    blocks, spans = _readme_commands()
    assert len(blocks) > 10 and len(spans) > 10  # the walk finds the README's commands
    old, unknown, bad = [], [], []
    for line in blocks + spans:
        warned = Warnings()
        argv = translate(_argv(line), ROOT, warn=warned)
        old += [f"{line!r}: {o} -> {n}" for o, n in warned]
        unknown += [f"{line!r}: {u}" for u in _unknown_options(argv)]
    for line in blocks:  # whole command lines: they parse and their values are valid
        try:
            _parse(_argv(line))
        except Exception as exc:  # noqa: BLE001 - reported below
            bad.append(f"{line!r}: {exc}")
    assert not old, f"README examples with old spellings: {old}"
    assert not unknown, f"README examples with options that do not exist: {unknown}"
    assert not bad, f"README examples that do not parse: {bad}"


def test_the_readme_documents_the_vocabulary_and_every_old_spelling() -> None:
    text = _readme()
    assert "### CLI vocabulary" in text
    section = text.split("### CLI vocabulary", 1)[1].split("\n## ", 1)[0]
    for option in ("-b, --bootstrap-servers", "-X KEY=VALUE", "-N, --namespace", "--log-level", "--version",
                   "--guarantee", "--from", "-n, --max-records", "--idle", "--duration", "--host", "--port",
                   "-f, --format"):
        assert f"`{option}" in section, option
    for form in ("beginning", "end", "`N`", "`-N`", "`@TIME`"):
        assert form in section, form
    missing = sorted({old for table in RENAMES.values() for old in table if f"{old}" not in section})
    assert not missing, f"old spellings not listed in the README: {missing}"
    missing = sorted({v for table in VALUES.values() for v in table if v not in section})
    assert not missing, f"old values not listed in the README: {missing}"
