"""``hrmonitor queue`` (alias ``mailq``): the mail queue, as Postfix's mailq, qshape, postsuper
and postqueue -f show and change it, against the store a running daemon uses.

Queue IDs may be shortened to any unique prefix (the listing shows 12
characters). Actions are audited with the actor ``operator:<$USER>``; ``queue
show ID`` lists them with the message's attempts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from hrmonitor.cli.options import config_option, json_option, load, operator_actor, print_json
from hrmonitor.core.units import parse_duration
from hrmonitor.errors import OperatorError

F = TypeVar("F", bound=Callable[..., Any])

SHORT_ID = 12


def filter_options(command: F) -> F:
    """The filters every queue command shares; all given must hold."""
    options = [
        click.option("--pool", default=None, help="Messages routed to this pool."),
        click.option(
            "--destination", default=None, help="Messages with a recipient at this domain."
        ),
        click.option(
            "--sender", default=None, help="Messages whose envelope sender contains this."
        ),
        click.option(
            "--state",
            type=click.Choice(["held", "deferred", "active"]),
            default=None,
            help="held: on hold; deferred: waiting after a failed attempt; "
            "active: waiting for its first attempt or being delivered.",
        ),
        click.option(
            "--older-than", default=None, help="Messages that arrived longer ago (90s, 15m, 2d)."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _filter(
    ids: tuple[str, ...],
    pool: str | None,
    destination: str | None,
    sender: str | None,
    state: str | None,
    older_than: str | None,
    now: datetime,
) -> Any:
    from hrmonitor.adapters.store.queue.admin import QueueFilter, QueueState  # noqa: PLC0415

    before = None
    if older_than is not None:
        try:
            before = now - parse_duration(older_than)
        except ValueError as error:
            raise OperatorError(f"--older-than {older_than!r}: {error}") from None
    return QueueFilter(
        ids=ids,
        pool=pool,
        destination=destination,
        sender=sender,
        state=QueueState(state) if state else None,
        arrived_before=before,
    )


def _tools(config_path: str | None) -> tuple[Any, Callable[[], None]]:
    from hrmonitor.app.queue import open_queue_tools  # noqa: PLC0415  (light CLI start)

    return open_queue_tools(load(config_path))


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _print_listing(data: dict[str, Any]) -> None:
    messages = data["messages"]
    if not messages:
        click.echo("Mail queue is empty (nothing matched)")
        return
    click.echo(
        f"{'QUEUE ID':<{SHORT_ID}}  {'AGE':>5} {'SIZE':>8}  {'STATE':<8}  "
        "POOL  SENDER -> RECIPIENTS  (LAST REPLY)"
    )
    for m in messages:
        recipients = ", ".join(r["address"] for r in m["recipients"])
        reply = f"  ({m['last_reply']})" if m["last_reply"] else ""
        click.echo(
            f"{m['id'][:SHORT_ID]}  {age(m['age_seconds']):>5} {m['size']:>8}  {m['state']:<8}  "
            f"{m['pool']}  <{m['sender']}> -> {recipients}{reply}"
        )
    from hrmonitor.services.queue_admin import AGE_BUCKETS  # noqa: PLC0415

    total = sum(len(m["recipients"]) for m in messages)
    click.echo(f"-- {len(messages)} message(s), {total} recipient(s)")
    click.echo("")
    header = ["T", *(str(b) for b in AGE_BUCKETS), f"{AGE_BUCKETS[-1]}+"]
    width = max([len(r["destination"]) for r in data["summary"]] + [11])
    pool = None
    for row in data["summary"]:
        if row["pool"] != pool:
            pool = row["pool"]
            click.echo(f"pool {pool} (recipients by age in minutes)")
            click.echo(f"  {'destination':<{width}} " + " ".join(f"{h:>5}" for h in header))
        counts = [row["total"], *row["by_age"]]
        click.echo(f"  {row['destination']:<{width}} " + " ".join(f"{c:>5}" for c in counts))


def _list(config_path: str | None, as_json: bool, **filters: Any) -> None:
    now = datetime.now(UTC)
    tools, close = _tools(config_path)
    try:
        data = tools.listing(_filter((), now=now, **filters), now)
    finally:
        close()
    if as_json:
        print_json(data)
    else:
        _print_listing(data)


QUEUE_HELP = """The mail queue: list it (like mailq and qshape), show one message,
and hold, release, flush, delete or bounce messages (like postsuper and
postqueue -f), audited. Works against a running daemon's store.

\\b
Without a subcommand: one line per queued message (queue ID, age, size,
state, pool, sender, recipients, last reply), then recipients per pool and
destination domain by age in minutes (qshape). States: held (on hold: the
runner leaves it), deferred (waiting after a failed attempt), active
(waiting for its first attempt, or being delivered).
"""


@click.group("queue", invoke_without_command=True, help=QUEUE_HELP)
@filter_options
@json_option
@config_option
@click.pass_context
def queue_group(
    ctx: click.Context, /, config_path: str | None, as_json: bool, **filters: Any
) -> None:
    if ctx.invoked_subcommand is None:
        _list(config_path, as_json, **filters)


@click.command("mailq")
@filter_options
@json_option
@config_option
def mailq_command(config_path: str | None, as_json: bool, **filters: Any) -> None:
    """The mail queue, one line per message, and its shape: ``hrmonitor queue`` by another name."""
    _list(config_path, as_json, **filters)


@queue_group.command("show")
@click.argument("queue_id")
@json_option
@config_option
def show_command(queue_id: str, as_json: bool, config_path: str | None) -> None:
    """One message: its routing reasons, every recipient, every attempt, operator actions."""
    now = datetime.now(UTC)
    tools, close = _tools(config_path)
    try:
        data = tools.show(queue_id, now)
    finally:
        close()
    if as_json:
        print_json(data)
        return
    click.echo(f"queue ID {data['id']}  Message-ID {data['message_id'] or '-'}")
    click.echo(
        f"arrived {data['arrived_at'].isoformat()} ({age(data['age_seconds'])} ago) "
        f"from {data['client_ip']} (tenant {data['tenant']}), {data['size']} bytes"
    )
    click.echo(f"sender <{data['sender']}>  pool {data['pool']} ({data['risk']})")
    for reason in data["reasons"] or [{"rule": "-", "detail": "no rule matched: the normal pool"}]:
        click.echo(f"  routed by {reason['rule']}: {reason['detail']}")
    click.echo("recipients:")
    for r in data["recipients"]:
        reply = f": {r['last_reply']}" if r["last_reply"] else ""
        click.echo(f"  {r['address']}  {r['status']}, {r['attempts']} attempt(s){reply}")
    click.echo("attempts:")
    for a in data["attempts"]:
        source = a["source_ip"] or "-"
        click.echo(
            f"  {a['at'].isoformat()}  {a['recipient']}  from {source} ({a['pool']}) "
            f"to {a['destination'] or '-'}: {a['reply']}"
        )
    if data["actions"]:
        click.echo("operator actions:")
    for action in data["actions"]:
        click.echo(
            f"  {action['at'].isoformat()}  {action['action']} by {action['by']}: "
            f"{action['reason']} ({', '.join(action['recipients'])})"
        )


def _action_command(action: str, help_text: str) -> click.Command:
    @click.argument("ids", nargs=-1)
    @filter_options
    @click.option("--all", "everything", is_flag=True, help="Every queued message.")
    @click.option("--reason", default="", help="Why (stored in the audit trail).")
    @json_option
    @config_option
    def command(
        ids: tuple[str, ...],
        everything: bool,
        reason: str,
        as_json: bool,
        config_path: str | None,
        **filters: Any,
    ) -> None:
        from hrmonitor.adapters.store.queue.admin import QueueAction  # noqa: PLC0415

        now = datetime.now(UTC)
        wanted = _filter(ids, now=now, **filters)
        if wanted.empty and not everything:
            raise OperatorError(f"queue {action}: name queue IDs, a filter, or --all")
        tools, close = _tools(config_path)
        try:
            results = asyncio.run(
                tools.act(
                    QueueAction(action),
                    wanted,
                    now=now,
                    actor=operator_actor(),
                    reason=reason.strip() or f"queue {action} by the operator",
                )
            )
        finally:
            close()
        rows = [
            {
                "id": r.message.id,
                "pool": r.message.pool,
                "sender": r.message.mail_from,
                "changed": list(r.changed),
                "skipped": list(r.skipped),
                "dsn": r.dsn,
            }
            for r in results
        ]
        if as_json:
            print_json({"action": action, "messages": rows})
            return
        for row in rows:
            line = f"{row['id'][:SHORT_ID]}: {action} {len(row['changed'])} recipient(s)"
            if row["skipped"]:
                left = ", ".join(row["skipped"])
                line += f"; left alone (being delivered, or in no state to {action}): {left}"
            if row["dsn"]:
                line += f"; DSN {row['dsn'][:SHORT_ID]} queued to <{row['sender']}>"
            click.echo(line)
        changed = sum(1 for row in rows if row["changed"])
        click.echo(f"queue {action}: {changed} message(s) changed")

    command.__doc__ = help_text
    return queue_group.command(action)(command)


hold_command = _action_command(
    "hold", "Put messages on hold (postsuper -h): the runner leaves them until released."
)
release_command = _action_command(
    "release", "Release held messages (postsuper -H): due for delivery now."
)
flush_command = _action_command(
    "flush", "Make waiting messages due now (postqueue -f); held ones stay held."
)
delete_command = _action_command(
    "delete", "Delete messages (postsuper -d), without a DSN; not while being delivered."
)
bounce_command = _action_command(
    "bounce",
    "Return messages to their senders with a DSN (5.0.0) that leaves through the "
    "high-risk pool; none for the null sender or for a DSN.",
)
