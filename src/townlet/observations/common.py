"""The common block every variant starts with: self scalars, personality, social snippet, local summaries, flags.

One compiled pass (``_write_common``) loops over the rows of living agents and writes the whole block from
the world's slot-indexed arrays; at town sizes that costs less than checking which parts changed, so
every row is rewritten on every encode. The only Python work per encode is reading the queues (lists of
slots per object) into slot arrays.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numba
import numpy as np

from townlet.config.vocabulary import OPTIONS, WEATHERS
from townlet.observations.arrays import AgentArrays, ObjectArrays
from townlet.observations.commitment import commitment_left
from townlet.observations.embedding import embedding_table
from townlet.observations.layout import ACTIVITIES, FeatureLayout
from townlet.world.relationships import RIVALRY, TRUST

if TYPE_CHECKING:
    from townlet.world.state import World

TAU = 2.0 * np.pi
OPTION_COUNT = len(OPTIONS)
ACTIVITY_COUNT = len(ACTIVITIES)
WEATHER_COUNT = len(WEATHERS)

# Slots of the int64 ``spec`` array the kernel reads: block offsets (from the layout) and sizes (from config).
(
    NEEDS,
    WALLET,
    ITEMS,
    TIME,
    JOB,
    OPTION,
    COMMIT,
    ACTIVITY,
    LAST,
    AFFORDANCES,
    CTX,
    WEATHER,
    PERSONALITY,
    SOCIAL,
    TOP,
    DIM,
    LOCAL,
    RADIUS,
    FLAGS,
    COMMITMENT,
) = range(20)
# Slots of the float32 ``scales`` array: 1 / the config's observation scales.
WALLET_SCALE, INVENTORY_SCALE, DURATION_SCALE, CROWD_SCALE, QUEUE_SCALE = range(5)


class CommonInputs(NamedTuple):
    """What :func:`_write_common` reads after its per-encode scalars: the town's arrays, the block's spec, scratch."""

    out: np.ndarray  # float32[C, size] the slot-indexed observation buffer
    spec: np.ndarray  # int64 block offsets and sizes (the slot constants above)
    scales: np.ndarray  # float32 1 / the config's observation scales
    tpd: int  # ticks per day
    fresh: np.ndarray  # bool[C] agents seen for the first time (ctx_reset)
    job_start: np.ndarray  # int64[jobs + 1] shift start per job position (last: no job)
    job_end: np.ndarray  # int64[jobs + 1] shift end
    arrived_day: np.ndarray  # per job position: the day its holder last arrived
    other: np.ndarray  # int32[C, K] tie partners (-1: none; all -1 in relationship stage A)
    values: np.ndarray  # float32[C, K, 3] tie values
    of_agent: np.ndarray  # embedding row of each slot's identity (-1: none)
    embeddings: np.ndarray  # float32[rows + 1, dim] identity embeddings (last row zeros)
    width: int  # map width in tiles
    height: int  # map height in tiles
    occupancy: np.ndarray  # agents per tile
    xy: np.ndarray  # scratch int64[2, C]: tile coordinates of each row
    counts: np.ndarray  # scratch int64[C]: others nearby
    sat: np.ndarray  # scratch: summed-area table of occupancy
    power_on: np.ndarray  # bool[places] power runs
    water_on: np.ndarray  # bool[places] water runs
    queue_of: np.ndarray  # int32[C] the object whose queue each slot stands in (-1: none)
    position: np.ndarray  # int32[C] place in that queue (1: head)


class CommonBlock:
    """Writes the common block (see docs/observations.md) into the rows of living agents of a slot-indexed buffer.

    Args:
        world: The town (read only).
        layout: The variant's layout (the common block is the same in every variant).
    """

    def __init__(self, world: World, layout: FeatureLayout) -> None:
        cfg = world.config
        obs = cfg.observations
        self.world = world
        at = {f.name: f.start for f in layout.features}
        a = world.agents
        spec = np.zeros(COMMITMENT + 1, dtype=np.int64)
        spec[[NEEDS, WALLET, TIME, JOB, OPTION, COMMIT, ACTIVITY, CTX, WEATHER, PERSONALITY, LOCAL, FLAGS]] = [
            at[k]
            for k in (
                "needs.hunger",
                "wallet",
                "time.sin",
                "job.has_job",
                "option.GetFed",
                "option.commitment_left",
                "activity.idle",
                "ctx_reset",
                "weather.sunny",
                "personality.extroversion",
                "local.mean_trust",
                "flag.in_queue",
            )
        ]
        spec[ITEMS] = len(a.items)
        spec[AFFORDANCES] = len(world.manifest.affordances)
        spec[LAST] = at["last_action.success"] - spec[AFFORDANCES]
        spec[TOP] = obs.social_top
        spec[DIM] = cfg.identity.embedding_dim
        spec[SOCIAL] = spec[LOCAL] - 2 * spec[TOP] * (spec[DIM] + 3)
        spec[RADIUS] = obs.local_radius
        spec[COMMITMENT] = cfg.options.commitment_window
        self.spec = spec
        self.scales = np.array(
            [
                1.0 / obs.wallet_scale,
                1.0 / obs.inventory_scale,
                1.0 / obs.duration_scale,
                1.0 / obs.crowd_scale,
                1.0 / obs.queue_scale,
            ],
            dtype=np.float32,
        )
        ident = cfg.identity
        self.embeddings = embedding_table(ident.embedding_slots, ident.embedding_dim, obs.embedding_seed)
        emp = world.employment
        # Per job position plus a last entry for "no job" (index -1): a shift that never starts.
        self.job_start = np.append(emp.start, world.ticks_per_day * 2).astype(np.int64)
        self.job_end = np.append(emp.end, 0).astype(np.int64)
        cap = a.capacity
        g = world.grid
        self.xy = np.zeros((2, cap), dtype=np.int64)  # scratch: tile coordinates of each row
        self.counts = np.zeros(cap, dtype=np.int64)  # scratch: others nearby
        self.sat = np.zeros((g.height + 1) * (g.width + 1), dtype=np.int64)  # scratch: summed-area table
        self.queue_of = np.full(cap, -1, dtype=np.int32)  # the object whose queue each slot stands in
        self.position = np.zeros(cap, dtype=np.int32)  # 1 = head of that queue
        self.queue_length = np.zeros(len(world.objects.tile), dtype=np.int32)  # per object
        # Relationship stage A tracks ties but does not show them: the kernel reads an empty tie table instead
        # (the layout is unchanged; the social snippet, tie summaries and rival flag read 0).
        rel = world.relationships
        self.ties = (
            (rel.other, rel.values)
            if cfg.features.ties_observed
            else (np.full_like(rel.other, -1), np.zeros_like(rel.values))
        )
        self._queued: list[int] = []  # slots marked in queue_of / position
        self._lines: list[int] = []  # objects marked in queue_length

    def read_queues(self) -> bool:
        """Copy the world's queues into :attr:`queue_of`, :attr:`position` and :attr:`queue_length`.

        Returns whether any queue holds an agent.
        """
        w = self.world
        queue = w.objects.queue
        lines = w.queues.lines().tolist()
        if not lines and not self._lines:
            return False
        queue_of, position, length = self.queue_of, self.position, self.queue_length
        for s in self._queued:
            queue_of[s] = -1
            position[s] = 0
        for ob in self._lines:
            length[ob] = 0
        queued: list[int] = []
        for ob in lines:
            members = queue[ob]
            length[ob] = len(members)
            for k, s in enumerate(members, 1):
                queue_of[s] = ob
                position[s] = k
            queued += members
        self._queued, self._lines = queued, lines
        return bool(lines)

    def kernel_args(self, out: np.ndarray, fresh: np.ndarray) -> CommonInputs:
        """The inputs of :func:`_write_common` after its per-encode scalars (all live as long as the town).

        Args:
            out: The slot-indexed buffer.
            fresh: ``bool[capacity]`` slots whose agent is seen for the first time (their ``ctx_reset``).
        """
        w = self.world
        g = w.grid
        other, values = self.ties
        return CommonInputs(
            out=out,
            spec=self.spec,
            scales=self.scales,
            tpd=w.ticks_per_day,
            fresh=fresh,
            job_start=self.job_start,
            job_end=self.job_end,
            arrived_day=w.employment.arrived_day,
            other=other,
            values=values,
            of_agent=w.identity.of_agent,
            embeddings=self.embeddings,
            width=g.width,
            height=g.height,
            occupancy=w.occupancy,
            xy=self.xy,
            counts=self.counts,
            sat=self.sat,
            power_on=w.utilities.power_on,
            water_on=w.utilities.water_on,
            queue_of=self.queue_of,
            position=self.position,
        )


@numba.njit(cache=True)
def count_pairwise(n: int, alive: np.ndarray, xy: np.ndarray, radius: int, counts: np.ndarray) -> None:
    """``counts[i]``: other living agents among rows ``[0, n)`` within ``radius`` (Chebyshev) of row ``i``."""
    for i in range(n):
        c = 0
        for j in range(n):
            if alive[j] and abs(xy[0, j] - xy[0, i]) <= radius and abs(xy[1, j] - xy[1, i]) <= radius:
                c += 1
        counts[i] = c - 1


@numba.njit(cache=True)
def count_boxes(
    n: int,
    alive: np.ndarray,
    xy: np.ndarray,
    radius: int,
    occupancy: np.ndarray,
    width: int,
    height: int,
    sat: np.ndarray,
    counts: np.ndarray,
) -> None:
    """The same counts as :func:`count_pairwise`, from a summed-area table of tile occupancy (big towns)."""
    row = width + 1
    for x in range(row):
        sat[x] = 0
    for y in range(height):  # over views by a range index: no negative-index checks in the inner loop
        above, here = sat[y * row + 1 : (y + 1) * row], sat[(y + 1) * row + 1 : (y + 2) * row]
        occupied = occupancy[y * width : (y + 1) * width]
        sat[(y + 1) * row] = 0
        run = 0
        for x in range(width):
            run += occupied[x]
            here[x] = above[x] + run
    for i in range(n):
        if not alive[i]:
            continue
        x, y = xy[0, i], xy[1, i]
        x1, x2 = max(x - radius, 0), min(x + radius, width - 1) + 1
        y1, y2 = max(y - radius, 0), min(y + radius, height - 1) + 1
        counts[i] = sat[y2 * row + x2] - sat[y1 * row + x2] - sat[y2 * row + x1] + sat[y1 * row + x1] - 1


@numba.njit(cache=True)
def _write_common(  # noqa: C901
    n: int,
    tick: int,
    weather: int,
    any_lines: bool,
    agent_fields: tuple,
    object_fields: tuple,
    own_fields: tuple,
) -> None:
    """Write the common block of every living row among ``[0, n)`` (offsets in ``spec``, scales in ``scales``).

    ``any_lines`` is what :meth:`CommonBlock.read_queues` returned; the bundles come as plain tuples (an
    :class:`AgentArrays`, an :class:`ObjectArrays` and :meth:`CommonBlock.kernel_args`) and are named again here.
    """
    agents, objects, ins = AgentArrays(*agent_fields), ObjectArrays(*object_fields), CommonInputs(*own_fields)
    # Float operations follow the numpy expressions this replaced (float64 where numpy promoted), bit for bit.
    tod = tick % ins.tpd
    day = tick // ins.tpd
    angle = TAU * tod / ins.tpd
    sin, cos = math.sin(angle), math.cos(angle)
    radius = ins.spec[RADIUS]
    xy = ins.xy  # scratch: tile coordinates of each row
    for i in range(n):
        xy[0, i] = agents.tile[i] % ins.width
        xy[1, i] = agents.tile[i] // ins.width
    if n * n <= ins.width * ins.height:
        count_pairwise(n, agents.alive, xy, radius, ins.counts)
    else:
        count_boxes(n, agents.alive, xy, radius, ins.occupancy, ins.width, ins.height, ins.sat, ins.counts)
    commitment = ins.spec[COMMITMENT]
    top, dim = ins.spec[TOP], ins.spec[DIM]
    none = len(ins.embeddings) - 1  # the all-zero row
    for i in range(n):
        if not agents.alive[i]:
            continue
        row = ins.out[i]
        # self scalars
        c = ins.spec[NEEDS]
        for k in range(4):
            row[c + k] = agents.needs[i, k]
        row[ins.spec[WALLET]] = math.tanh(agents.wallet[i] * np.float64(ins.scales[WALLET_SCALE]))
        c = ins.spec[WALLET] + 1
        for k in range(ins.spec[ITEMS]):
            row[c + k] = min(np.float64(agents.inventory[i, k]) * np.float64(ins.scales[INVENTORY_SCALE]), 1.0)
        row[ins.spec[TIME]] = sin
        row[ins.spec[TIME] + 1] = cos
        c, j = ins.spec[JOB], agents.job[i]
        start = ins.job_start[j]
        working = j >= 0 and start <= tod < ins.job_end[j]
        row[c] = j >= 0
        row[c + 1] = working
        row[c + 2] = working and ins.arrived_day[j] != day
        row[c + 3] = np.float64((start - tod) % ins.tpd if j >= 0 else 0) * (1.0 / ins.tpd)
        c, opt = ins.spec[OPTION], agents.option[i]
        for k in range(OPTION_COUNT):
            row[c + k] = k == opt
        left = commitment_left(tick, agents.option_started[i], commitment) if opt >= 0 else 0
        row[ins.spec[COMMIT]] = np.float64(left) * (1.0 / commitment) if commitment else 0.0
        c = ins.spec[ACTIVITY]
        for k in range(ACTIVITY_COUNT):
            row[c + k] = k == agents.activity[i]
        c, n_aff = ins.spec[LAST], ins.spec[AFFORDANCES]
        for k in range(n_aff):
            row[c + k] = k == agents.last_action[i]
        row[c + n_aff] = agents.last_success[i]
        row[c + n_aff + 1] = min(np.float64(agents.last_duration[i]) * np.float64(ins.scales[DURATION_SCALE]), 1.0)
        row[ins.spec[CTX]] = ins.fresh[i]
        for k in range(WEATHER_COUNT):
            row[ins.spec[WEATHER] + k] = k == weather
        for k in range(3):
            row[ins.spec[PERSONALITY] + k] = agents.personality[i, k]
        # social snippet: top friends by trust, then top rivals by rivalry (stable: the first tie wins a draw)
        c = ins.spec[SOCIAL]
        ties = 0
        for k in range(ins.other.shape[1]):
            ties += ins.other[i, k] >= 0
        for kind in range(2 if ties else 0):
            comp = TRUST if kind == 0 else RIVALRY
            taken = 0  # bit k: tie k already listed
            for _ in range(top):
                best, key = -1, np.float32(0.0)  # only positive components count
                for k in range(ins.other.shape[1]):
                    if ins.other[i, k] >= 0 and not (taken >> k) & 1 and ins.values[i, k, comp] > key:
                        best, key = k, ins.values[i, k, comp]
                if best >= 0:
                    taken |= 1 << best
                    e = ins.of_agent[ins.other[i, best]]
                    e = e if e >= 0 else none
                    for d in range(dim):
                        row[c + d] = ins.embeddings[e, d]
                    for d in range(3):
                        row[c + dim + d] = ins.values[i, best, d]
                else:
                    for d in range(dim + 3):
                        row[c + d] = 0.0
                c += dim + 3
        if not ties:
            for d in range(2 * top * (dim + 3)):
                row[c + d] = 0.0
        # local summaries over ties to agents nearby
        c = ins.spec[LOCAL]
        ties = 0
        sum_trust, sum_rivalry = np.float32(0.0), np.float32(0.0)
        max_trust, max_rivalry = np.float32(-2.0), np.float32(-2.0)
        for k in range(ins.other.shape[1]):
            j = ins.other[i, k]
            if j >= 0 and agents.alive[j] and abs(xy[0, j] - xy[0, i]) <= radius and abs(xy[1, j] - xy[1, i]) <= radius:
                ties += 1
                trust, rivalry = ins.values[i, k, TRUST], ins.values[i, k, RIVALRY]
                sum_trust += trust
                sum_rivalry += rivalry
                max_trust = max(max_trust, trust)
                max_rivalry = max(max_rivalry, rivalry)
        row[c] = np.float64(sum_trust) / max(ties, 1)
        row[c + 1] = max_trust if ties else 0.0
        row[c + 2] = np.float64(sum_rivalry) / max(ties, 1)
        row[c + 3] = max_rivalry if ties else 0.0
        row[c + 4] = min(np.float64(ins.counts[i]) * np.float64(ins.scales[CROWD_SCALE]), 1.0)
        # flags
        c = ins.spec[FLAGS]
        row[c + 3] = ins.power_on[agents.home[i]]
        row[c + 4] = ins.water_on[agents.home[i]]
        if not any_lines:
            row[c] = row[c + 1] = row[c + 2] = 0.0
            continue
        mine = ins.queue_of[i]
        row[c] = mine >= 0
        row[c + 1] = min(np.float64(ins.position[i]) * np.float64(ins.scales[QUEUE_SCALE]), 1.0)
        # The line an agent stands in: the queue it is in, or the object it holds or uses.
        line = mine
        if line < 0:
            t = agents.target_obj[i]
            if t >= 0 and (objects.reserved_by[t] == i or objects.user[t] == i):
                line = t
        rival = False
        if line >= 0:
            for k in range(ins.other.shape[1]):
                j = ins.other[i, k]
                if j >= 0 and ins.values[i, k, RIVALRY] > 0:
                    if ins.queue_of[j] == line or objects.reserved_by[line] == j or objects.user[line] == j:
                        rival = True
        row[c + 2] = rival
