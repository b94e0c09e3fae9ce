"""Non-standard bounces: recognising them and reading failed recipients out of their text.

No per-MTA parser list: real bounces come from hundreds of MTAs and gateways,
most with the same shape. The human-readable part up to the copy of the
original message (the "failure region") names the failed addresses; addresses
that are the bounce's own sender, recipient or a role account are not failed
recipients. Each address's diagnostic is the text from its line up to the next
failed address.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from hrmonitor.core.bounce.mime import Part

MAX_REGION = 32 * 1024  # characters of failure text considered
MAX_TEXT_RECIPIENTS = 100
MAX_DIAGNOSTIC = 600
MAX_MARKER_LINE = 200

_ADDRESS = re.compile(
    r"(?<![\w.!#$%&*+?^`{|}~=/\-])([\w.!#$%&*+?^`{|}~=/\-']{1,64}@[\w\-]{1,63}(?:\.[\w\-]{1,63}){1,8})"
)
_IGNORED_LOCAL_PARTS = frozenset(
    {
        "mailer-daemon",
        "mailerdaemon",
        "mailer_daemon",
        "postmaster",
        "abuse",
        "hostmaster",
        "double-bounce",
        "noreply",
        "no-reply",
        "donotreply",
        "do-not-reply",
    }
)
# The line-level patterns below match lower-cased text (case-insensitive matching
# in re is several times slower); positions are always taken from the original.
_HEADER_LINE = re.compile(
    r"^[ \t>]*(?:received|message-id|in-reply-to|references|return-path|reply-to|sender|from|"
    r"date|subject|x-[\w\-]+|dkim-signature|authentication-results|list-[\w\-]+|errors-to)\s*:",
)
_MARKER = re.compile(
    r"^(?:[ \t]*[-=*_#]{2,}.*?(?:original|copy of|unsent|returned|rejected|undelivered|"
    r"message follows|headers? follow|message text|message header|source (?:mail|message)).*"
    r"|[ \t]*(?:below this line is a copy|a copy of the original message|"
    r"the original message headers|"
    r"original message headers|original message follows|unsent message follows|"
    r"message headers? follows?|header of the original message|"
    r"original message header|the text of (?:your|the) message|header of the source|"
    r"original message as received|included is a copy of the (?:message|original)).*)$",
)
_MARKER_HINT = re.compile(
    r"^[ \t]*(?:[-=*_#]{2}|below|a copy|included|the original|original|unsent|message header|"
    r"header of|"
    r"the text of)",
    re.MULTILINE,
)
_HEADING = re.compile(
    r"following (?:recipients?|addresse?e?s?|address\(es\)|users?|destinations?)|"
    r"not (?:be )?delivered to|delivery to the following|could not be reached|failed recipients",
)
_BARE_USER = re.compile(r"^\s+([A-Za-z0-9][\w.\-+]{0,63})(?:\s*$|\s{2,}\S|\t)")
_SENDER_PREFIX = re.compile(r"\b(?:from|sender|sent by)\s*:?\s*[<\"']?$")
_GENERATED_PREFIX = re.compile(r"(?:generated|expanded|forwarded|redirected) from\s*:?\s*[<\"']?$")
_BARE_PREFIX = re.compile(r"[\s<\"'(\[*>.\-]*(?:\"[^\"]*\"\s*<?|[^\s@<>]+\s+<)?")
_BARE_SUFFIX = re.compile(r"[>\"')\]]*\s*(?:$|[:;,]|\.\.\.|\s{2,}|\t|\s+on\s|\s*\(|\s+<|\s+\[)")
_LABEL_PREFIX = re.compile(
    r"(?:recipient|rcpt to|rcpt|error-for|userid|user|address|addressee|"
    r"delivered to|deliver (?:\w+ )*to|delivery to|failed|for)\s*(?:[:=;]\s*[<\"'(]?|[<\"'(])$",
)
_HTML_TAG = re.compile(r"<(?:/?[A-Za-z][^<>@]*|!--.*?--)>", re.DOTALL)
_HTML_BLOCK = re.compile(r"<(?:br|/p|/div|/tr|/li|/h\d)[^<>@]*>", re.IGNORECASE)

DAEMON_SENDER = re.compile(
    r"mailer[-_ ]?daemon|postmaster|mail ?delivery ?(?:sub)?system|mail ?delivery ?service|"
    r"mail administrator|system administrator|"
    r"internet mail delivery|\bmdaemon\b|mail ?router|notes ?(?:mail)? ?router|"
    r"\bmail ?system\b|\bpostoffice@|\bsmtp ?gateway\b|\bmmdf\b|\bmail ?transport\b|"
    r"^\s*<?(?:bounces?|mailer|smtp|mta|daemon|mailadmin)@|"
    r"microsoftexchange[0-9a-f]{32}@|microsoft outlook|mail delivery|mailer_daemon",
    re.IGNORECASE,
)
BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|return(?:ed)? to sender|mail delivery fail|mail failure|"
    r"delivery (?:status )?notif|"
    r"delivery fail|failure notice|failed mail|delivery report|non[- ]?deliver|nondeliver|"
    r"could not (?:be )?deliver|not (?:be )?delivered|delivery problem|unable to deliver|"
    r"delivery has failed|mail failed|failed delivery|delayed mail|delivery delay|"
    r"could not send|mail system error|returned to sender|delivery error|message not delivered|"
    r"unzustellbar|non remis|no entregado|non recapitabile|kann nicht zugestellt|"
    r"mail could not|not delivered|returning message|delivery warning|error sending|"
    r"rejected|bounced|user unknown|mailbox (?:is )?full|over quota|quota exceeded|"
    r"message .{0,60} delayed|"
    r"nicht zustellbar|non recapitato|não entregue|niet afgeleverd|échec de remise|"
    r"état de remise|не доставлено|недоставленное|配信できません|配送エラー|メールエラー|"
    r"エラー通知|退信|未送达",
    re.IGNORECASE,
)
FAILURE_TEXT = re.compile(
    r"could ?n[o']t be delivered|was not delivered|wasn't delivered|not be delivered|"
    r"undeliverable|unable to deliver|delivery (?:to the following recipients? )?(?:has )?failed|"
    r"failed permanently|permanent(?:ly)? (?:fatal )?error|address(?:es|\(es\))? failed|"
    r"user unknown|unknown user|no such (?:user|mailbox|address)|"
    r"mailbox (?:is )?(?:full|unavailable|not found)|qmail-send program|"
    r"this is the mail system at|mail delivery software|"
    r"did not reach|does ?n[o']t exist|not listed in|over quota|quota exceeded|"
    r"recipient address rejected|host unknown|could not deliver|could not send message|"
    r"warning message only|not yet been delivered|delivery (?:has been )?delayed|"
    r"invalid recipient|no mailbox|rejected|returned to sender|delivery status notification|"
    r"message could not|not deliver|delivery failure|error sending|giving up|"
    r"following (?:recipients?|address(?:es)?)|account (?:is )?disabled|remote host said|"
    r"smtp error|unrouteable|nicht zugestellt|no se pudo entregar|n'a pas pu|has been returned|"
    r"intended recipient|returned mail|"
    # German, French, Spanish, Portuguese, Italian, Dutch, Swedish, Polish, Russian, CJK
    r"konnte nicht zugestellt|unzustellbar|n'a pas pu (?:être|etre) (?:délivré|distribué|remis)|"
    r"non remis|échec de (?:la )?remise|no pudo ser entregado|no se ha podido entregar|"
    r"não (?:pôde|foi possível) ser entregue|non è stato possibile recapitare|non recapitabile|"
    r"kon niet worden afgeleverd|onbestelbaar|kunde inte levereras|nie może zostać dostarczona|"
    r"не может быть доставлено|не доставлено|не удалось доставить|"
    r"配信できませんでした|送信できませんでした|届きませんでした|无法发送|无法投递|退信",
)
DELAY_TEXT = re.compile(
    r"warning message only|do not need to resend|will (?:continue|keep) (?:to )?(?:try|attempt)|"
    r"still (?:be )?(?:trying|retrying|being retried)|has not (?:yet )?been delivered|"
    r"not yet been delivered|will be retried|will retry|delivery (?:has been |is )?delayed|"
    r"is delayed|delayed mail|mail delay|(?:still )?in the queue|retry(?:ing)? (?:for|until)|"
    r"delivery attempts will continue|temporarily (?:deferred|unavailable)|"
    r"could not send message for (?:the )?past|"
    r"delivery to the following recipients? has been delayed",
)
STRONG_TEXT = re.compile(
    r"mail delivery software|this is the mail system at|qmail-send|transcript of session follows|"
    r"permanent fatal errors|following address(?:es|\(es\))? failed|"
    r"did not reach (?:some or all|the following)|"
    r"delivery has failed to these recipients|delivery to the following recipients? failed|"
    r"was not delivered to:|maximum delivery attempts|remote host said:|smtp error from remote|"
    r"could not be delivered to:|"
    r"^\s*<[^@\s<>]+@[^\s<>]+>:\s*$|^\s*(?:final|original)-recipient:|diagnostic-code:",
    re.MULTILINE,
)
# FAILURE_TEXT, DELAY_TEXT, STRONG_TEXT and QMAIL match lower-cased text
# (case-insensitive matching in re is several times slower).
QMAIL = re.compile(r"this is the qmail-send program|qmail-send program at")


@dataclass(frozen=True, slots=True)
class TextFailure:
    address: str
    diagnostic: str


def readable_text(root: Part, *, limit: int = MAX_REGION) -> str:
    """The human-readable text of a message: its text/plain parts (else text/html), in order."""
    plain: list[str] = []
    markup: list[str] = []
    size = 0
    for part in root.walk():
        if part.parts or not part.content_type.startswith("text/"):
            continue
        if part.content_type in ("text/rfc822-headers", "text/x-rfc822-headers"):
            continue
        target = markup if part.content_type == "text/html" else plain
        text = part.text()
        target.append(text)
        size += len(text)
        if size > limit * 2:
            break
    if plain:
        return "\n\n".join(plain)[: limit * 2]
    text = "\n\n".join(markup)[: limit * 2]
    text = _HTML_BLOCK.sub("\n", text)
    return html.unescape(_HTML_TAG.sub(" ", text))


def failure_region(text: str) -> str:
    """The text up to the copy of the original message.

    That is the first marker line with an address or failure wording before it:
    some bounces open with a marker-like line before saying anything. A cheap
    anchored scan finds candidate lines; only short ones are checked in full,
    which keeps the work linear.
    """
    text = text[: MAX_REGION * 2]
    lowered = text.lower()
    if len(lowered) != len(text):  # a rare character whose lower case is longer
        lowered = "".join(char.lower()[:1] for char in text)
    for hint in _MARKER_HINT.finditer(lowered):
        start = hint.start()
        end = lowered.find("\n", start)
        line = lowered[start:] if end < 0 else lowered[start:end]
        if (
            len(line) <= MAX_MARKER_LINE
            and _MARKER.match(line)
            and (_ADDRESS.search(text, 0, start) or FAILURE_TEXT.search(lowered, 0, start))
        ):
            return text[:start][:MAX_REGION]
    return text[:MAX_REGION]


def _clean(address: str) -> str:
    address = address.strip(".'")
    if address[:5].lower() == "smtp=":  # Exchange's "SMTP=user@example.com"
        address = address[5:]
    return address


def _is_own(address: str, own: frozenset[str], roles: bool = False) -> bool:
    lowered = address.lower()
    local = lowered.rsplit("@", 1)[0]
    role = local in _IGNORED_LOCAL_PARTS and not roles
    # "=" or "/" in a local part: a VERP return path or an X.400 relic, not a recipient.
    return lowered in own or role or "=" in local or "/" in local


def failed_addresses(
    region: str, own: frozenset[str], domain: str = "", *, roles: bool = False
) -> tuple[TextFailure, ...]:
    """Failed recipients named in a failure region, each with its diagnostic text.

    ``own`` holds the lower-cased addresses of the bounce's own header fields
    (its sender, its recipient): they are never failed recipients. Addresses
    set out on a line of their own (or after a label such as "RCPT TO:") are
    preferred over addresses mentioned in running prose; bare user names under
    a "following recipients" heading take ``domain``, the reporting domain.
    Role accounts (postmaster@, abuse@, ...) count only with ``roles``: the
    caller's last resort when a bounce names no one else.
    """
    lines = region.split("\n")
    lowered = [line.lower() for line in lines]
    found: list[tuple[int, str, bool]] = []  # (line index, address, set out on its own)
    seen: set[str] = set()
    heading_until = -1
    for index, line in enumerate(lines):
        if _HEADING.search(lowered[index]):
            heading_until = index + 4
        if "@" not in line:
            bare = _BARE_USER.match(line) if index <= heading_until and domain else None
            if bare is not None and bare.group(1).lower() not in _IGNORED_LOCAL_PARTS:
                address = f"{bare.group(1)}@{domain}"
                if address.lower() not in seen:
                    seen.add(address.lower())
                    found.append((index, address, True))
            continue
        if _HEADER_LINE.match(lowered[index]):
            continue
        for match in _ADDRESS.finditer(line):
            address = _clean(match.group(1))
            key = address.lower()
            prefix = line[: match.start()]
            if "@" not in address or key in seen or _is_own(address, own, roles):
                continue
            low_prefix = prefix.lower()
            if _SENDER_PREFIX.search(low_prefix) and not _GENERATED_PREFIX.search(low_prefix):
                continue  # "not accepting mail from <sender>": the sender, not a recipient
            seen.add(key)
            suffix = line[match.end() :]
            anchored = bool(
                (_BARE_PREFIX.fullmatch(prefix) and _BARE_SUFFIX.match(suffix))
                or _LABEL_PREFIX.search(low_prefix)
                or _GENERATED_PREFIX.search(low_prefix)
                or match.group(1)[:5].lower() == "smtp="
            )
            found.append((index, address, anchored))
        if len(found) >= MAX_TEXT_RECIPIENTS:
            break
    if any(anchored for _, _, anchored in found):
        found = [item for item in found if item[2]]
    failures = []
    for position, (index, address, _) in enumerate(found):
        end = found[position + 1][0] if position + 1 < len(found) else len(lines)
        end = max(end, index + 1)
        diagnostic = " ".join(line.strip() for line in lines[index:end] if line.strip())
        failures.append(TextFailure(address=address, diagnostic=diagnostic[:MAX_DIAGNOSTIC]))
    return tuple(failures)


def reporting_domain(address_field: str) -> str:
    """The registered-looking domain (last two labels) of the first address in a field."""
    match = _ADDRESS.search(address_field)
    if match is None:
        return ""
    labels = match.group(1).rsplit("@", 1)[1].lower().split(".")
    return ".".join(labels[-2:])


def own_addresses(root: Part) -> frozenset[str]:
    """Lower-cased addresses in the bounce's own address fields."""
    names = (
        "to",
        "cc",
        "from",
        "sender",
        "reply-to",
        "return-path",
        "delivered-to",
        "envelope-to",
        "errors-to",
    )
    own: set[str] = set()
    for name, value in root.fields:
        if name in names:
            own.update(address.lower() for address in addresses_in(value))
    return frozenset(own)


def addresses_in(value: str) -> list[str]:
    """The e-mail addresses in a header value or a line, as written."""
    return [_clean(match.group(1)) for match in _ADDRESS.finditer(value)]
