"""Reads the .env format that runbook-bot's env-file secret store writes.

The rules match parseEnvText in src/actions/secrets/env-file.ts:

- One entry a line: KEY=value, optionally prefixed by "export ". Blank lines
  and lines starting with "#" are comments. Any other line is an error.
- 'single quoted': every character up to the next ' is literal.
- "double quoted": backslash escapes \\n \\r \\t \\" \\\\ \\$; any other
  backslash is kept as it is.
- Unquoted: up to the end of the line or up to a "#" that follows a space or
  tab, with trailing spaces removed.
- After a closing quote only spaces, tabs and a "# comment" may follow.
- When a key appears twice, the last entry wins.
"""

import re

ENTRY_HEAD = re.compile(r"([ \t]*(?:export[ \t]+)?)([A-Za-z_][A-Za-z0-9_]*)([ \t]*=)([ \t]*)")
AFTER_QUOTE = re.compile(r"[ \t]*(#.*)?", re.DOTALL)
UNQUOTED_COMMENT = re.compile(r"[ \t]#")
DOUBLE_QUOTE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}


class EnvSyntaxError(ValueError):
    pass


def parse_env_text(text):
    """Return the file's entries as a dict; raise EnvSyntaxError on a bad line."""
    if text.startswith("\ufeff"):
        text = text[1:]

    values = {}
    pieces = text.split("\n")
    for index, piece in enumerate(pieces):
        if index == len(pieces) - 1 and piece == "":
            break
        line = piece[:-1] if piece.endswith("\r") else piece
        entry = _parse_line(line, index + 1)
        if entry is not None:
            values[entry[0]] = entry[1]
    return values


def read_env_file(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return parse_env_text(handle.read())


def _parse_line(line, number):
    stripped = line.lstrip(" \t")
    if stripped == "" or stripped.startswith("#"):
        return None

    head = ENTRY_HEAD.match(line)
    if head is None:
        raise EnvSyntaxError(f"line {number}: expected KEY=value, a comment or a blank line")

    rest = line[head.end():]
    return head.group(2), _parse_value(rest, head.group(4) != "", number)


def _parse_value(rest, space_before_value, number):
    if rest.startswith("'"):
        close = rest.find("'", 1)
        if close < 0:
            raise EnvSyntaxError(f"line {number}: single quote ' is not closed")
        return _check_tail(rest[1:close], rest[close + 1:], number)

    if rest.startswith('"'):
        value = []
        index = 1
        while index < len(rest):
            char = rest[index]
            if char == '"':
                return _check_tail("".join(value), rest[index + 1:], number)
            if char == "\\" and index + 1 < len(rest):
                following = rest[index + 1]
                value.append(DOUBLE_QUOTE_ESCAPES.get(following, "\\" + following))
                index += 2
                continue
            value.append(char)
            index += 1
        raise EnvSyntaxError(f'line {number}: double quote " is not closed')

    if space_before_value and rest.startswith("#"):
        return ""
    comment = UNQUOTED_COMMENT.search(rest)
    raw = rest if comment is None else rest[: comment.start()]
    return raw.rstrip(" \t")


def _check_tail(value, tail, number):
    if AFTER_QUOTE.fullmatch(tail) is None:
        raise EnvSyntaxError(f"line {number}: unexpected text after the closing quote")
    return value
