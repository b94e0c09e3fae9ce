"""Alert channels: the log (always), webhooks (JSON POST) and e-mail.

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
from email.message import EmailMessage
from typing import Protocol

from hrmonitor.core.alert import Alert
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


class LogChannel:
    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.min_severity = Severity.LOW
        self._log = logger or logging.getLogger("hrmonitor.alert")

    async def send(self, alert: Alert) -> Delivery:
        level = logging.INFO if alert.resolved else _LOG_LEVEL[alert.severity]
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


class WebhookChannel:
    def __init__(self, url: str, timeout: float, min_severity: Severity = Severity.LOW) -> None:
        self.name = f"webhook {url}"
        self.min_severity = min_severity
        self._url = url
        self._timeout = timeout
        import httpx  # noqa: F401, PLC0415  (loaded now, not in the event loop at the first alert)

    async def send(self, alert: Alert) -> Delivery:
        import httpx  # noqa: PLC0415  (see the module docstring)

        try:
            async with asyncio.timeout(self._timeout):
                async with httpx.AsyncClient(timeout=self._timeout) as client:
                    response = await client.post(self._url, json=alert.as_dict())
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
