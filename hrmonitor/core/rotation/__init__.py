"""The rotation state machine: evidence + now -> transitions, actions and alerts, per pool.

- ``decide``: the entry point, ``decide(pool, views, evidence, now)``, and the names it speaks.
- ``evidence`` (what decide is fed) and ``decision`` (what it says).
- One module per rule: ``sweep`` (1, listings), ``replies`` (2, remote replies),
  ``operator`` (3, operator actions), ``timers`` (4, time passing), ``promotion`` (5-6).
- ``run`` (one decision in progress) and ``views`` (the pool's IPs as rotation and the
  picker see them).
- What rotation decides about: ``suspension`` (timed bans), ``warmup`` (daily caps of a
  promoted IP) and ``selection`` (which IP of a pool sends the next attempt).
"""
