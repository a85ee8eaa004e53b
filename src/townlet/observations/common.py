"""The common block every variant starts with: self scalars, personality, social snippet, local summaries, flags.

Everything is computed for all agents at once from the world's slot-indexed arrays; one-hot features are
rows of small identity tables indexed by the code (a code of -1 picks an all-zero last row). Rows are
slot-indexed and persist between encodes, so features that rarely change (personality, the social snippet)
are rewritten only when their inputs changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from townlet.config.models import OPTION_NAMES
from townlet.observations.embedding import embedding_table
from townlet.observations.layout import ACTIVITIES, FeatureLayout
from townlet.world.relationships import RIVALRY, TRUST
from townlet.world.weather import WEATHER_STATES

if TYPE_CHECKING:
    from townlet.world.state import World

TAU = 2.0 * np.pi
OPTION_COUNT = len(OPTION_NAMES)


def one_hot_table(n: int) -> np.ndarray:
    """``float32[n + 1, n]``: identity rows plus an all-zero last row (what index -1 selects)."""
    return np.vstack([np.eye(n, dtype=np.float32), np.zeros((1, n), dtype=np.float32)])


class CommonBlock:
    """Writes the common block (see docs/observations.md) into the rows ``[0, n)`` of a slot-indexed buffer."""

    def __init__(self, world: World, layout: FeatureLayout) -> None:
        cfg = world.config
        obs = cfg.observations
        self.world = world
        at = {f.name: f.start for f in layout.features}
        self.at = at
        a = world.agents
        self.items = len(a.items)
        self.n_aff = len(world.manifest.affordances)
        self.needs = at["needs.hunger"]
        self.wallet = at["wallet"]
        self.inventory = at["wallet"] + 1
        self.time = at["time.sin"]
        self.job = at["job.has_job"]
        self.option = at["option.GetFed"]
        self.commit = at["option.commitment_left"]
        self.activity = at["activity.idle"]
        self.last_action = at["last_action.success"] - self.n_aff
        self.ctx = at["ctx_reset"]
        self.weather = at["weather.sunny"]
        self.personality = at["personality.extroversion"]
        self.local = at["local.mean_trust"]
        self.top = obs.social_top
        self.dim = cfg.identity.embedding_dim
        self.social = self.local - 2 * self.top * (self.dim + 3)
        self.flags = at["flag.in_queue"]
        self.wallet_scale = np.float32(1.0 / obs.wallet_scale)
        self.inventory_scale = np.float32(1.0 / obs.inventory_scale)
        self.duration_scale = np.float32(1.0 / obs.duration_scale)
        self.crowd_scale = np.float32(1.0 / obs.crowd_scale)
        self.queue_scale = np.float32(1.0 / obs.queue_scale)
        self.radius = obs.local_radius
        self.commitment = cfg.options.commitment_window
        self.options = one_hot_table(OPTION_COUNT)
        self.activities = one_hot_table(len(ACTIVITIES))
        self.affordances = one_hot_table(self.n_aff)
        self.weathers = one_hot_table(len(WEATHER_STATES))
        ident = cfg.identity
        self.embeddings = embedding_table(ident.embedding_slots, ident.embedding_dim, obs.embedding_seed)
        cap = a.capacity
        self.rows = np.arange(cap)
        g = world.grid
        self.tile_x, self.tile_y = np.arange(g.size) % g.width, np.arange(g.size) // g.width
        emp = world.employment
        # Per job position plus a last entry for "no job" (index -1): a shift that never starts.
        self.job_start = np.append(emp.start, world.ticks_per_day * 2).astype(np.int64)
        self.job_end = np.append(emp.end, 0).astype(np.int64)
        self._seen_alive = np.zeros(cap, dtype=bool)
        self._seen_spawn = np.full(cap, -1, dtype=np.int64)
        self._population = b""
        self._nobody = np.zeros(cap, dtype=bool)
        self._ties = (b"", b"")  # snapshot of the tie arrays at the last encode (none yet)
        self._snapshots: dict[str, bytes] = {}
        self._n = 0
        self._ties_any = False

    def write(self, n: int, out: np.ndarray) -> np.ndarray:
        """Fill the common block of rows ``[0, n)`` (= slots ``0..n-1``); return the ``ctx_reset`` flags."""
        w, a = self.world, self.world.agents
        tick, tpd = w.tick, w.ticks_per_day
        tod = tick % tpd
        fresh = self._fresh(n)
        # Blocks whose inputs did not change since the last encode keep their rows (they persist by slot).
        new_rows = n != self._n or bool(fresh.any())
        self._n = n
        i = self.needs
        out[:, i : i + 4] = a.needs[:n]
        out[:, self.wallet] = np.tanh(a.wallet[:n] * self.wallet_scale)
        if self._changed("inventory", new_rows, a.inventory):
            i = self.inventory
            out[:, i : i + self.items] = np.minimum(a.inventory[:n] * self.inventory_scale, 1.0)
        angle = TAU * tod / tpd
        out[:, self.time] = np.sin(angle)
        out[:, self.time + 1] = np.cos(angle)
        self._job(n, out, tod, tick // tpd, new_rows)
        option = a.option[:n]
        i = self.option
        out[:, i : i + OPTION_COUNT] = self.options.take(option, axis=0)
        if self.commitment:
            left = np.maximum(self.commitment - (tick - a.option_started[:n]), 0) * (option >= 0)
            out[:, self.commit] = left * (1.0 / self.commitment)
        else:
            out[:, self.commit] = 0.0
        if self._changed("activity", new_rows, a.activity):
            i = self.activity
            out[:, i : i + len(ACTIVITIES)] = self.activities.take(a.activity[:n], axis=0)
        if self._changed("last_action", new_rows, a.last_action, a.last_success, a.last_duration):
            i = self.last_action
            out[:, i : i + self.n_aff] = self.affordances.take(a.last_action[:n], axis=0)
            out[:, i + self.n_aff] = a.last_success[:n]
            out[:, i + self.n_aff + 1] = np.minimum(a.last_duration[:n] * self.duration_scale, 1.0)
        out[:, self.ctx] = fresh
        if self._changed("weather", new_rows, np.int8(w.weather.state)):
            out[:, self.weather : self.weather + 3] = self.weathers[w.weather.state]
        if new_rows:
            i = self.personality
            out[:, i : i + 3] = a.personality[:n, :3]
        ties_changed = self._ties_changed()
        self._social(n, out, new_rows, ties_changed)
        if self._changed("local", new_rows or ties_changed, a.tile, a.alive):
            self._local(n, out)
        self._flags(n, out, new_rows)
        return fresh

    def _changed(self, key: str, new_rows: bool, *arrays: np.ndarray) -> bool:
        """Whether the inputs of a cached block changed since the last encode (always on new rows)."""
        snapshot = b"".join(x.tobytes() for x in arrays)
        if not new_rows and self._snapshots.get(key) == snapshot:
            return False
        self._snapshots[key] = snapshot
        return True

    def _fresh(self, n: int) -> np.ndarray:
        """Rows holding an agent not seen at the last encode (a new episode or a newcomer)."""
        a = self.world.agents
        population = a.alive.tobytes() + a.spawn_tick.tobytes()
        if population == self._population:
            return self._nobody[:n]
        self._population = population
        spawn = a.spawn_tick[:n]
        fresh = a.alive[:n] & (~self._seen_alive[:n] | (spawn != self._seen_spawn[:n]))
        self._seen_alive[:] = a.alive
        self._seen_spawn[:n] = spawn
        return fresh

    def _job(self, n: int, out: np.ndarray, tod: int, day: int, new_rows: bool) -> None:
        w = self.world
        a, emp = w.agents, w.employment
        i = self.job
        job = a.job[:n]
        start = self.job_start.take(job)
        shifts = (self.job_start <= tod) & (self.job_end > tod)  # which positions are on shift now
        if self._changed("job", new_rows, a.job, emp.arrived_day, shifts, np.int64(day)):
            out[:, i] = job >= 0
            working = shifts.take(job)
            out[:, i + 1] = working
            out[:, i + 2] = working & (emp.arrived_day.take(job) != day) if len(emp) else 0.0
        out[:, i + 3] = ((start - tod) % w.ticks_per_day) * (job >= 0) * (1.0 / w.ticks_per_day)

    def _ties_changed(self) -> bool:
        """Whether any tie changed since the last encode (and remember whether any tie exists)."""
        rel = self.world.relationships
        ties = (rel.other.tobytes(), rel.values.tobytes())
        if ties == self._ties:
            return False
        self._ties = ties
        self._ties_any = bool((rel.other >= 0).any())
        return True

    def _social(self, n: int, out: np.ndarray, new_rows: bool, changed: bool) -> None:
        """Top friends and rivals: rewritten only when ties (or the agents) changed."""
        if not self.top or not (changed or new_rows):
            return
        rel = self.world.relationships
        other = rel.other[:n]
        valid = other >= 0
        block = out[:, self.social : self.local]
        if not self._ties_any:
            block[...] = 0.0
            return
        vals = rel.values[:n]
        snippet = block.reshape(n, 2, self.top, self.dim + 3)
        embed_of = self.world.identity.of_agent
        rows = self.rows[:n, None]
        for kind, comp in enumerate((TRUST, RIVALRY)):
            key = np.where(valid & (vals[..., comp] > 0), vals[..., comp], -np.inf)
            order = np.argsort(-key, axis=1, kind="stable")[:, : self.top]
            present = key[rows, order] > -np.inf
            who = np.where(present, other[rows, order], -1)
            snippet[:, kind, :, : self.dim] = self.embeddings[np.where(present, embed_of[who], -1)]
            snippet[:, kind, :, self.dim :] = vals[rows, order] * present[..., None]

    def _local(self, n: int, out: np.ndarray) -> None:
        """Tie summaries over nearby agents, and how crowded the neighbourhood is."""
        w, a = self.world, self.world.agents
        r = self.radius
        tiles = a.tile[:n]
        x, y = self.tile_x.take(tiles), self.tile_y.take(tiles)
        i = self.local
        near = None
        if n <= 64:
            # Pairwise among rows 0..n-1: who stands within the radius of whom (living agents only).
            gap = np.maximum(np.abs(np.subtract.outer(x, x)), np.abs(np.subtract.outer(y, y)))
            near = (gap <= r) & a.alive[:n]
            count = np.add.reduce(near, axis=1) - 1
        else:
            count = self._box_count(x, y)
        out[:, i + 4] = np.minimum(count * self.crowd_scale, 1.0)
        if not self._ties_any:
            out[:, i : i + 4] = 0.0
            return
        rel = w.relationships
        other = rel.other[:n]
        valid = other >= 0
        if near is not None:
            near_tie = near[self.rows[:n, None], other] & valid  # other == -1 reads a column masked by ``valid``
        else:
            ot = a.tile.take(other)
            near_tie = valid & (np.abs(self.tile_x.take(ot) - x[:, None]) <= r)
            near_tie &= np.abs(self.tile_y.take(ot) - y[:, None]) <= r
        ties = np.add.reduce(near_tie, axis=1)[:, None]
        picked = near_tie[..., None]
        both = rel.values[:n, :, ::2]  # (trust, rivalry) per tie
        out[:, i : i + 4 : 2] = np.add.reduce(both * picked, axis=1) / np.maximum(ties, 1)
        out[:, i + 1 : i + 4 : 2] = np.where(ties > 0, np.maximum.reduce(np.where(picked, both, -2.0), axis=1), 0.0)

    def _box_count(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Other agents within the radius of each (x, y), from a summed-area table of occupancy (big towns)."""
        w, r = self.world, self.radius
        g = w.grid
        sat = np.zeros((g.height + 1, g.width + 1), dtype=np.int64)
        sat[1:, 1:] = w.occupancy.reshape(g.height, g.width).cumsum(0).cumsum(1)
        x1, x2 = np.maximum(x - r, 0), np.minimum(x + r, g.width - 1) + 1
        y1, y2 = np.maximum(y - r, 0), np.minimum(y + r, g.height - 1) + 1
        return sat[y2, x2] - sat[y1, x2] - sat[y2, x1] + sat[y1, x1] - 1

    def _flags(self, n: int, out: np.ndarray, new_rows: bool) -> None:
        w, a, o = self.world, self.world.agents, self.world.objects
        i = self.flags
        if self._changed("home", new_rows, a.home, w.utilities.power_on, w.utilities.water_on):
            home = a.home[:n]
            out[:, i + 3] = w.utilities.power_on.take(home)
            out[:, i + 4] = w.utilities.water_on.take(home)
        lines = [ob for ob in w.queues.active if o.queue[ob]]
        if not lines:
            out[:, i : i + 3] = 0.0
            return
        queue_of = np.full(a.capacity, -1, dtype=np.int32)
        position = np.zeros(a.capacity, dtype=np.int32)
        for ob in lines:
            members = o.queue[ob]
            queue_of[members] = ob
            position[members] = np.arange(1, len(members) + 1)
        mine = queue_of[:n]
        queued = mine >= 0
        out[:, i] = queued
        out[:, i + 1] = np.minimum(position[:n] * self.queue_scale, 1.0)
        other = w.relationships.other[:n]
        rival = (other >= 0) & (w.relationships.values[:n, :, RIVALRY] > 0)
        if not rival.any():
            out[:, i + 2] = 0.0
            return
        # The line an agent stands in: the queue it is in, or the object it holds or uses.
        slots = self.rows[:n]
        line = a.target_obj[:n]
        holds = (line >= 0) & ((o.reserved_by.take(line) == slots) | (o.user.take(line) == slots))
        line = np.where(queued, mine, np.where(holds, line, -1))
        ln = line[:, None]
        same = (queue_of.take(other) == ln) | (o.reserved_by.take(ln) == other) | (o.user.take(ln) == other)
        out[:, i + 2] = np.logical_or.reduce(rival & same & (ln >= 0), axis=1)
