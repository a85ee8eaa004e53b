"""One compiled pass finds what a tick's arbitration acts on: asking walkers, objects due a queue rule, steps.

:meth:`townlet.world.state.World.arbitrate` runs three scans in order (who asks for an object, which
objects are due a queue rule, where each walker steps), and Python acts between them only when one finds
something. :func:`survey` runs them in one call and stops after the first that finds work, so the
Python between them runs first and the scans after it see its changes: the common tick (nobody asks,
nothing is due) costs one dispatch instead of three, with the same results. The rules stay in their own
kernels (:func:`townlet.world.scans.asking`, :func:`townlet.world.queues.due`,
:func:`townlet.world.movement.plan`), which :func:`survey` calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from townlet.world import scans
from townlet.world.movement import plan
from townlet.world.queues import due

if TYPE_CHECKING:
    from townlet.world.state import World

# Where a survey starts: from the asking scan, from the queue rules (the requests were handled), or at the plan.
ASK, DUE, PLAN = 0, 1, 2


def survey(world: World, stage: int) -> tuple[int, int, int, int, int, int]:
    """Run the scans from ``stage`` on; return ``(asking, due, arrived, lost, going, waits)`` (see :func:`_survey`)."""
    a, o, q, g, wx, cfg = world.agents, world.objects, world.queues, world.grid, world.weather, world.queues.cfg
    return _survey(
        stage,
        (a.alive, a.activity, a.requested, a.target_obj, a.dest_field, a.tile, a.wait_until),
        g.fields.arrays,
        g.offsets,
        g.outdoors,
        (o.reserved_by, o.reserved_at, o.user, q.length, q.head_since, q._due),
        (world.config.queues.reserve_radius, cfg.reservation_timeout, cfg.queue_timeout),
        float(wx.rain_cost) if wx.is_raining else 0.0,
        world.tick,
        world.found,
        world.step_into,
    )


@numba.njit(cache=True)
def _survey(
    stage: int,
    agents: tuple,
    fields: tuple,
    offsets: np.ndarray,
    outdoors: np.ndarray,
    objects: tuple,
    limits: tuple,
    rain_cost: float,
    tick: int,
    found: np.ndarray,
    step_into: np.ndarray,
) -> tuple[int, int, int, int, int, int]:
    """The asking scan, the due scan and the movement plan from ``stage`` on, up to the first that finds work.

    ``agents`` is ``(alive, activity, requested, target_obj, dest_field, tile, wait_until)``, ``objects`` is
    ``(reserved_by, reserved_at, user, length, head_since, due_out)`` and ``limits`` is ``(reserve_radius,
    reservation_timeout, queue_timeout)``. Returns ``(asking, due, arrived, lost, going, waits)``: the asking
    walkers in ``found[ASKING]``, the due objects in ``due_out``, the plan's rows as
    :func:`~townlet.world.movement.plan` writes them; the counts of scans not run are 0. From ``ASK``,
    ``waits`` counts the waits that end this tick (:func:`~townlet.world.scans.waits_ending`): nothing in
    arbitration starts a wait, so when it is 0 the closing :func:`~townlet.world.scans.finish_waits` has
    nothing to do.
    """
    alive, activity, requested, target_obj, dest_field, tile, wait_until = agents
    reserved_by, reserved_at, user, length, head_since, due_out = objects
    radius, reservation_timeout, queue_timeout = limits
    waits = 0
    if stage <= ASK:
        waits = scans.waits_ending(alive, activity, wait_until, tick)
        n = scans.asking(alive, activity, requested, target_obj, dest_field, tile, fields, radius, found[scans.ASKING])
        if n:
            return n, 0, 0, 0, 0, waits
    if stage <= DUE:
        n = due(reserved_by, reserved_at, user, length, head_since, tick, reservation_timeout, queue_timeout, due_out)
        if n:
            return 0, n, 0, 0, 0, waits
    arrived, lost, going = plan(
        alive, activity, tile, dest_field, fields, offsets, outdoors, rain_cost, tick, found, step_into
    )
    return 0, 0, arrived, lost, going, waits
