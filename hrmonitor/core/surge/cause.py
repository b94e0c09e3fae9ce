"""Why a surge happened: the causes of docs/mail-facts.md "Surges", each read from its evidence."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from hrmonitor.core.surge.evidence import EvidenceSummary


class Cause(StrEnum):
    BACKSCATTER = "backscatter"
    DIRECTORY_HARVEST = "directory-harvest"
    SPAM_ATTACK = "spam-attack"
    ROGUE_SERVER = "rogue-server"
    UNKNOWN = "unknown"


class CauseRules(Protocol):
    """The thresholds attribution reads (``SurgeSettings`` has them)."""

    @property
    def cause_share(self) -> float: ...
    @property
    def dha_min_local_parts(self) -> int: ...
    @property
    def dha_max_senders(self) -> int: ...
    @property
    def spam_share(self) -> float: ...


def attribute(summary: EvidenceSummary, settings: CauseRules) -> tuple[Cause, dict[str, object]]:
    """The likeliest cause of a surge and the evidence that names it (UNKNOWN if none fits).

    Each cause has a test and a score in [0, 1]; the best-scoring cause that
    passes its test wins, earlier in this order on a tie: backscatter,
    directory harvest, spam attack, rogue server.
    """
    s, share = summary, settings.cause_share
    candidates: list[tuple[float, Cause, dict[str, object]]] = []
    if s.returned and s.returned >= share * s.dsns:
        exact = s.batv_checked >= share * s.returned and s.batv_checked > 0
        forged = s.batv_bad / s.batv_checked if exact else s.unmatched / s.returned
        if forged >= share:
            candidates.append(
                (
                    forged,
                    Cause.BACKSCATTER,
                    {
                        "returned_dsns": s.returned,
                        "unmatched": s.unmatched,
                        "forged_share": round(forged, 3),
                        "batv_checked": s.batv_checked,
                        "batv_bad": s.batv_bad,
                        "exact": exact,
                    },
                )
            )
    if (
        s.userunknown >= share * s.dsns
        and s.unknown_locals >= settings.dha_min_local_parts
        and s.unknown_senders <= settings.dha_max_senders
    ):
        candidates.append(
            (
                s.userunknown / max(s.dsns, 1),
                Cause.DIRECTORY_HARVEST,
                {
                    "domain": s.unknown_domain,
                    "distinct_unknown_local_parts": s.unknown_locals,
                    "senders": s.unknown_senders,
                    "userunknown": s.userunknown,
                },
            )
        )
    if s.rcpts and s.top_sender_rcpts >= share * s.rcpts:
        spam = s.spam_high / s.scored if s.scored else 0.0
        refused = min(1.0, s.refusals / s.rcpts)
        if max(spam, refused) >= settings.spam_share:
            candidates.append(
                (
                    max(spam, refused),
                    Cause.SPAM_ATTACK,
                    {
                        "sender": s.top_sender,
                        "sender_share": round(s.top_sender_rcpts / s.rcpts, 3),
                        "spam_share": round(spam, 3),
                        "mean_spam_score": round(s.mean_score, 2),
                        "refused_share": round(refused, 3),
                    },
                )
            )
    if s.rcpts and (s.new_client_rcpts >= share * s.rcpts or s.loops >= share * s.rcpts):
        diagnostic_share = s.top_diagnostic_count / s.diagnosed if s.diagnosed else 0.0
        candidates.append(
            (
                max(s.new_client_rcpts, s.loops) / s.rcpts,
                Cause.ROGUE_SERVER,
                {
                    "new_clients": list(s.new_clients),
                    "new_client_share": round(s.new_client_rcpts / s.rcpts, 3),
                    "loops": s.loops,
                    "top_diagnostic": s.top_diagnostic,
                    "identical_diagnostic_share": round(diagnostic_share, 3),
                },
            )
        )
    if not candidates:
        return Cause.UNKNOWN, s.overview()
    best = max(candidates, key=lambda c: c[0])
    return best[1], best[2]
