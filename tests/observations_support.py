"""A plain numpy observation encoder: the pre-numba implementation, with its caches taken out.

``ReferenceEncoder(world, variant).encode()`` computes every block from scratch with whole-array numpy
expressions, written exactly as the original encoder wrote them (same dtypes, same order of float
operations), so the compiled encoder in ``townlet.observations`` must match it bit for bit. Only the
``ctx_reset`` flag needs memory across calls (whom the encoder has seen before).
"""

from __future__ import annotations

import numpy as np

from townlet.config.models import OPTION_NAMES
from townlet.config.town_map import TileKind
from townlet.observations.embedding import embedding_table
from townlet.observations.layout import ACTIVITIES, TARGETS, layout_of
from townlet.world.grid import FAR
from townlet.world.needs import ENERGY, HUNGER, HYGIENE, SOCIAL
from townlet.world.relationships import RIVALRY, TRUST
from townlet.world.state import World
from townlet.world.weather import WEATHER_STATES

TAU = 2.0 * np.pi
SHOWER, FRIDGE, TILL, HOME, WORK = range(len(TARGETS))
NEED_TARGET = np.zeros(4, dtype=np.int64)
NEED_TARGET[[HUNGER, HYGIENE, ENERGY, SOCIAL]] = [FRIDGE, SHOWER, HOME, HOME]
HINT_ROWS = np.vstack([np.zeros((2, 4)), np.eye(4)]).astype(np.float32)


def one_hot_table(n: int) -> np.ndarray:
    return np.vstack([np.eye(n, dtype=np.float32), np.zeros((1, n), dtype=np.float32)])


class ReferenceEncoder:
    """Encodes a world's observations from scratch on every call (see the module docstring)."""

    def __init__(self, world: World, variant: str) -> None:
        self.world = world
        self.layout = lay = layout_of(world, variant)
        cfg, obs = world.config, world.config.observations
        self.obs = obs
        cap = world.agents.capacity
        self.buffer = np.zeros((cap, lay.size), dtype=np.float32)
        self.at = {f.name: f.start for f in lay.features}
        self.n_aff = len(world.manifest.affordances)
        self.options = one_hot_table(len(OPTION_NAMES))
        self.activities = one_hot_table(len(ACTIVITIES))
        self.affordances = one_hot_table(self.n_aff)
        self.weathers = one_hot_table(len(WEATHER_STATES))
        ident = cfg.identity
        self.dim = ident.embedding_dim
        self.embeddings = embedding_table(ident.embedding_slots, ident.embedding_dim, obs.embedding_seed)
        g = world.grid
        self.tile_x, self.tile_y = np.arange(g.size) % g.width, np.arange(g.size) // g.width
        emp = world.employment
        self.job_start = np.append(emp.start, world.ticks_per_day * 2).astype(np.int64)
        self.job_end = np.append(emp.end, 0).astype(np.int64)
        self.seen_alive = np.zeros(cap, dtype=bool)
        self.seen_spawn = np.full(cap, -1, dtype=np.int64)
        if lay.window:
            self._static_map()

    # --- the whole vector ----------------------------------------------------------------------------

    def encode(self) -> np.ndarray:
        """Every living agent's observation, from scratch (rows of empty slots: zero)."""
        a = self.world.agents
        self.buffer[...] = 0.0
        live = a.alive.nonzero()[0]
        fresh = a.alive & (~self.seen_alive | (a.spawn_tick != self.seen_spawn))
        self.seen_alive[:] = a.alive
        self.seen_spawn[:] = a.spawn_tick
        if not len(live):
            return self.buffer
        n = int(live[-1]) + 1
        out = self.buffer[:n]
        self._common(n, out, fresh[:n])
        tiles = a.tile[:n]
        obj, dist, field = self._nearest(n, tiles)
        self._targets(out, tiles, obj, dist, n)
        fields = np.where(obj >= 0, field, -1)
        lay = self.layout
        if lay.window:
            m0, m1 = lay.blocks["map"]
            idx = self._cut(tiles, out[:, m0:m1].reshape(n, lay.window**2, -1))
            if "hints" in lay.blocks:
                h0, h1 = lay.blocks["hints"]
                self._hints(idx, fields, out[:, h0:h1].reshape(n, len(TARGETS), -1))
        else:
            self._path_hint(out, n, tiles, fields)
        out[~a.alive[:n]] = 0.0
        return self.buffer

    # --- common block --------------------------------------------------------------------------------

    def _common(self, n: int, out: np.ndarray, fresh: np.ndarray) -> None:
        w, a, at, obs = self.world, self.world.agents, self.at, self.obs
        tick, tpd = w.tick, w.ticks_per_day
        tod = tick % tpd
        i = at["needs.hunger"]
        out[:, i : i + 4] = a.needs[:n]
        out[:, at["wallet"]] = np.tanh(a.wallet[:n] * np.float32(1.0 / obs.wallet_scale))
        i = at["wallet"] + 1
        out[:, i : i + len(a.items)] = np.minimum(a.inventory[:n] * np.float32(1.0 / obs.inventory_scale), 1.0)
        angle = TAU * tod / tpd
        out[:, at["time.sin"]] = np.sin(angle)
        out[:, at["time.cos"]] = np.cos(angle)
        # job
        emp, i = w.employment, at["job.has_job"]
        job = a.job[:n]
        start = self.job_start.take(job)
        shifts = (self.job_start <= tod) & (self.job_end > tod)
        out[:, i] = job >= 0
        working = shifts.take(job)
        out[:, i + 1] = working
        out[:, i + 2] = working & (emp.arrived_day.take(job) != tick // tpd) if len(emp) else 0.0
        out[:, i + 3] = ((start - tod) % tpd) * (job >= 0) * (1.0 / tpd)
        # option, commitment, activity, last action, ctx_reset, weather, personality
        option = a.option[:n]
        i = at["option.GetFed"]
        out[:, i : i + len(OPTION_NAMES)] = self.options.take(option, axis=0)
        commitment = w.config.options.commitment_window
        if commitment:
            left = np.maximum(commitment - (tick - a.option_started[:n]), 0) * (option >= 0)
            out[:, at["option.commitment_left"]] = left * (1.0 / commitment)
        i = at["activity.idle"]
        out[:, i : i + len(ACTIVITIES)] = self.activities.take(a.activity[:n], axis=0)
        i = at["last_action.success"] - self.n_aff
        out[:, i : i + self.n_aff] = self.affordances.take(a.last_action[:n], axis=0)
        out[:, i + self.n_aff] = a.last_success[:n]
        out[:, i + self.n_aff + 1] = np.minimum(a.last_duration[:n] * np.float32(1.0 / obs.duration_scale), 1.0)
        out[:, at["ctx_reset"]] = fresh
        i = at["weather.sunny"]
        out[:, i : i + 3] = self.weathers[w.weather.state]
        i = at["personality.extroversion"]
        out[:, i : i + 3] = a.personality[:n, :3]
        self._social(n, out)
        self._local(n, out)
        self._flags(n, out)

    def _social(self, n: int, out: np.ndarray) -> None:
        top, dim = self.obs.social_top, self.dim
        if not top:
            return
        rel = self.world.relationships
        local = self.at["local.mean_trust"]
        block = out[:, local - 2 * top * (dim + 3) : local]
        if not (rel.other >= 0).any():
            block[...] = 0.0
            return
        other = rel.other[:n]
        valid = other >= 0
        vals = rel.values[:n]
        snippet = block.reshape(n, 2, top, dim + 3)
        rows = np.arange(n)[:, None]
        for kind, comp in enumerate((TRUST, RIVALRY)):
            key = np.where(valid & (vals[..., comp] > 0), vals[..., comp], -np.inf)
            order = np.argsort(-key, axis=1, kind="stable")[:, :top]
            present = key[rows, order] > -np.inf
            who = np.where(present, other[rows, order], -1)
            snippet[:, kind, :, :dim] = self.embeddings[np.where(present, self.world.identity.of_agent[who], -1)]
            snippet[:, kind, :, dim:] = vals[rows, order] * present[..., None]

    def _local(self, n: int, out: np.ndarray) -> None:
        """Pairwise at every population (the encoder switches to box sums for big ones: same counts)."""
        a, r, i = self.world.agents, self.obs.local_radius, self.at["local.mean_trust"]
        tiles = a.tile[:n]
        x, y = self.tile_x.take(tiles), self.tile_y.take(tiles)
        gap = np.maximum(np.abs(np.subtract.outer(x, x)), np.abs(np.subtract.outer(y, y)))
        near = (gap <= r) & a.alive[:n]
        count = np.add.reduce(near, axis=1) - 1
        out[:, i + 4] = np.minimum(count * np.float32(1.0 / self.obs.crowd_scale), 1.0)
        rel = self.world.relationships
        if not (rel.other >= 0).any():
            out[:, i : i + 4] = 0.0
            return
        other = rel.other[:n]
        valid = other >= 0
        near_tie = near[np.arange(n)[:, None], other] & valid
        ties = np.add.reduce(near_tie, axis=1)[:, None]
        picked = near_tie[..., None]
        both = rel.values[:n, :, ::2]
        out[:, i : i + 4 : 2] = np.add.reduce(both * picked, axis=1) / np.maximum(ties, 1)
        out[:, i + 1 : i + 4 : 2] = np.where(ties > 0, np.maximum.reduce(np.where(picked, both, -2.0), axis=1), 0.0)

    def _flags(self, n: int, out: np.ndarray) -> None:
        w, a, o = self.world, self.world.agents, self.world.objects
        i = self.at["flag.in_queue"]
        home = a.home[:n]
        out[:, i + 3] = w.utilities.power_on.take(home)
        out[:, i + 4] = w.utilities.water_on.take(home)
        lines = [ob for ob in range(o.count) if o.queue[ob]]
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
        out[:, i + 1] = np.minimum(position[:n] * np.float32(1.0 / self.obs.queue_scale), 1.0)
        other = w.relationships.other[:n]
        rival = (other >= 0) & (w.relationships.values[:n, :, RIVALRY] > 0)
        if not rival.any():
            out[:, i + 2] = 0.0
            return
        slots = np.arange(n)
        line = a.target_obj[:n]
        holds = (line >= 0) & ((o.reserved_by.take(line) == slots) | (o.user.take(line) == slots))
        line = np.where(queued, mine, np.where(holds, line, -1))
        ln = line[:, None]
        same = (queue_of.take(other) == ln) | (o.reserved_by.take(ln) == other) | (o.user.take(ln) == other)
        out[:, i + 2] = np.logical_or.reduce(rival & same & (ln >= 0), axis=1)

    # --- key targets ---------------------------------------------------------------------------------

    def _candidates(self, slot: int) -> list[list[int]]:
        w, o = self.world, self.world.objects
        max_public = self.obs.max_candidates
        home = int(w.agents.home[slot])
        station = w.employment.station_of(slot)
        tiles = np.flatnonzero(w.grid.place_index == home)
        hx, hy = (0.0, 0.0)
        if len(tiles):
            hx, hy = float((tiles % w.grid.width).mean()), float((tiles // w.grid.width).mean())
        home_kinds = np.array([k == "home" for k in o.place_kinds], dtype=bool)
        showers = o.by_type.get("shower", np.zeros(0, np.int32))

        def nearest(objs: np.ndarray) -> list[int]:
            if len(objs) <= max_public:
                return [int(ob) for ob in objs]
            crow = np.abs(o.x[objs] - hx) + np.abs(o.y[objs] - hy)
            return [int(ob) for ob in objs[np.argsort(crow, kind="stable")[:max_public]]]

        return [
            list(o.of_type_in_place("shower", home)) + nearest(showers[~home_kinds[o.place[showers]]]),
            list(o.of_type_in_place("fridge", home)),
            nearest(o.by_type.get("till", np.zeros(0, np.int32))),
            list(o.of_type_in_place("bed", home)),
            [station] if station >= 0 else [],
        ]

    def _nearest(self, n: int, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w, o = self.world, self.world.objects
        nobody: list[list[int]] = [[] for _ in TARGETS]
        lists = [self._candidates(s) if w.agents.alive[s] else nobody for s in range(n)]
        width = max(1, max(len(c) for per in lists for c in per))
        cand = np.full((n, len(TARGETS), width), -1, dtype=np.int32)
        fields = np.zeros((n, len(TARGETS), width), dtype=np.int32)
        for s, per in enumerate(lists):
            for t, objs in enumerate(per):
                cand[s, t, : len(objs)] = objs
                fields[s, t, : len(objs)] = [o.field_of(int(ob)) for ob in objs]
        grid = w.grid
        dist = grid.fields.dist_many(fields, tiles[:, None, None]).astype(np.uint16)
        dist[cand < 0] = FAR
        k = dist.argmin(axis=2)
        rows, cols = np.arange(n)[:, None], np.arange(len(TARGETS))[None, :]
        best = dist[rows, cols, k]
        obj = cand[rows, cols, k]
        obj[best >= FAR] = -1
        return obj, best, fields[rows, cols, k]

    def _targets(self, out: np.ndarray, tiles: np.ndarray, obj: np.ndarray, dist: np.ndarray, n: int) -> None:
        o = self.world.objects
        t0, t1 = self.layout.blocks["targets"]
        block = out[:, t0:t1].reshape(n, len(TARGETS), 4)
        present = obj >= 0
        dx = (o.x.take(obj) - self.tile_x.take(tiles)[:, None]) * present
        dy = (o.y.take(obj) - self.tile_y.take(tiles)[:, None]) * present
        norm = np.hypot(dx, dy)
        np.maximum(norm, 1e-9, out=norm)
        block[..., 0] = present
        block[..., 1] = np.minimum(dist * np.float32(1.0 / self.obs.distance_scale), 1.0)
        block[..., 2] = dx / norm
        block[..., 3] = dy / norm

    def _path_hint(self, out: np.ndarray, n: int, tiles: np.ndarray, fields: np.ndarray) -> None:
        a, g = self.world.agents, self.world.grid
        dest = a.dest_field[:n]
        fallback = fields[np.arange(n), NEED_TARGET[a.needs[:n].argmax(axis=1)]]
        dest = np.where(dest >= 0, dest, fallback)
        direction = np.where(dest >= 0, g.fields.step_many(np.maximum(dest, 0), tiles), -1)
        i = self.layout.blocks["path_hint"][0]
        out[:, i : i + 4] = HINT_ROWS[direction + 1]

    # --- map window ----------------------------------------------------------------------------------

    def _static_map(self) -> None:
        g, o = self.world.grid, self.world.objects
        self.window = win = self.obs.window
        half, p = win // 2, win
        pw = g.width + 2 * p
        channels = self.layout.channels
        self.col = col = {name: i for i, name in enumerate(channels)}
        ys, xs = np.divmod(np.arange(g.size), g.width)
        self.pad_index = ((ys + p) * pw + xs + p).astype(np.int64)
        self.static = np.zeros(((g.height + 2 * p) * pw, len(channels)), dtype=np.float32)
        if "blocked" in col:
            self.static[:, col["blocked"]] = 1.0
            self.static[self.pad_index, col["blocked"]] = (~g.walkable).astype(np.float32)
        for name, kind in (("door", TileKind.DOOR), ("queue_node", TileKind.QUEUE)):
            if name in col:
                self.static[self.pad_index, col[name]] = g.kinds == int(kind)
        if "outdoors" in col:
            self.static[self.pad_index, col["outdoors"]] = g.outdoors
        self.object_pad = self.pad_index[o.tile]
        for t in o.type_names:
            if f"object.{t}" in col:
                self.static[self.object_pad[o.by_type[t]], col[f"object.{t}"]] = 1.0
        dy, dx = np.divmod(np.arange(win * win), win)
        self.offsets = ((dy - half) * pw + (dx - half)).astype(np.int64)
        self.centre = half * win + half
        self.unpad = np.zeros(len(self.static), dtype=np.int64)
        self.unpad[self.pad_index] = np.arange(g.size)
        self.inside = np.zeros(len(self.static), dtype=bool)
        self.inside[self.pad_index] = True
        close = 1.0 - np.minimum(np.arange(int(FAR) + 1) * np.float32(1.0 / self.obs.distance_scale), 1.0)
        close[int(FAR)] = 0.0
        self.closeness = close.astype(np.float32)

    def _cut(self, tiles: np.ndarray, out: np.ndarray) -> np.ndarray:
        w, col, o = self.world, self.col, self.world.objects
        array = self.static.copy()
        crowd = np.float32(1.0 / self.obs.crowd_scale)
        if "agents" in col:
            occupied = np.flatnonzero(w.occupancy)
            array[self.pad_index[occupied], col["agents"]] = np.minimum(w.occupancy[occupied] * crowd, 1.0)
        if "busy" in col:
            array[self.object_pad, col["busy"]] = (o.reserved_by >= 0) | (o.user >= 0)
        if "queue_length" in col:
            scale = np.float32(1.0 / self.obs.queue_scale)
            for ob in range(o.count):
                if o.queue[ob]:
                    array[self.object_pad[ob], col["queue_length"]] = min(float(len(o.queue[ob]) * scale), 1.0)
        idx = self.pad_index.take(tiles)[:, None] + self.offsets
        array.take(idx, axis=0, out=out)
        if "agents" in col:
            out[:, self.centre, col["agents"]] = np.minimum((w.occupancy.take(tiles) - 1) * crowd, 1.0)
        return idx

    def _hints(self, idx: np.ndarray, fields: np.ndarray, out: np.ndarray) -> None:
        grid = self.world.grid
        cells = self.unpad.take(idx)
        has = fields >= 0
        dist = grid.fields.dist_many((fields * has)[:, :, None], np.maximum(cells, 0)[:, None, :])
        close = self.closeness.take(dist)
        np.multiply(close, self.inside.take(idx)[:, None, :] & has[:, :, None], out=out)
