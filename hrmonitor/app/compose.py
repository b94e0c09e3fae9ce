"""The services as the daemon runs them: the monitor, the controller, the relay and the
listener, from Config.

These are the only places that wire them together. ``Daemon.run`` uses them,
``hrmonitor check`` builds its monitor with :func:`build_monitor`, and so do the
tests and benchmarks that need the parts in one process (with a fake clock, a
scripted rotation side, say): what they measure or prove is then the daemon's
own composition, not a hand-made copy of it.

What a caller supplies is what it owns: the store, the clock, the DNSBL
engine, where alerts go, the outbound connections, the resolver, and the
rotation side the relay asks for source IPs (the :class:`Controller`, or in a
relay test anything with its :class:`Rotation` methods). Everything else
(pools, lists, feedback rules, pauses, retry policy, concurrency, listener
limits) comes from Config.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from hrmonitor.adapters.dns.mail import MailDns
from hrmonitor.adapters.rule_files import load_feedback_files
from hrmonitor.adapters.smtp_in import Listener
from hrmonitor.adapters.smtp_out import check_bindable
from hrmonitor.adapters.store import Store
from hrmonitor.adapters.store.queue.model import DueRecipient, Outcome
from hrmonitor.adapters.store.queue.repository import QueueRepository
from hrmonitor.app.monitoring import build_monitor, zone_lists
from hrmonitor.app.smtp_parts import listener_settings
from hrmonitor.config.files import RuleKind
from hrmonitor.config.loading import Config
from hrmonitor.core.alert import Alert
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.delivery.retry import RetryPolicy
from hrmonitor.core.feedback.replies import RemoteReply
from hrmonitor.core.model import Clock, Pool
from hrmonitor.core.rotation.selection import IpCandidate
from hrmonitor.core.routing.decide import RouteDecision
from hrmonitor.services.monitor import Monitor
from hrmonitor.services.relay.routing import Router
from hrmonitor.services.relay.runner import Relay, RelaySettings, route_with
from hrmonitor.services.relay.settings import Sender
from hrmonitor.services.relay.source_ip import PoolPicker, use_listed
from hrmonitor.services.rotation.controller import Controller
from hrmonitor.services.rotation.effects import AlertSink
from hrmonitor.services.surge.traffic import TrafficFeed
from hrmonitor.services.surge.watcher import SurgeWatcher

__all__ = [
    "RelayMetrics",
    "Rotation",
    "build_controller",
    "build_listener",
    "build_monitor",
    "build_relay",
    "node_name",
]


class RelayMetrics(Protocol):
    """What the relay's traffic moves in the metrics (``adapters.metrics.Metrics``)."""

    def accepted(self, pool: str) -> None: ...

    def attempt(self, pool: str, source_ip: str, result: str, destination: str = "") -> None: ...


class Rotation(Protocol):
    """What the relay asks of the rotation side: the :class:`Controller`'s methods it uses.

    The daemon passes its controller; a test of the relay may pass a scripted one.
    """

    @property
    def pools(self) -> Mapping[str, Pool]:
        """The pools by name, as the rotation side holds them (live: a reload changes them)."""
        ...

    async def candidates(self, pool: str, now: datetime) -> Sequence[IpCandidate]: ...

    def listing_counts(self, pool: str) -> Mapping[str, int]: ...

    def take(self, pool: str, ip: str, now: datetime) -> bool: ...

    def on_reply(self, reply: RemoteReply) -> None: ...

    def on_relay_alert(self, alert: Alert) -> bool: ...

    def on_bind_failure(self, ip: str, pool: str, error: str, now: datetime) -> None: ...


def node_name(config: Config) -> str:
    """``[node] name``, or the host's name: what logs, audit events and alerts call this node."""
    return config.node.name or socket.gethostname().split(".")[0] or "hrmonitor"


def build_controller(
    config: Config, store: Store, alerts: AlertSink, monitor: Monitor | None = None
) -> Controller:
    """The rotation controller; with ``monitor``, it re-checks IPs and hears every sweep."""
    recheck = None
    if monitor is not None:
        sweeper = monitor

        async def recheck_ip(ip: str) -> None:
            await sweeper.sweep([ip], pool=sweeper.pool_of(ip))

        recheck = recheck_ip
    controller = Controller(
        store,
        config.core_pools(),
        [z.key for z in zone_lists(config)],
        alerts,
        recheck=recheck,
        feedback_rules=load_feedback_files([f.path for f in config.rule_files(RuleKind.FEEDBACK)]),
        blocklist_pause=config.rotation.blocklist_pause,
        blocklist_destinations=config.rotation.blocklist_destinations,
        blocklist_window=config.rotation.blocklist_window,
        bind_pause=config.rotation.bind_pause,
        probe=check_bindable,
        node=node_name(config),  # its volume rows are this node's
    )
    if monitor is not None:
        monitor.on_sweep(controller.on_sweep_report)
    return controller


def build_relay(
    config: Config,
    store: Store,
    clock: Clock,
    *,
    router: Router,
    controller: Rotation,
    sender: Sender,
    mail: MailDns,
    on_alert: Callable[[Alert], None] | None = None,
    feed: TrafficFeed | None = None,
    watcher: SurgeWatcher | None = None,
    metrics: RelayMetrics | None = None,
) -> Relay:
    """The acceptance pipeline and the queue runner, sending from the controller's eligible IPs.

    Every accepted message and every attempt that got a remote reply is told to
    ``feed`` (the surge watcher) and counted in ``metrics``.
    """
    delivery = config.delivery

    async def on_accepted(submission: Submission, decision: RouteDecision) -> str | None:
        # Runs after the 250 (Acceptance starts it); the CPU work is on the feed's thread.
        if metrics is not None:
            metrics.accepted(decision.pool)
        if feed is None:
            return None
        return await feed.accepted_off_loop(submission, decision)

    def on_outcome(recipient: DueRecipient, outcome: Outcome) -> None:
        if metrics is not None:
            metrics.attempt(
                outcome.pool, outcome.source_ip or "-", str(outcome.status), recipient.domain
            )
        if feed is not None:
            feed.outcome(recipient, outcome)

    pools = config.core_pools()

    def relay_alert(alert: Alert) -> None:
        # "No eligible IP" only asks the controller's pool-exhausted latch to look
        # (one owner, one definition); every other alert goes where the caller said.
        if not controller.on_relay_alert(alert) and on_alert is not None:
            on_alert(alert)

    return Relay(
        queue=QueueRepository(store.engine, node=store.node),
        route=route_with(router),
        picker=PoolPicker(
            controller.candidates,
            use_listed(controller.pools, controller.listing_counts),  # live: a reload changes it
            take=controller.take,
        ),
        mx=mail.mx_hosts,
        addresses=mail.addresses,
        sender=sender,
        clock=clock,
        settings=RelaySettings(
            hostname=config.listener.hostname,
            pool_ips={p.name: frozenset(p.all_ips) for p in pools},
            retry=RetryPolicy.of(delivery.retry, delivery.max_queue_time),
            concurrency=delivery.concurrency,
            per_destination=delivery.per_destination_concurrency,
            port=delivery.port,
        ),
        on_reply=controller.on_reply,
        on_alert=relay_alert,
        on_bind_failure=controller.on_bind_failure,
        stored_form=router.stored_form,
        on_accepted=on_accepted if feed is not None or metrics is not None else None,
        on_outcome=on_outcome if feed is not None or metrics is not None else None,
        tag_sender=watcher.tag_sender if watcher is not None and config.verp.enabled else None,
    )


def build_listener(
    config: Config,
    relay: Relay,
    clock: Clock,
    *,
    authenticate: Callable[[str, str], str | None] | None = None,
) -> Listener:
    """The SMTP listener, handing every accepted message to ``relay``.

    ``authenticate``: SMTP AUTH (``app.build.authenticator``), None for no AUTH.
    """
    return Listener(listener_settings(config), relay.accept, clock, authenticate)
