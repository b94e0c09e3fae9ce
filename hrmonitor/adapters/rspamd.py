"""rspamd's HTTP scanning API: one message in, its score out.

``POST {url}/checkv2`` with the message as the body and the envelope in
rspamd's request headers (``From``, one ``Rcpt`` per recipient, ``IP``); the
JSON answer's ``score`` is the message's score (rspamd's protocol,
https://rspamd.com/doc/developers/protocol.html). Anything else (no
connection, a timeout, an HTTP error, a body without a number ``score``)
becomes a :class:`ScanResult` without a score that says why: the adapter never
raises, and routing decides what an unknown score means (the shipped rule
``spam-score-unknown``: high-risk).

httpx is imported when the scanner is made, so commands that do not route
mail never load it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hrmonitor.core.routing.spam_score import ScanResult

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)


class Rspamd:
    """A client of one rspamd normal (scanning) worker."""

    def __init__(self, url: str, timeout: float, password: str = "") -> None:
        import httpx  # noqa: PLC0415  (see the module docstring)

        self.url = url.rstrip("/") + "/checkv2"
        headers = {"Password": password} if password else {}
        self._client: httpx.AsyncClient = httpx.AsyncClient(timeout=timeout, headers=headers)
        self._errors: tuple[type[Exception], ...] = (httpx.HTTPError,)

    async def scan(
        self, message: bytes, *, mail_from: str, rcpts: Sequence[str], client_ip: str | None
    ) -> ScanResult:
        headers = [("From", mail_from.strip().strip("<>")), *(("Rcpt", r) for r in rcpts)]
        if client_ip:
            headers.append(("IP", client_ip))
        try:
            response = await self._client.post(self.url, content=message, headers=headers)
        except self._errors as exc:
            return self._unknown(f"{type(exc).__name__} from {self.url}: {exc}")
        if response.status_code != 200:
            return self._unknown(f"HTTP {response.status_code} from {self.url}")
        try:
            score = json.loads(response.content)["score"]
        except (ValueError, KeyError, TypeError):
            return self._unknown(f"no score in the answer of {self.url}")
        if isinstance(score, bool) or not isinstance(score, int | float):
            return self._unknown(f"score {score!r} from {self.url} is not a number")
        return ScanResult(float(score))

    def _unknown(self, problem: str) -> ScanResult:
        log.warning("rspamd could not score a message: %s", problem)
        return ScanResult(None, problem)

    async def close(self) -> None:
        await self._client.aclose()
