"""``hrmonitor run``: the daemon, wired once, opened in order and closed in reverse.

Start-up: store (migrated, pools registered) -> alerts -> DNSBL engine ->
monitor -> rotation controller (loads IP states) -> router -> relay (recovers
what a crash left mid-delivery) -> bind check of every pool IP -> listener ->
scheduled jobs. SIGTERM/SIGINT: stop the listener (no new mail), let the queue
runner finish the deliveries in flight, stop the jobs, close the rest. SIGHUP:
reopen log files and reload the config in place (``app.reload``); a bad config
is logged and the running one kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from functools import partial

from hrmonitor.adapters import systemd
from hrmonitor.adapters.clock import SystemClock
from hrmonitor.adapters.malloc import fix_mmap_threshold
from hrmonitor.adapters.metrics import Metrics
from hrmonitor.adapters.scheduler import Scheduler
from hrmonitor.adapters.smtp_in import Listener, ListenerSettings
from hrmonitor.adapters.smtp_out import Connections, check_bindable
from hrmonitor.adapters.store import Store
from hrmonitor.adapters.store.nodes import ROLES, ROTATION, SWEEPER, NodeRegistry
from hrmonitor.adapters.store.queue.repository import QueueRepository
from hrmonitor.adapters.store.sender_counts import SenderCounts
from hrmonitor.app.build import (
    alert_channels,
    batv_keys,
    bounce_patterns,
    build_router,
    dnsbl_engine,
    mail_dns,
    node_name,
    open_configured_store,
    schedule_warnings,
    surge_settings,
    zone_lists,
)
from hrmonitor.app.compose import (
    build_controller,
    build_listener,
    build_monitor,
    build_relay,
)
from hrmonitor.app.event_loop import run_loop
from hrmonitor.app.metrics_refresh import refresh_metrics
from hrmonitor.app.reload import (
    Reloadable,
    check_pools,
    hand_over,
    plan,
    read_config,
    reopen_log_files,
    restart_only,
)
from hrmonitor.app.smtp_parts import authenticator, listener_settings, outbound_connections
from hrmonitor.app.validate import config_problems
from hrmonitor.app.worker_processes import DeliveryProcesses, ListenerProcesses
from hrmonitor.config.loading import Config
from hrmonitor.config.sections import split_address
from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.model import Clock, Pool
from hrmonitor.core.routing.limits import DAY
from hrmonitor.errors import ConfigError, StoreError, raise_problems
from hrmonitor.services.alerting import Alerting, Outbox
from hrmonitor.services.audit_log import AuditTail
from hrmonitor.services.cluster import Cluster
from hrmonitor.services.monitor import Monitor
from hrmonitor.services.relay.routing import Router
from hrmonitor.services.relay.runner import Relay
from hrmonitor.services.rotation.controller import Controller
from hrmonitor.services.surge.traffic import TrafficFeed
from hrmonitor.services.surge.watcher import SurgeWatcher

log = logging.getLogger(__name__)

ROUTER_PRUNE = timedelta(minutes=1)


def run_daemon(config: Config) -> None:
    """Check everything the config points at (ports too), then run until SIGTERM/SIGINT."""
    raise_problems(config_problems(config, ports=True))
    # Large buffers (a message's) go back to the kernel when freed (adapters.malloc).
    fix_mmap_threshold()
    run_loop(Daemon(config).run())


class Daemon:
    """Monitor on a schedule, relay mail, rotate IPs, tell people."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.metrics = Metrics(
            node=node_name(config), destination_labels=config.metrics.destination_labels
        )
        self.metrics_port: int | None = None
        self.listener_port: int | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._reloadable: Reloadable | None = None
        self._reloading = asyncio.Lock()
        self.cluster: Cluster | None = None
        self._relay_ref: Relay | None = None
        self._sweep_all: Callable[[], Awaitable[None]] | None = None
        self._jobs_started = False

    async def _restore_sending_limits(self, queue: QueueRepository, router: Router) -> None:
        """Senders' last day of mail, from the queue, into the router's limit windows."""
        since = self.clock.now() - DAY
        sent = await asyncio.to_thread(queue.recipients_sent_since, since)
        senders = router.restore_counts(sent)
        if senders:
            log.info("sending limits: counted the last day's mail of %d sender(s)", senders)

    def stop(self) -> None:
        self.stopping.set()

    async def reload(self) -> bool:
        """SIGHUP: reopen log files, then re-read the config and apply it in place.

        True when the new config was applied; False when it was refused (each
        problem logged) and the running config kept (``app.reload``).
        """
        reopen_log_files()
        parts = self._reloadable
        if parts is None:
            log.warning("reload: still starting up, nothing reloaded")
            return False
        async with self._reloading:
            source = self.config.source
            try:
                new = await asyncio.to_thread(read_config, source)
                built = await asyncio.to_thread(plan, self.config, new)
                await check_pools(built, parts, self.clock.now())
            except (ConfigError, StoreError) as error:
                problems = error.problems if isinstance(error, ConfigError) else (error,)
                for problem in problems:
                    log.error("reload refused: %s", problem)
                log.error("reload refused: keeping the running config of %s", source)
                return False
            moved = await hand_over(built, parts, self.clock.now())
            waiting = restart_only(self.config, new)
            known = {ip for pool in self.config.core_pools() for ip in pool.all_ips}
            self.config = new
            await self._check_bindable(parts.controller, skip=known)
        for line in moved:
            log.info("reload: %s", line)
        for section in waiting:
            log.warning("reload: %s changed: takes effect at the next restart", section)
        log.info(
            "reloaded %s: routing rules, limits, tenants, reply patterns, alerts, pools, zones",
            source,
        )
        return True

    async def run(self) -> None:
        config, clock = self.config, self.clock
        lists = zone_lists(config)
        router = build_router(config)
        patterns = bounce_patterns(config)
        for warning in schedule_warnings(config, lists):
            log.warning("%s", warning)
        pools = config.core_pools()
        # The signal handlers are removed last (``signals`` unwinds after ``stack``): a
        # second SIGTERM during the drain is the same request again, not the default
        # action that kills the daemon mid-drain.
        async with AsyncExitStack() as signals, AsyncExitStack() as stack:
            stack.push_async_callback(router.close)  # the rspamd client, if any
            store = await asyncio.to_thread(open_configured_store, config, clock)
            stack.callback(store.close)
            stack.push_async_callback(self._settle)  # runs just before store.close
            node = node_name(config)
            store.node = node
            _name_node_in_logs(node)
            registry = NodeRegistry(store.engine, node, config.node.lease)
            # Before anything else: a second daemon under this name (or on this SQLite
            # file) must stop here, before it releases claims that are not its own.
            await asyncio.to_thread(registry.join, socket.gethostname(), os.getpid())
            cluster = Cluster(
                registry,
                ROLES,
                lease=config.node.lease,
                heartbeat=config.node.heartbeat,
                clock=clock,
                on_claims_freed=self._wake_relay,
                on_role_gained=self._role_gained,
                on_members=self._share_destinations,
            )
            self.cluster = cluster
            # Pushed here so it runs after the relay drained: this node stays alive
            # (its claims its own) until its last delivery is recorded.
            stack.push_async_callback(cluster.stop)
            await cluster.beat()  # the roles, before the jobs that need them start
            cluster.start()
            alerting = Alerting(
                store,
                alert_channels(config),
                config.alerting.repeat_after,
                self.metrics,
                outbox=Outbox(
                    queue_size=config.alerting.queue_size,
                    attempts=config.alerting.attempts,
                    shutdown_wait=config.alerting.shutdown_wait.total_seconds(),
                ),
                on_dropped=self.metrics.alert_dropped,
                node=node,
            )
            # Closed after every part that raises alerts, before the store: queued
            # alerts get shutdown_wait to go out, never longer.
            stack.push_async_callback(alerting.close)
            engine = dnsbl_engine(config)
            await engine.open()
            stack.push_async_callback(engine.close)
            monitor = build_monitor(config, engine, store, clock, alerting.emit_batch, self.metrics)
            open_alerts = await asyncio.to_thread(store.open_alerts)
            await monitor.resolve_unconfigured_zones(open_alerts)
            await monitor.resolve_unconfigured_pools(open_alerts)
            audit_tail = AuditTail(store, node)
            await audit_tail.start()  # what the trail holds already is history, not news
            controller = build_controller(config, store, alerting, monitor)
            await controller.load(clock.now())
            for line in await controller.readmit(clock.now()):
                log.info("start: %s", line)
            stack.push_async_callback(controller.close)

            watcher = SurgeWatcher(surge_settings(config), alerting.emit, batv=batv_keys(config))
            feed = TrafficFeed(watcher, patterns)
            stack.callback(feed.close)
            connections = await self._outbound()
            stack.push_async_callback(connections.close)

            def raise_alert(alert: Alert) -> None:
                self._spawn(alerting.emit(alert))

            router.on_alert = raise_alert  # the sending-limit alert, raised and resolved
            relay = build_relay(
                config,
                store,
                clock,
                router=router,
                controller=controller,
                sender=connections,
                mail=mail_dns(config),
                on_alert=raise_alert,
                feed=feed,
                watcher=watcher,
                metrics=self.metrics,
            )
            self._relay_ref = relay
            relay.share_destinations(await asyncio.to_thread(registry.live_count))
            await relay.recover(unowned_before=clock.now() - config.node.lease)
            await self._restore_sending_limits(relay.queue, router)
            router.reopen_limit_alerts(
                sender
                for record in open_alerts  # read at start; zones and pools resolve none of these
                if record.kind == AlertKind.SENDING_LIMIT
                for sender in [_sender_of(record.payload)]
                if sender
            )
            router.prune(clock.now())  # those already back under (a raised limit) resolve now
            counts = SenderCounts(store.engine, node)
            await _sync_limits(router, counts, clock)  # the other nodes' last day, too
            stack.push_async_callback(_sync_limits, router, counts, clock)  # the last counts
            runner = asyncio.create_task(relay.run(), name="queue-runner")
            stack.push_async_callback(_stop_relay, relay, runner)
            await self._check_bindable(controller)

            listener = await self._start_listener(relay)
            self.listener_port = listener.port
            stack.push_async_callback(listener.stop)  # closed first: no new mail while draining

            if config.metrics.bind:
                host, port = split_address(config.metrics.bind)
                self.metrics_port = self.metrics.serve(host, port)
                log.info("metrics on http://%s:%d/metrics", host, self.metrics_port)
                stack.callback(self.metrics.close)

            scheduler = Scheduler()
            self._sweep_all = lambda: _sweep_all(monitor, list(self.config.pools))
            sweeps = SweepJobs(scheduler, cluster, monitor, clock)
            for pool in pools:
                sweeps.schedule(pool)
            scheduler.every(
                "rotation:tick",
                config.rotation.tick,
                _job(lambda: _rotation_tick(cluster, controller, clock)),
            )
            scheduler.every("audit:log", config.rotation.tick, _job(lambda: _log_audit(audit_tail)))
            scheduler.every(
                "routing:prune", ROUTER_PRUNE, _job(lambda: _prune(router, counts, clock))
            )
            scheduler.every(
                "limits:sync", config.limits.sync, _job(lambda: _sync_limits(router, counts, clock))
            )
            scheduler.every(
                "surge:tick", config.surge.bucket, _job(lambda: watcher.tick(clock.now()))
            )
            scheduler.every(
                "metrics:refresh",
                config.metrics.refresh,
                _job(lambda: self._refresh_metrics(store)),
                first_run=clock.now(),
            )
            scheduler.start()
            stack.push_async_callback(scheduler.stop)
            self._reloadable = Reloadable(
                router, alerting, controller, monitor, listener, relay, store, sweeps
            )
            self._install_signals(signals)
            log.info(
                "hrmonitor running: pools %s, lists %s, SMTP on %s:%s",
                ", ".join(config.pools),
                ", ".join(z.key for z in lists),
                self._listener_settings().host,
                self.listener_port,
            )
            self._jobs_started = True
            self.ready.set()
            systemd.notify("READY=1", f"STATUS=relaying on port {self.listener_port}")
            await self.stopping.wait()
            log.info("hrmonitor stopping: draining deliveries in flight")
            systemd.notify("STOPPING=1", "STATUS=draining deliveries in flight")

    # --- the cluster ----------------------------------------------------------------------

    def _share_destinations(self, nodes: int) -> None:
        if self._relay_ref is not None:
            self._relay_ref.share_destinations(nodes)

    def _wake_relay(self) -> None:
        if self._relay_ref is not None:
            self._relay_ref.wake()

    async def _role_gained(self, role: str) -> None:
        """A role taken over from another node: do its work now, not at the next interval.

        The node that held it may have died mid-sweep; at start-up the scheduler's
        first run does this anyway.
        """
        if role == SWEEPER and self._jobs_started and self._sweep_all is not None:
            await self._sweep_all()

    # --- parts ----------------------------------------------------------------------------

    async def _outbound(self) -> Connections | DeliveryProcesses:
        """Outbound SMTP in this process, or in ``[delivery] processes`` of its own."""
        config = self.config
        if config.delivery.processes == 0:
            return outbound_connections(config)
        processes = DeliveryProcesses(
            config_path=config.source,
            count=config.delivery.processes,
            log_level=logging.getLogger().getEffectiveLevel(),
        )
        await processes.start()
        return processes

    async def _start_listener(self, relay: Relay) -> Listener | ListenerProcesses:
        """SMTP in this process, or in ``[listener] processes`` of its own (issue 10)."""
        config = self.config
        if config.listener.processes == 0:
            listener = build_listener(config, relay, self.clock, authenticate=authenticator(config))
            await listener.start()
            return listener
        processes = ListenerProcesses(
            self._listener_settings(),
            relay.accept,
            config_path=config.source,
            count=config.listener.processes,
            log_level=logging.getLogger().getEffectiveLevel(),
        )
        await processes.start()
        return processes

    def _listener_settings(self) -> ListenerSettings:
        return listener_settings(self.config)

    async def _check_bindable(
        self, controller: Controller, skip: Collection[str] = frozenset()
    ) -> None:
        """Every pool IP must be bindable; one that is not is suspended, never replaced.

        ``skip``: IPs already checked (a reload probes only the IPs it added).
        """
        now = self.clock.now()
        for pool in self.config.core_pools():
            ips = [ip for ip in pool.all_ips if ip not in skip]
            if not ips:
                continue
            problems = await asyncio.to_thread(check_bindable, ips)
            for ip, problem in problems.items():
                if problem is not None:
                    log.error("pool %s: source IP %s cannot be bound: %s", pool.name, ip, problem)
                    controller.on_bind_failure(ip, pool.name, problem, now)

    async def _refresh_metrics(self, store: Store) -> None:
        await asyncio.to_thread(refresh_metrics, self.metrics, self.config, store, self.clock.now())
        if self.cluster is not None:
            self.metrics.set_roles(
                self.cluster.name, {role: self.cluster.holds(role) for role in ROLES}
            )

    async def _settle(self) -> None:
        """Let store work still in flight finish before the store closes.

        Alerts sent in the background, and ``asyncio.to_thread`` calls whose
        awaiting task was cancelled at shutdown (a sweep's store write keeps
        running in its thread), would otherwise hold a connection past
        ``store.close()``.
        """
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_default_executor()

    def _spawn(self, work: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_hup(self) -> None:
        if self.stopping.is_set():
            log.info("SIGHUP while stopping: nothing reloaded")
            return
        self._spawn(self.reload())

    def _install_signals(self, stack: AsyncExitStack) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):  # not the main thread
                continue
            stack.callback(loop.remove_signal_handler, sig)
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        except (NotImplementedError, RuntimeError, AttributeError):  # no SIGHUP (Windows)
            return
        stack.callback(loop.remove_signal_handler, signal.SIGHUP)


def _job(make: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        await make()

    return job


async def _as_role(cluster: Cluster, role: str, work: Callable[[], Awaitable[object]]) -> None:
    """Run ``work`` only on the node that holds ``role`` now."""
    if cluster.holds(role):
        await work()


class SweepJobs:
    """One sweep job per pool, on the node that holds the sweeper role; a reload replaces them."""

    def __init__(self, scheduler: Scheduler, cluster: Cluster, monitor: Monitor, clock: Clock):
        self._scheduler = scheduler
        self._cluster = cluster
        self._monitor = monitor
        self._clock = clock

    def schedule(self, pool: Pool) -> None:
        """Sweep ``pool`` every ``pool.interval``, the first time now."""
        sweep = partial(self._monitor.sweep_pool, pool.name)
        self._scheduler.every(
            f"sweep:{pool.name}",
            pool.interval,
            _job(partial(_as_role, self._cluster, SWEEPER, sweep)),
            first_run=self._clock.now(),
        )

    def replace(self, old: Sequence[Pool], new: Sequence[Pool], sweep_all_now: bool) -> None:
        """Jobs for ``new``: a removed pool's job goes, a new or changed pool's (IPs,
        interval) starts over with a sweep now, as do all of them when the zones changed."""
        before = {pool.name: pool for pool in old}
        for name in before.keys() - {pool.name for pool in new}:
            self._scheduler.remove(f"sweep:{name}")
            log.info("reload: pool %s removed: no more sweeps", name)
        for pool in new:
            was = before.get(pool.name)
            same = was is not None and (was.all_ips, was.interval) == (pool.all_ips, pool.interval)
            if sweep_all_now or not same:
                self.schedule(pool)


async def _sweep_all(monitor: Monitor, pools: list[str]) -> None:
    for pool in pools:
        try:
            await monitor.sweep_pool(pool)
        except Exception:
            log.exception("sweep of pool %s failed", pool)


async def _rotation_tick(cluster: Cluster, controller: Controller, clock: Clock) -> None:
    """The holder of the rotation role applies time's transitions; the others follow the store.

    The others' controllers must still see what the holder (and the sweeper) decided:
    their pickers choose source IPs from that view.
    """
    if cluster.holds(ROTATION):
        await controller.tick(clock.now())
    else:
        await controller.load(clock.now())


async def _log_audit(tail: AuditTail) -> None:
    """Operators' actions (other processes) and this node's decisions, each logged once."""
    try:
        await tail.poll()
    except Exception:
        log.exception("could not read the audit trail for the log")


def _name_node_in_logs(node: str) -> None:
    """Every line of this daemon's log names its node (several nodes, one log server):
    a ``node`` attribute on each record, which the CLI's formatters write."""
    tag = _NodeTag(node)
    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)


class _NodeTag(logging.Filter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        return True


async def _prune(router: Router, counts: SenderCounts, clock: Clock) -> None:
    now = clock.now()
    router.prune(now)
    await asyncio.to_thread(counts.prune, now - DAY - ROUTER_PRUNE)


async def _sync_limits(router: Router, counts: SenderCounts, clock: Clock) -> None:
    """Publish this node's sending-limit counts; take in what the other nodes published."""
    try:
        await asyncio.to_thread(counts.publish, router.take_unpublished())
        peers = await asyncio.to_thread(counts.read_peers, clock.now() - DAY)
    except Exception:
        log.exception("could not share the sending-limit counts")
        return
    router.merge_peer_counts(peers)


async def _stop_relay(relay: Relay, runner: asyncio.Task[None]) -> None:
    await relay.stop()
    await runner


def _sender_of(payload: Mapping[str, object]) -> str:
    """The sender an open ``sending-limit`` alert names (its details), or ""."""
    details = payload.get("details")
    sender = details.get("sender") if isinstance(details, Mapping) else None
    return sender if isinstance(sender, str) else ""
