"""Where in the SMTP dialogue a recipient failed, and with which remote MTA, as a bounce says.

MTAs say it in their own words: Postfix "(in reply to RCPT TO command)", Exim
"SMTP error from remote mail server after end of data", Sendmail's session
transcript (">>> DATA" then "<<< 554 ..."), others name the command in capitals
("SMTP command DATA"). The command matters to the reason (core.bounce.reason):
a refusal before DATA cannot be about the content, and "user unknown" after
DATA is a filter's answer. ``CONN`` stands for the greeting or the connection.
"""

from __future__ import annotations

import re

MAX_SCAN = 4096  # characters of text searched

# Phrases (lower-cased text); the first that matches names the command. Each
# comes with text it cannot match without (looked for first, with ``in``: most
# diagnostics name no command, and a search of every phrase was a tenth of
# classifying the corpus).
_PHRASES: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = tuple(
    (needles, re.compile(pattern), command)
    for needles, pattern, command in (
        (("in reply to",), r"in reply to (?:the )?(?:end of )?data\b", "DATA"),
        (("in reply to",), r"in reply to (?:the )?rcpt\b", "RCPT"),
        (("in reply to",), r"in reply to (?:the )?mail\b", "MAIL"),
        (("in reply to",), r"in reply to (?:the )?(?:helo|ehlo|lhlo)\b", "EHLO"),
        (("in reply to",), r"in reply to (?:the )?starttls\b", "STARTTLS"),
        (("in reply to",), r"in reply to (?:the )?(?:initial )?(?:greeting|banner)", "CONN"),
        (
            ("does not like recipient", "[rcpt_to]", "rcpt to"),
            r"does not like recipient|\[rcpt_to\]"
            r"|rcpt to:?\s{0,3}<[^<>]{0,80}>:? ?\.{0,3} ?[45]\d\d",
            "RCPT",
        ),
        (("does not like sender", "[mail_from]"), r"does not like sender|\[mail_from\]", "MAIL"),
        (
            ("after ",),
            r"after (?:pipelined )?(?:end of data|data\b|sending (?:the )?message|body)",
            "DATA",
        ),
        (("after ",), r"after (?:pipelined )?rcpt\b", "RCPT"),
        (("after ",), r"after (?:pipelined )?mail\b", "MAIL"),
        (("after ",), r"after (?:helo|ehlo)\b", "EHLO"),
        (
            ("after ", "greeting"),
            r"after (?:the )?initial connection|(?:during|in) (?:the )?(?:smtp )?greeting",
            "CONN",
        ),
        (("while ",), r"while (?:sending|transmitting) (?:the )?(?:message|data|body)", "DATA"),
    )
)
_TRANSCRIPT = re.compile(
    r"^[ \t]*(?:>>>[ \t]*(RCPT|MAIL|DATA|EHLO|HELO|LHLO|STARTTLS)\b|<<<[ \t]*[45]\d\d)",
    re.I | re.M,
)
_CAPITALS = re.compile(r"(?<![\w.@-])(DATA|RCPT|MAIL FROM|EHLO|HELO|STARTTLS)(?![\w@-])")
_CAPITALS_WORDS = ("DATA", "RCPT", "MAIL FROM", "EHLO", "HELO", "STARTTLS")
# Later in the dialogue wins where a text names several (a transcript quotes them all).
_LATEST = ("DATA", "RCPT", "MAIL", "STARTTLS", "EHLO", "HELO")

_REMOTE_TEXT = (
    r"(?:host|server|mx|remote host|remote server|while talking to)\s+"
    r"([a-z0-9][a-z0-9.\-]{0,252}\.[a-z]{2,63})\.?\s*\[?(?:\[\s*[0-9a-f:.]{3,45}\s*\])?"
    r"[^\n]{0,40}?(?:said|failed|:|refused|rejected|returned|replied|\(|says)"
)
_REMOTE = re.compile(_REMOTE_TEXT, re.I)
# In ASCII text, ignoring case is lower-casing (re.I also folds the likes of
# U+212A KELVIN SIGN into "k", so other text goes to _REMOTE): the same expression
# without re.I, on the lower-cased text, finds the same match, several times
# faster; and it cannot match without one of _REMOTE_WORDS.
_REMOTE_LOWER = re.compile(_REMOTE_TEXT)
_REMOTE_WORDS = ("host", "server", "mx", "while talking to")


def failed_command(text: str) -> str:
    """The SMTP command the failure answered ("RCPT", "DATA", ...), or "" if the text
    does not say."""
    text = text[:MAX_SCAN]
    lowered = text.lower()
    for needles, pattern, command in _PHRASES:
        if _any_in(needles, lowered) and pattern.search(lowered) is not None:
            return command
    said = ""  # a session transcript: the last command sent before the first error reply
    if ">>>" in text or "<<<" in text:
        for match in _TRANSCRIPT.finditer(text):
            if match.group(1) is None:
                if said:
                    return said
                continue
            said = _normal(match.group(1).upper())
    if said:
        return said
    if not _any_in(_CAPITALS_WORDS, text):
        return ""
    named = {_normal(match.group(1)) for match in _CAPITALS.finditer(text)}
    return next((command for command in _LATEST if command in named), "")


def remote_mta(text: str) -> str:
    """The remote MTA's host name a text bounce names ("host mx.example.com[192.0.2.1] said")."""
    text = text[:MAX_SCAN]
    if text.isascii():
        text = text.lower()
        if not _any_in(_REMOTE_WORDS, text):
            return ""
        match = _REMOTE_LOWER.search(text)
    else:
        match = _REMOTE.search(text)
    return match.group(1).lower().rstrip(".") if match is not None else ""


def _any_in(needles: tuple[str, ...], text: str) -> bool:
    for needle in needles:  # noqa: SIM110 (no generator per call: a hot path)
        if needle in text:
            return True
    return False


def _normal(command: str) -> str:
    command = command.split(" ", 1)[0]
    return {"HELO": "EHLO", "LHLO": "EHLO"}.get(command, command)
