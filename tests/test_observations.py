"""Tests for observations: shapes fixed by config, the documented layout, and what each feature means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from townlet.observations import VARIANTS, ObservationEncoder, layout_of
from townlet.observations.common import count_boxes, count_pairwise
from townlet.observations.embedding import embedding_table
from townlet.observations.layout import document
from townlet.policy.options import Option
from townlet.sim import Simulation
from townlet.world.agents import Activity
from townlet.world.relationships import RIVALRY, TRUST

DOCS = Path(__file__).resolve().parents[1] / "docs" / "observations.md"


def encoder(sim: Simulation, variant: str) -> ObservationEncoder:
    enc = ObservationEncoder(sim.world, variant)
    enc.encode()
    return enc


def feature(enc: ObservationEncoder, slot: int, name: str) -> float:
    return float(enc.buffer[slot, enc.layout.index(name)])


def place_at(sim: Simulation, slot: int, x: int, y: int) -> None:
    sim.world.teleport(slot, sim.world.grid.tile(x, y))


# --- shapes and documentation --------------------------------------------------------------------


def test_shapes_depend_only_on_config(make_sim) -> None:
    """Sizes are equal across seeds and populations; the window changes map variants only."""
    for variant in VARIANTS:
        a = ObservationEncoder(make_sim(seed=0, agents=3).world, variant)
        b = ObservationEncoder(make_sim(seed=9, agents=7).world, variant)
        small = ObservationEncoder(make_sim(overrides=["observations.window=9"]).world, variant)
        assert a.size == b.size == a.layout.size
        assert (small.size < a.size) == (variant != "compact")
    sizes = {v: layout_of(make_sim().world, v).size for v in VARIANTS}
    assert sizes["full"] > sizes["hybrid"] > sizes["compact"]


def test_docs_list_every_feature_of_every_variant() -> None:
    """docs/observations.md carries the generated table of every variant (names, index ranges, normalisation)."""
    text = DOCS.read_text(encoding="utf-8")
    assert document() in text, "regenerate with: python -m townlet.observations"


def test_layout_covers_every_index_once(make_sim) -> None:
    """Every index of every variant belongs to exactly one documented feature."""
    for variant in VARIANTS:
        lay = layout_of(make_sim().world, variant)
        hits = np.zeros(lay.size, dtype=int)
        for f in lay.features:
            hits[f.start : f.stop : f.step] += 1
        assert (hits == 1).all(), variant


def test_observations_are_bounded_float32_and_empty_slots_are_zero(make_sim) -> None:
    """Over a day of scripted life every row is float32 in [-1, 1]; rows of empty and vacated slots are zero."""
    sim = make_sim(agents=4)
    encs = [ObservationEncoder(sim.world, v) for v in VARIANTS]
    for tick in range(1000):
        sim.step()
        if tick == 500:
            sim.world.remove(1)
        if tick % 50 == 0 or tick == 501:
            for enc in encs:
                buf = enc.encode()
                assert buf.dtype == np.float32 and np.isfinite(buf).all()
                assert buf.min() >= -1.0 and buf.max() <= 1.0
                assert not buf[~sim.world.agents.alive].any()


def test_compact_observation_is_never_all_zeros(make_sim) -> None:
    """Every living agent's compact vector has non-zero entries on every tick of a day."""
    sim = make_sim(agents=8)
    enc = ObservationEncoder(sim.world, "compact")
    for _ in range(1000):
        sim.step()
        buf = enc.encode()
        alive = sim.world.agents.alive
        assert np.abs(buf[alive]).sum(axis=1).min() > 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_incremental_encoding_equals_encoding_from_scratch(make_sim, variant: str) -> None:
    """Blocks the encoder skips (unchanged) always hold what a fresh encoder computes, through exits and arrivals."""
    sim = make_sim(
        agents=6,
        overrides=[
            "features.lifecycle=on",
            "lifecycle.exits.age_out=true",
            "lifecycle.age_out_days=0.1",
            "lifecycle.exit_spacing=5",
            "lifecycle.max_exits_per_day=50",
        ],
    )
    enc = ObservationEncoder(sim.world, variant)
    ctx = enc.layout.index("ctx_reset")
    for tick in range(700):
        sim.step()
        kept = enc.encode().copy()
        if tick % 7 == 0:
            scratch = ObservationEncoder(sim.world, variant).encode()
            kept[:, ctx] = scratch[:, ctx]  # a fresh encoder sees every agent for the first time
            assert np.array_equal(kept, scratch), f"tick {tick}"
    assert sum(sim.lifecycle.exits.values()) >= 3


# --- what features mean --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["full", "hybrid"])
def test_fridge_two_tiles_north_shows_in_the_map_and_the_bearing(make_sim, variant: str) -> None:
    """Standing two tiles south of its fridge, an agent sees it in the map cell two rows up, bearing north."""
    sim = make_sim(agents=1, manual=True)
    w = sim.world
    fridge = int(w.objects.of_type_in_place("fridge", int(w.agents.home[0]))[0])
    fx, fy = int(w.objects.x[fridge]), int(w.objects.y[fridge])
    place_at(sim, 0, fx, fy + 2)
    enc = encoder(sim, variant)
    lay, c = enc.layout, enc.layout.window // 2
    assert feature(enc, 0, "target.fridge.present") == 1.0
    assert feature(enc, 0, "target.fridge.dx") == 0.0 and feature(enc, 0, "target.fridge.dy") == -1.0
    assert feature(enc, 0, "target.fridge.distance") == pytest.approx(1 / 96)  # one step to its access tile
    assert enc.buffer[0, lay.map_cell(c - 2, c, "blocked")] == 1.0  # objects are not walkable
    assert enc.buffer[0, lay.map_cell(c - 1, c, "blocked")] == 0.0
    if variant == "full":
        assert enc.buffer[0, lay.map_cell(c - 2, c, "object.fridge")] == 1.0
        assert enc.buffer[0, lay.map_cell(c, c, "object.fridge")] == 0.0
        plane = enc.buffer[0, lay.span("hint.fridge")].reshape(lay.window, lay.window)
        assert plane[c - 1, c] == 1.0 and plane[c, c] == pytest.approx(1 - 1 / 96)  # the access tile is closest


def test_map_edges_are_blocked_and_neighbours_are_counted(make_sim) -> None:
    """Cells outside the map read as blocked; another agent one tile east shows in the agents channel."""
    sim = make_sim(agents=2, manual=True)
    place_at(sim, 0, 0, 11)  # the road at the west edge
    place_at(sim, 1, 1, 11)
    enc = encoder(sim, "hybrid")
    lay, c = enc.layout, enc.layout.window // 2
    assert enc.buffer[0, lay.map_cell(c, c - 1, "blocked")] == 1.0
    assert enc.buffer[0, lay.map_cell(c, c + 1, "agents")] == pytest.approx(1 / 4)
    assert enc.buffer[0, lay.map_cell(c, c, "agents")] == 0.0  # itself not counted
    assert feature(enc, 0, "local.agents_nearby") == pytest.approx(1 / 4)


def test_rival_in_the_same_queue_sets_the_flag(make_sim) -> None:
    """Queued behind a rival, an agent's rival_in_queue flag is 1; agents without such a rival read 0."""
    sim = make_sim(agents=4, manual=True)
    w = sim.world
    till = int(w.objects.by_type["till"][0])
    w.relationships.apply(w, 1, 2, "took_my_shift")  # 1 resents 2
    w.relationships.apply(w, 3, 0, "took_my_shift")  # 3 resents 0, who holds the till
    w.queues.reserve(w, 0, till)
    w.agents.target_obj[0] = till
    w.queues.request(w, [(1, till), (2, till), (3, till)])
    assert w.objects.queue[till] == [1, 2, 3]
    enc = encoder(sim, "compact")
    assert [feature(enc, s, "flag.rival_in_queue") for s in range(4)] == [0.0, 1.0, 0.0, 1.0]
    assert [feature(enc, s, "flag.in_queue") for s in range(4)] == [0.0, 1.0, 1.0, 1.0]
    assert feature(enc, 2, "flag.queue_position") == pytest.approx(2 / 4)


def test_social_snippet_lists_top_friends_and_rivals_with_their_embeddings(make_sim) -> None:
    """Friends sorted by trust and rivals by rivalry appear with their id embedding and tie values."""
    sim = make_sim(agents=4, manual=True)
    w = sim.world
    for _ in range(3):
        w.relationships.apply(w, 0, 1, "good_chat")
    w.relationships.apply(w, 0, 2, "good_chat")
    w.relationships.apply(w, 0, 3, "took_my_shift")
    enc = encoder(sim, "compact")
    ident = w.config.identity
    table = embedding_table(ident.embedding_slots, ident.embedding_dim, w.config.observations.embedding_seed)
    dim = ident.embedding_dim
    for name, other in (("friend1", 1), ("friend2", 2), ("rival1", 3)):
        start = enc.layout.index(f"social.{name}.embedding")
        assert np.allclose(enc.buffer[0, start : start + dim], table[w.identity.of_agent[other]])
    tie = w.relationships.tie(0, 1)
    assert feature(enc, 0, "social.friend1.trust") == pytest.approx(float(tie[TRUST]))
    assert feature(enc, 0, "social.rival1.rivalry") == pytest.approx(float(w.relationships.tie(0, 3)[RIVALRY]))
    start = enc.layout.index("social.rival2.embedding")
    assert not enc.buffer[0, start : start + dim + 3].any()  # only one rival
    assert not enc.buffer[1, enc.layout.index("social.friend1.embedding")]  # agent 1 has no ties of its own


def test_local_summaries_count_only_ties_to_nearby_agents(make_sim) -> None:
    """Mean and max trust cover ties to agents within local_radius; a far friend is left out."""
    sim = make_sim(agents=3, manual=True)
    w = sim.world
    w.relationships.apply(w, 0, 1, "good_chat")
    for _ in range(3):
        w.relationships.apply(w, 0, 2, "good_chat")
    place_at(sim, 0, 20, 11)
    place_at(sim, 1, 22, 11)
    place_at(sim, 2, 40, 11)
    enc = encoder(sim, "hybrid")
    near_trust = float(w.relationships.tie(0, 1)[TRUST])
    assert feature(enc, 0, "local.mean_trust") == pytest.approx(near_trust)
    assert feature(enc, 0, "local.max_trust") == pytest.approx(near_trust)
    assert feature(enc, 0, "local.max_rivalry") == pytest.approx(float(w.relationships.tie(0, 1)[RIVALRY]))
    assert feature(enc, 0, "local.agents_nearby") == pytest.approx(1 / 4)


def test_crowd_count_is_the_same_pairwise_and_by_box_sums(make_sim) -> None:
    """The big-town box-sum count of nearby agents equals the pairwise count (and a plain numpy count)."""
    sim = make_sim(agents=80, overrides=["town.scale=2", "population.household_size=2"])
    for _ in range(300):
        sim.step()
    w, a = sim.world, sim.world.agents
    width, height, r = w.grid.width, w.grid.height, w.config.observations.local_radius
    slots = a.slots()
    n = int(slots[-1]) + 1
    xy = np.stack([a.tile % width, a.tile // width]).astype(np.int64)
    x, y = xy[0, slots], xy[1, slots]
    expected = ((np.abs(x[:, None] - x) <= r) & (np.abs(y[:, None] - y) <= r)).sum(axis=1) - 1
    pairwise, boxes = np.zeros(a.capacity, np.int64), np.zeros(a.capacity, np.int64)
    count_pairwise(n, a.alive, xy, r, pairwise)
    count_boxes(n, a.alive, xy, r, w.occupancy, width, height, np.zeros((height + 1) * (width + 1), np.int64), boxes)
    assert np.array_equal(pairwise[slots], expected) and np.array_equal(boxes[slots], expected)


def test_ctx_reset_marks_first_observations_and_newcomers(make_sim) -> None:
    """ctx_reset is 1 on an agent's first observation (episode start, or arrival), 0 afterwards."""
    sim = make_sim(agents=3)
    enc = encoder(sim, "compact")
    assert [feature(enc, s, "ctx_reset") for s in range(3)] == [1.0, 1.0, 1.0]
    sim.step()
    enc.encode()
    assert [feature(enc, s, "ctx_reset") for s in range(3)] == [0.0, 0.0, 0.0]
    sim.world.remove(1)
    sim.step()
    new = sim.world.spawn()
    enc.encode()
    assert new == 1 and feature(enc, 1, "ctx_reset") == 1.0 and feature(enc, 0, "ctx_reset") == 0.0


def test_self_scalars_follow_the_agent(make_sim) -> None:
    """Needs, wallet, clock, option, activity and commitment read what the world holds."""
    sim = make_sim(agents=1, manual=True)
    w, a = sim.world, sim.world.agents
    a.needs[0] = [0.1, 0.2, 0.3, 0.4]
    a.wallet[0] = 10.0
    w.tick = 250  # 06:00
    sim.controller.start(0, Option.GET_FED)
    enc = encoder(sim, "compact")
    assert [feature(enc, 0, f"needs.{n}") for n in ("hunger", "hygiene", "energy", "social")] == pytest.approx(
        [0.1, 0.2, 0.3, 0.4]
    )
    assert feature(enc, 0, "wallet") == pytest.approx(np.tanh(1.0))
    assert feature(enc, 0, "time.sin") == pytest.approx(1.0) and feature(enc, 0, "time.cos") == pytest.approx(0.0)
    assert feature(enc, 0, "option.GetFed") == 1.0 and feature(enc, 0, "option.Idle") == 0.0
    assert feature(enc, 0, "option.commitment_left") == 1.0
    assert feature(enc, 0, "activity.moving") == float(a.activity[0] == Activity.MOVING)


def test_job_features_flag_the_shift_and_lateness(make_sim) -> None:
    """On shift and not clocked in, an employed agent reads on_shift = late = 1; clocked in, late = 0."""
    sim = make_sim(agents=1, manual=True)
    w = sim.world
    w.employment.hire(w, 0, 0)
    start = int(w.employment.start[0])
    w.tick = start + 30
    enc = encoder(sim, "compact")
    assert feature(enc, 0, "job.has_job") == 1.0
    assert feature(enc, 0, "job.on_shift") == 1.0 and feature(enc, 0, "job.late") == 1.0
    w.employment.arrived_day[0] = w.tick // w.ticks_per_day
    enc.encode()
    assert feature(enc, 0, "job.late") == 0.0
    assert feature(enc, 0, "target.work.present") == 1.0


def test_compact_path_hint_points_along_the_path(make_sim) -> None:
    """While walking, the N/E/S/W hint is the next step of the agent's distance field."""
    sim = make_sim(agents=1, manual=True)
    w = sim.world
    bed = int(w.objects.of_type_in_place("bed", int(w.agents.home[0]))[0])
    place_at(sim, 0, 2, 11)
    w.go_use(0, bed, w.manifest.by_id["nap"].index)
    enc = encoder(sim, "compact")
    step = w.grid.step_at(int(w.agents.dest_field[0]), int(w.agents.tile[0]))
    names = ["path_hint.north", "path_hint.east", "path_hint.south", "path_hint.west"]
    hint = [feature(enc, 0, n) for n in names]
    assert step in (1, 2, 3, 4) and hint == [1.0 if k == step - 1 else 0.0 for k in range(4)]


def test_encoder_writes_into_a_given_buffer(make_sim) -> None:
    """An encoder fills a caller's float32[capacity, size] buffer in place, and rejects a wrong one."""
    sim = make_sim(agents=2)
    size = layout_of(sim.world, "hybrid").size
    out = np.zeros((sim.world.agents.capacity, size), dtype=np.float32)
    enc = ObservationEncoder(sim.world, "hybrid", out=out)
    assert enc.encode() is out and out[:2].any()
    with pytest.raises(ValueError, match="float32"):
        ObservationEncoder(sim.world, "hybrid", out=np.zeros((3, size), dtype=np.float32))
