"""Applying a rotation decision: transitions by compare-and-set, then its actions and alerts.

Transitions go through the store's compare-and-set ``transition_ip`` (state
and audit event in one transaction), so two daemons on one store never apply
the same transition twice: the loser reloads and decides again, at most
:data:`MAX_ROUNDS` times, then gives up until the next decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from hrmonitor.core import auditlog
from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.model import AuditEvent, IPState, Pool
from hrmonitor.core.rotation.decide import (
    Decision,
    Evidence,
    Lift,
    RecheckIp,
    SetWarmupStage,
    Suspend,
    Transition,
    decide,
)
from hrmonitor.services.rotation.effects import RotationEffects
from hrmonitor.services.rotation.eligibility import Eligibility
from hrmonitor.services.rotation.store import RotationStore

log = logging.getLogger(__name__)

# A decision that keeps losing compare-and-set races is given up (and retried next time).
MAX_ROUNDS = 4
# A decision raising one of these leaves its pool short: its transitions are WARNINGs.
ATTENTION = frozenset({AlertKind.POOL_BELOW_MIN, AlertKind.POOL_EXHAUSTED})


def attention(decision: Decision) -> bool:
    """Whether the decision needs an operator: it leaves its pool below its minimum or
    empty. Routine rotation (a retirement with a standby promoted) does not."""
    return any(a.kind in ATTENTION and not a.resolved for a in decision.alerts)


class DecisionApplier:
    """Applies one pool's decisions to the store; the caller holds the controller's lock."""

    def __init__(
        self,
        store: RotationStore,
        pools: Mapping[str, Pool],
        eligibility: Eligibility,
        effects: RotationEffects,
        node: str = "",
    ) -> None:
        self._store = store
        self._node = node or "command"  # a CLI's controller acts for a command
        self._pools = pools
        self._eligibility = eligibility
        self._effects = effects

    async def apply(
        self,
        pool: str,
        decision: Decision,
        now: datetime,
        evidence: Sequence[Evidence],
        told: list[Alert] | None = None,
    ) -> list[Decision]:
        """Apply ``decision``; on a lost race reload and decide again. The applied decisions.

        ``told``: where the alerts go for the caller to send (``RotationEffects.emit``).
        """
        applied: list[Decision] = []
        for _ in range(MAX_ROUNDS):
            done, lost = await self._apply_transitions(decision, attention(decision))
            if lost is None:
                await self._apply_actions(decision, now)
                applied.append(decision)
                await self._effects.emit(decision.alerts, told=told)
                break
            log.info("rotation: %s lost a race on %s; deciding again", pool, lost.ip)
            kept = [a for a in decision.alerts if a.ip in {t.ip for t in done}]
            applied.append(replace(decision, transitions=tuple(done), actions=(), alerts=()))
            await self._effects.emit(kept, told=told)
            await self._eligibility.reload(pool, now)
            views = self._eligibility.current(pool, now)
            decision = decide(self._pools[pool], views, evidence, now)
        else:
            log.warning("rotation: %s kept losing races; will try again later", pool)
        await self._eligibility.reload(pool, now)
        return applied

    async def _apply_transitions(
        self, decision: Decision, warn: bool
    ) -> tuple[list[Transition], Transition | None]:
        done: list[Transition] = []
        for t in decision.transitions:
            stage = 0 if t.to_state is IPState.WARMING else None
            event = t.audit()
            ok = await asyncio.to_thread(
                self._store.transition_ip,
                t.ip,
                t.from_state,
                t.to_state,
                event,
                warmup_stage=stage,
            )
            if not ok:
                return done, t
            done.append(t)
            # Logged here, once, with the level the decision calls for; the audit tail
            # (services.audit_log) leaves this node's state changes alone.
            values = auditlog.fields(event, None, self._node)
            log.log(
                logging.WARNING if warn else logging.INFO,
                "%s", auditlog.text(values), extra={"fields": {"event": "audit", **values}},
            )  # fmt: skip
        return done, None

    async def _apply_actions(self, decision: Decision, now: datetime) -> None:
        for action in decision.actions:
            match action:
                case Suspend(suspension=s):
                    await self._effects.store_suspension(s)
                case SetWarmupStage():
                    event = AuditEvent(
                        action.at,
                        action.ip,
                        decision.pool,
                        "warmup",
                        str(action.stage - 1),
                        str(action.stage),
                        action.reason,
                        "rotation.warmup",
                    )
                    await asyncio.to_thread(
                        self._store.set_warmup_stage,
                        action.ip,
                        action.stage - 1,
                        action.stage,
                        event,
                    )
                case Lift():
                    await self._effects.lift_suspension(
                        action.ip, action.scope, now, action.actor, action.reason
                    )
                    self._eligibility.lift(action.ip, action.scope)
                case RecheckIp():
                    # In a task: the re-check's sweep comes back through on_sweep, which
                    # waits for the lock this decision holds.
                    self._effects.spawn(self._effects.ask_recheck(action.ip))
