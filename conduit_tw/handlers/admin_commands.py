"""
The admin room's command table and its parser (docs/admin.md).

A command is declared once, as a L{Command} in a L{Group}: its name, its
arguments, its one-line doc and its handler. Parsing, usage errors and
C{help} at every level are generated from those declarations, so there is
no separate help text to drift. Conduit's flat names (C{create-user},
C{list-local-users}, ...) are C{aliases} of the commands they name.

A message is a command when it starts with C{!admin} or with the bot's
user ID followed by a colon; its first line is split like a shell command
line (L{shlex}: quotes, C{--flags}, C{--flag=value}); a ``` code block
in the same message is the command's body.

Adding a group: build a L{Group} of L{Command}s whose handlers take an
L{Invocation} and return a L{Reply}, and add it to the root group's
C{children} (see L{conduit_tw.handlers.admin_groups}).
"""

from __future__ import annotations

import html
import re
import shlex
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Sequence, Union

#: Reply bodies longer than this are cut, with a note (an event is at most 64 KiB).
MAX_REPLY_CHARS = 24_000

_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)


class CommandError(Exception):
    """A command failed in a way its user can fix: the message is the reply."""


class NotAvailable(CommandError):
    """The command belongs to a part of the server not built yet."""


@dataclass(frozen=True)
class Reply:
    """A command's answer: a plain body and its HTML form."""

    plain: str
    html: str

    @classmethod
    def text(cls, text: str) -> "Reply":
        """A plain-text reply (HTML-escaped, line breaks kept)."""
        return cls(text, html.escape(text).replace("\n", "<br>"))

    @classmethod
    def table(cls, title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> "Reply":
        """A list as a table (HTML) and as tab-separated lines (plain)."""
        plain = [f"{title} ({len(rows)}):", "\t".join(headers)]
        plain.extend("\t".join(str(c) for c in row) for row in rows)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
            for row in rows
        )
        return cls(
            "\n".join(plain),
            f"<p>{html.escape(title)} ({len(rows)}):</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
        )

    @classmethod
    def code(cls, title: str, text: str) -> "Reply":
        """Preformatted text (JSON, state) under a title."""
        return cls(f"{title}\n{text}", f"<p>{html.escape(title)}</p><pre><code>{html.escape(text)}</code></pre>")

    def truncated(self, limit: int = MAX_REPLY_CHARS) -> "Reply":
        """This reply, cut to C{limit} characters with a note when longer."""
        if len(self.plain) <= limit and len(self.html) <= limit:
            return self
        note = f"\n[output truncated: {len(self.plain)} characters, showing the first {limit}]"
        plain = self.plain[:limit] + note
        return Reply(plain, f"<pre>{html.escape(self.plain[:limit])}</pre><p>{html.escape(note.strip())}</p>")


@dataclass(frozen=True)
class Invocation:
    """One parsed command: who sent it, its arguments, flags and body."""

    sender: str
    args: list[str]
    flags: dict[str, Union[str, bool]]
    body: str | None
    command: "Command"

    def flag(self, name: str) -> Union[str, bool, None]:
        """The value of C{--name} (C{True} for a switch), or None."""
        return self.flags.get(name)

    def need_body(self) -> str:
        """The code block, or a usage error."""
        if self.body is None or not self.body.strip():
            raise CommandError(
                f"{self.command.name} needs a body: put it in a ``` code block after the command"
            )
        return self.body

    def body_lines(self) -> list[str]:
        """The code block's non-empty lines, stripped."""
        return [line.strip() for line in self.need_body().splitlines() if line.strip()]


Handler = Callable[[Invocation], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    """
    One command.

    @ivar args: positional arguments: C{"user"} is required, C{"[password]"}
        optional, C{"room..."} takes one or more.
    @ivar options: C{--name} options: C{True} takes a value, C{False} is a switch.
    @ivar body: what the ``` code block holds, if the command takes one.
    @ivar unavailable: the reason the command answers "not available yet".
    """

    name: str
    doc: str
    handler: Handler | None = None
    args: tuple[str, ...] = ()
    options: dict[str, bool] = field(default_factory=dict)
    body: str | None = None
    aliases: tuple[str, ...] = ()
    unavailable: str | None = None

    def usage(self, path: str) -> str:
        """C{path} followed by the argument and option synopsis."""
        parts = [path]
        parts.extend(a if a.startswith("[") else f"<{a}>" for a in self.args)
        for name, takes_value in self.options.items():
            parts.append(f"[--{name}{' <value>' if takes_value else ''}]")
        if self.body:
            parts.append(f"+ code block: {self.body}")
        return " ".join(parts)

    def parse(self, sender: str, tokens: list[str], body: str | None) -> Invocation:
        """Split C{tokens} into positional arguments and options (usage errors raise)."""
        args: list[str] = []
        flags: dict[str, Union[str, bool]] = {}
        it = iter(tokens)
        for token in it:
            if token.startswith("--") and len(token) > 2:
                name, eq, value = token[2:].partition("=")
                if name not in self.options:
                    raise CommandError(f"Unknown option --{name} for {self.name}")
                if self.options[name]:
                    if not eq:
                        value = next(it, None)  # type: ignore[assignment]
                        if value is None:
                            raise CommandError(f"--{name} needs a value")
                    flags[name] = value
                else:
                    if eq:
                        raise CommandError(f"--{name} takes no value")
                    flags[name] = True
            else:
                args.append(token)
        required = [a for a in self.args if not a.startswith("[")]
        variadic = bool(self.args) and self.args[-1].endswith("...")
        if len(args) < len(required) or (not variadic and len(args) > len(self.args)):
            raise CommandError("Usage: " + self.usage(self.name))
        return Invocation(sender, args, flags, body, self)


@dataclass(frozen=True)
class Group:
    """A group of commands (and subgroups), with a one-line doc."""

    name: str
    doc: str
    children: tuple[Union["Group", Command], ...] = ()

    def child(self, name: str) -> Union["Group", Command, None]:
        """The subgroup or command called C{name} (aliases included)."""
        for c in self.children:
            if c.name == name or (isinstance(c, Command) and name in c.aliases):
                return c
        return None

    def walk(self, path: str = "") -> list[tuple[str, Command]]:
        """Every command below this group with its full path."""
        found: list[tuple[str, Command]] = []
        for c in self.children:
            sub = f"{path} {c.name}".strip()
            if isinstance(c, Group):
                found.extend(c.walk(sub))
            else:
                found.append((sub, c))
        return found

    def help(self, path: str) -> Reply:
        """The group's subgroups and commands with their one-line docs."""
        rows = []
        for c in self.children:
            if isinstance(c, Group):
                rows.append((f"{path} {c.name} ...".strip(), c.doc))
            else:
                doc = c.doc + (" (not available yet)" if c.unavailable else "")
                rows.append((c.usage(f"{path} {c.name}".strip()), doc))
        title = f"{path or 'admin'}: {self.doc}"
        return Reply.table(title, ["command", "description"], rows)


def split_message(body: str, prefixes: Sequence[str]) -> tuple[list[str], str | None] | None:
    """
    The command line's tokens and the code block of a message, or None if
    the message is not a command (does not start with one of C{prefixes}).

    @raise CommandError: unbalanced quotes.
    """
    text = body.lstrip()
    for prefix in prefixes:
        if text.startswith(prefix):
            rest = text[len(prefix):]
            if rest and not rest[0].isspace():
                continue
            break
    else:
        return None
    match = _CODE_BLOCK.search(rest)
    code = match.group(1) if match else None
    line = rest[: match.start()] if match else rest
    line = line.strip().split("\n", 1)[0]
    try:
        return shlex.split(line), code
    except ValueError as e:
        raise CommandError(f"Cannot parse the command line: {e}") from None


def flat_aliases(root: Group) -> dict[str, tuple[str, Command]]:
    """Conduit's flat command names mapped to the commands they name."""
    return {alias: (path, cmd) for path, cmd in root.walk() for alias in cmd.aliases}


def resolve(
    root: Group, tokens: list[str]
) -> tuple[str, Union[Group, Command], list[str]]:
    """
    Walk C{tokens} down the table: C{(path, group or command, remaining
    tokens)}. C{help} at any level (or C{--help} after a command) asks for
    that level's help: the remaining tokens are then C{["--help"]}.

    @raise CommandError: an unknown group or command.
    """
    node: Union[Group, Command] = root
    path = ""
    i = 0
    if tokens and tokens[0] == "help":
        tokens = tokens[1:] + ["--help"]
    if tokens:
        found = flat_aliases(root).get(tokens[0])
        if found is not None:
            path, node = found
            i = 1
    while isinstance(node, Group) and i < len(tokens):
        token = tokens[i]
        if token in ("help", "--help", "-h"):
            return path, node, ["--help"]
        child = node.child(token)
        if child is None:
            where = f"in {path}" if path else "at the top level"
            raise CommandError(
                f"Unknown command {token!r} {where}; try: !admin {(path + ' help').strip()}"
            )
        node = child
        path = f"{path} {child.name}".strip()
        i += 1
    rest = tokens[i:]
    if isinstance(node, Command) and ("--help" in rest or "-h" in rest or rest[:1] == ["help"]):
        rest = ["--help"]
    if isinstance(node, Group):
        rest = ["--help"]
    return path, node, rest


def reference_markdown(root: Group) -> str:
    """The command reference of docs/admin.md, generated from the table."""
    out: list[str] = []
    for group in root.children:
        out.append(f"### {group.name}: {group.doc}\n")
        out.append("| command | description | Conduit name |")
        out.append("|---|---|---|")
        commands = group.walk(group.name) if isinstance(group, Group) else [(group.name, group)]
        for path, cmd in commands:
            doc = cmd.doc + (" *(not available yet)*" if cmd.unavailable else "")
            aliases = ", ".join(f"`{a}`" for a in cmd.aliases)
            out.append(f"| `{cmd.usage('!admin ' + path)}` | {doc} | {aliases} |")
        out.append("")
    return "\n".join(out)
