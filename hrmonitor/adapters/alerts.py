"""Alert channels: the log (always), webhooks (JSON POST) and e-mail.

A webhook's ``format`` shapes its body: ``json`` (``Alert.as_dict``),
``alertmanager`` (a one-alert list of Alertmanager API v2 ``postableAlerts``,
POSTed to the URL as given, normally ``.../api/v2/alerts``) or ``slack`` (an
incoming-webhook message: ``text`` plus mrkdwn ``section`` blocks). The
renderers are pure functions of the alert (:func:`render`).

Channels only deliver; deduplication, the daemon's queue, retries and repeat
intervals live in ``services.alerting``. A channel that fails returns the
failure as a value (logged at debug here; the caller says what it means): one
dead webhook never stops the daemon or the other channels.

``timeout`` is a total deadline for one send (connect + request + reading the
whole answer): httpx's and aiosmtplib's own timeouts are per operation, so a
receiver that trickles a byte every few seconds never tripped them.

httpx and aiosmtplib are imported by the channels that use them, when one is
configured: ``hrmonitor check`` with only the log channel never loads them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Literal, Protocol
from urllib.parse import urlsplit

from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.model import Severity

log = logging.getLogger(__name__)

_LOG_LEVEL = {
    Severity.CRITICAL: logging.CRITICAL,
    Severity.HIGH: logging.ERROR,
    Severity.MEDIUM: logging.WARNING,
    Severity.LOW: logging.INFO,
}


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: str
    ok: bool
    detail: str = ""


class Channel(Protocol):
    name: str
    min_severity: Severity

    async def send(self, alert: Alert) -> Delivery: ...


def wants(channel: Channel, alert: Alert) -> bool:
    """Resolutions go everywhere the alert went; others only at the channel's severity."""
    return alert.severity.at_least(channel.min_severity)


def log_level(alert: Alert) -> int:
    """The log channel's level for ``alert``: what a postmaster reading the log expects.

    CRITICAL is for what stops mail (a pool with no IP to send from is critical);
    an alert the daemon handled while the pool still sends (a listed IP retired
    and replaced) is a WARNING in a high-risk or relay pool and an ERROR in the
    normal pool (its IPs should never get listed: someone has to look); anything
    else by its severity; resolutions at INFO.
    """
    if alert.resolved:
        return logging.INFO
    if alert.handled:
        normal = AlertKind.NORMAL_IP_LISTED
        return logging.ERROR if normal in (alert.kind, alert.event) else logging.WARNING
    return _LOG_LEVEL[alert.severity]


class LogChannel:
    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.min_severity = Severity.LOW
        self._log = logger or logging.getLogger("hrmonitor.alert")

    async def send(self, alert: Alert) -> Delivery:
        level = log_level(alert)
        state = "resolved" if alert.resolved else str(alert.severity)
        self._log.log(
            level,
            "[%s] %s: %s %s",
            alert.kind,
            state,
            alert.summary,
            json.dumps(alert.as_dict()["details"], sort_keys=True),
        )
        return Delivery(self.name, True)


WebhookFormat = Literal["json", "alertmanager", "slack"]
ALERTMANAGER_PATH = "/api/v2/alerts"


def url_path(url: str) -> str:
    """The path of ``url``."""
    return urlsplit(url).path


# A condition has no end hrmonitor knows until it resolves; Alertmanager ends an
# alert without endsAt after its resolve_timeout (5 minutes by default), so a firing
# condition is sent with this horizon instead. One-shot events (their key carries
# the time) are left to resolve_timeout.
ALERTMANAGER_HORIZON = timedelta(days=90)
_ONE_SHOT = frozenset({AlertKind.PROMOTION, AlertKind.RESTORATION})


def render(alert: Alert, fmt: WebhookFormat) -> object:
    """The webhook body of ``alert`` in ``fmt`` (JSON-able)."""
    if fmt == "alertmanager":
        return [alertmanager_alert(alert)]
    if fmt == "slack":
        return slack_message(alert)
    return alert.as_dict()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alertmanager_alert(alert: Alert) -> dict[str, object]:
    """One Alertmanager API v2 ``postableAlert``: labels, annotations, startsAt, endsAt.

    The labels are what identifies the condition (Alertmanager pairs a resolution
    with its alert by them): ``alertname`` (the kind), ``severity``, ``pool``,
    ``ip``, ``zone`` and ``key``, none of which a resolution changes. The node
    is an annotation: in a cluster the node that sees a resolution need not be
    the one that saw the alert, and a label would keep the alert open for ever.
    """
    zone = alert.details.get("zone")
    labels = {
        "alertname": str(alert.kind),
        "severity": str(alert.severity),
        "pool": alert.pool or "",
        "ip": alert.ip or "",
        "zone": zone if isinstance(zone, str) else "",
        "key": alert.key,
        "service": "hrmonitor",
    }
    details = alert.as_dict()["details"]
    annotations = {
        "summary": alert.summary,
        "description": json.dumps(details, sort_keys=True),
        "node": alert.node or "",
        "state": alert.state,
        "event": alert.event or str(alert.kind),
    }
    body: dict[str, object] = {
        "labels": {k: v for k, v in labels.items() if v},
        "annotations": {k: v for k, v in annotations.items() if v},
        "startsAt": _iso(alert.at),
    }
    if alert.resolved:
        body["endsAt"] = _iso(alert.at)
    elif alert.kind not in _ONE_SHOT:
        body["endsAt"] = _iso(alert.at + ALERTMANAGER_HORIZON)
    url = alert.details.get("lookup_url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        body["generatorURL"] = url
    return body


_SLACK_ICON = {
    Severity.CRITICAL: ":red_circle:",
    Severity.HIGH: ":large_orange_circle:",
    Severity.MEDIUM: ":large_yellow_circle:",
    Severity.LOW: ":large_blue_circle:",
}
_SLACK_TEXT_LIMIT = 3000  # a section's text
_SLACK_FIELD_LIMIT = 2000  # one field's text
_SLACK_FIELDS = 10  # fields per section


def _mrkdwn(text: str, limit: int) -> str:
    """Slack reads & < > as markup (``<!channel>`` pings everyone): escaped, then cut."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_message(alert: Alert) -> dict[str, object]:
    """A Slack incoming-webhook message: ``text`` (the notification) and mrkdwn blocks."""
    icon = ":white_check_mark:" if alert.resolved else _SLACK_ICON[alert.severity]
    state = "RESOLVED" if alert.resolved else str(alert.severity).upper()
    headline = f"[hrmonitor {state}] {alert.kind}: {alert.summary}"
    facts: list[tuple[str, object]] = [
        ("Kind", alert.kind),
        ("Severity", alert.severity),
        ("State", alert.state),
        ("Pool", alert.pool),
        ("IP", alert.ip),
        ("Zone", alert.details.get("zone")),
        ("Action", alert.details.get("action")),
        ("Promoted", ", ".join(map(str, _seq(alert.details.get("promoted"))))),
        ("Node", alert.node),
        ("At", _iso(alert.at)),
    ]
    fields = [
        {"type": "mrkdwn", "text": _mrkdwn(f"*{name}*\n{value}", _SLACK_FIELD_LIMIT)}
        for name, value in facts
        if value not in (None, "")
    ][:_SLACK_FIELDS]
    text = f"{icon} *{_mrkdwn(headline, _SLACK_TEXT_LIMIT - 40)}*"
    blocks: list[dict[str, object]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "section", "fields": fields},
    ]
    url = alert.details.get("lookup_url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        link = f"<{url}|look the listing up>"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": link}})
    return {"text": headline[:_SLACK_TEXT_LIMIT], "blocks": blocks}


def _seq(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


class WebhookChannel:
    def __init__(
        self,
        url: str,
        timeout: float,
        min_severity: Severity = Severity.LOW,
        fmt: WebhookFormat = "json",
    ) -> None:
        if fmt == "alertmanager" and url_path(url) in ("", "/"):
            url = url.rstrip("/") + ALERTMANAGER_PATH  # Alertmanager's address alone
        self.name = f"webhook {url}" if fmt == "json" else f"webhook {url} ({fmt})"
        self.min_severity = min_severity
        self._url = url
        self._timeout = timeout
        self._format: WebhookFormat = fmt
        import httpx  # noqa: F401, PLC0415  (loaded now, not in the event loop at the first alert)

    async def send(self, alert: Alert) -> Delivery:
        import httpx  # noqa: PLC0415  (see the module docstring)

        try:
            async with asyncio.timeout(self._timeout):
                async with httpx.AsyncClient(timeout=self._timeout) as client:
                    response = await client.post(self._url, json=render(alert, self._format))
        except TimeoutError:
            log.debug("alert webhook %s: no answer within %gs", self._url, self._timeout)
            return Delivery(self.name, False, f"no complete answer within {self._timeout:g}s")
        except httpx.HTTPError as error:
            log.debug("alert webhook %s failed: %s", self._url, error)
            return Delivery(self.name, False, str(error) or type(error).__name__)
        if response.status_code >= 300:
            log.debug("alert webhook %s answered %s", self._url, response.status_code)
            return Delivery(self.name, False, f"HTTP {response.status_code}")
        return Delivery(self.name, True)


class EmailChannel:
    def __init__(
        self,
        to: tuple[str, ...],
        sender: str,
        host: str,
        port: int,
        timeout: float,
        min_severity: Severity = Severity.LOW,
    ) -> None:
        self.name = f"email {','.join(to)}"
        self.min_severity = min_severity
        self._to, self._sender, self._host, self._port = to, sender, host, port
        self._timeout = timeout
        import aiosmtplib  # noqa: F401, PLC0415  (loaded now, not in the event loop at the first alert)

    async def send(self, alert: Alert) -> Delivery:
        import aiosmtplib  # noqa: PLC0415  (see the module docstring)

        message = EmailMessage()
        prefix = "RESOLVED" if alert.resolved else str(alert.severity).upper()
        message["Subject"] = f"[hrmonitor {prefix}] {alert.summary}"
        message["From"] = self._sender
        message["To"] = ", ".join(self._to)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(json.dumps(alert.as_dict(), indent=2, sort_keys=True))
        try:
            async with asyncio.timeout(self._timeout):
                await aiosmtplib.send(
                    message,
                    hostname=self._host,
                    port=self._port,
                    timeout=self._timeout,
                    start_tls=False,
                    use_tls=False,
                )
        except TimeoutError:
            log.debug("alert e-mail via %s:%s: not sent within %gs", self._host, self._port,
                      self._timeout)  # fmt: skip
            return Delivery(self.name, False, f"not sent within {self._timeout:g}s")
        except (aiosmtplib.SMTPException, OSError) as error:
            log.debug("alert e-mail via %s:%s failed: %s", self._host, self._port, error)
            return Delivery(self.name, False, str(error))
        return Delivery(self.name, True)
