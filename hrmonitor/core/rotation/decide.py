"""The rotation state machine: evidence + now -> state transitions, actions and alerts, per pool.

``decide(pool, ips, evidence, now)`` sees exactly one pool and the views of
that pool's IPs; it refuses views of any other IP, ignores evidence about any
other IP, and can therefore only ever name that pool's IPs in its decision.
That is the structural reason no decision about one pool moves IPs or
traffic of another: the high-risk pool's troubles cannot reach the normal one.

The rules, in the order ``decide`` applies them:

1. **Sweeps.** Only answers from zones whose health is ``ok`` in that sweep
   count; ``unknown``/``error``/``info`` answers and answers from unhealthy
   zones are dropped before anything looks at them. A (confirmed) ``listed``
   answer alerts (``listing``; ``normal-ip-listed``, critical, for a normal
   pool) and, when the pool's ``on_listing`` is ``retire`` and the severity is
   at least ``retire_at``, retires an active, warming or standby IP at once;
   the listing's alert then carries the action and the standby IPs promoted in
   its place (one event, one alert: no separate retirement or promotion alert).
   Standby IPs are retired too, so a listed IP is never promoted.
2. **Replies.** A :class:`~hrmonitor.core.rotation.suspension.Pause` suspends the
   (IP x provider) pair (see ``suspension.py``); a :class:`BlocklistNamed`
   reply asks for a DNSBL re-check of the IP and, when it names the provider,
   suspends the pair for ``pause`` too.
3. **Operators.** ``retire``/``disable`` take an IP out, ``restore`` brings a
   retired IP back to ``standby``, ``enable`` brings a disabled IP back to its
   configured role (``ips`` -> in rotation, ``standby`` -> standby). A reason
   is required. An action that would leave the pool with no IP in rotation
   (after promotions) is refused unless ``force`` is set.
4. **Time** (on every decision). A retired IP returns to ``standby`` - never
   straight to ``active`` - once its observed clean run covers the cool-down:
   ``clean_checked_at - max(clean_since, state_since) >= cooldown``, with no
   open listing; ``clean_since``/``clean_checked_at`` come from trustworthy
   sweeps only, so an outage of every zone stops the clock instead of passing
   for a clean day. An operator's ``until`` ends a disable (-> ``standby``)
   or an operator retirement (-> ``standby``, if no listing at ``retire_at``).
   Warming IPs advance or graduate at day boundaries (``warmup.py``).
5. **Promotion.** While fewer than ``min_active`` IPs are in rotation,
   standby IPs without open listings or whole-IP suspensions are promoted in
   configured order: to ``warming`` if the pool has a warm-up schedule and the
   IP never sent or idled for ``idle_rewarm``, else to ``active``.
6. **The last eligible IP.** A listing retirement is never held back to keep
   a pool alive: a listed high-risk IP must stop sending. So when the last IP
   in rotation is retired and no standby can replace it, the retirement still
   happens and a critical ``pool-exhausted`` alert fires, naming the pool's
   ``when_exhausted``: ``defer`` holds the pool's mail (the picker finds
   nobody), ``use-listed`` (normal pools only) lets the picker send through the
   least-listed IP. Never silent, never spilled into another pool. Below
   ``min_active`` (but not empty) a ``pool-below-min`` alert fires. Both
   resolve once the pool is back.

Every :class:`Transition` carries its audit event (:meth:`Transition.audit`).

Where each part lives: the IP views and the picker's view in
``rotation_views``, the evidence in ``rotation_evidence``, what a decision says
in ``rotation_decision``, the decision in progress in ``rotation_run``, and one
module per rule: ``rotation_sweep`` (1), ``rotation_replies`` (2),
``rotation_operator`` (3), ``rotation_time`` (4), ``rotation_promotion`` (5, 6).
This module keeps ``decide`` and the names the rest of hrmonitor imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from hrmonitor.core.model import Pool
from hrmonitor.core.rotation.decision import (
    Action,
    Decision,
    Lift,
    RecheckIp,
    Refusal,
    SetWarmupStage,
    Suspend,
    Transition,
)
from hrmonitor.core.rotation.evidence import (
    BlocklistNamed,
    Evidence,
    OperatorAction,
    Sweep,
    Tick,
    Verb,
)
from hrmonitor.core.rotation.operator import on_operator_action, operator_target
from hrmonitor.core.rotation.promotion import pool_alerts, promote
from hrmonitor.core.rotation.replies import on_blocklist_named, on_pause
from hrmonitor.core.rotation.run import Run
from hrmonitor.core.rotation.suspension import Pause
from hrmonitor.core.rotation.sweep import fold_replacements, on_sweep
from hrmonitor.core.rotation.timers import time_passes
from hrmonitor.core.rotation.views import IpView, OpenListing, candidates, in_rotation_count

__all__ = [
    "Action",
    "BlocklistNamed",
    "Decision",
    "Evidence",
    "IpView",
    "Lift",
    "OpenListing",
    "OperatorAction",
    "RecheckIp",
    "Refusal",
    "SetWarmupStage",
    "Suspend",
    "Sweep",
    "Tick",
    "Transition",
    "Verb",
    "candidates",
    "decide",
    "in_rotation_count",
    "operator_target",
]


def decide(
    pool: Pool, ips: Sequence[IpView], evidence: Sequence[Evidence], now: datetime
) -> Decision:
    """Everything that should happen to ``pool`` given ``evidence`` (module docstring)."""
    members = set(pool.all_ips)
    for view in ips:
        if view.pool != pool.name or view.ip not in members:
            raise ValueError(f"{view.ip} (pool {view.pool}) is not an IP of pool {pool.name}")
    run = Run(pool, {view.ip: view for view in ips}, now)
    for item in evidence:
        match item:
            case Sweep():
                on_sweep(run, item)
            case Pause():
                on_pause(run, item)
            case BlocklistNamed():
                on_blocklist_named(run, item)
            case OperatorAction():
                on_operator_action(run, item)
            case Tick():
                pass
    time_passes(run)
    promote(run, "min_active")
    fold_replacements(run)
    pool_alerts(run, any(isinstance(item, Tick) for item in evidence))
    return Decision(
        pool.name,
        tuple(run.transitions),
        tuple(run.actions),
        tuple(run.alerts),
        tuple(run.refusals),
    )
