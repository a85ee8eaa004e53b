"""The compiled observation encoder writes exactly what the plain numpy reference (the original encoder) wrote."""

from __future__ import annotations

import numpy as np
import pytest

from observations_support import ReferenceEncoder
from townlet.env import parallel_env
from townlet.env.speed import random_masked
from townlet.observations import VARIANTS, ObservationEncoder
from townlet.world.relationships import RIVALRY
from townlet.world.state import World

LIFECYCLE = [
    "features.lifecycle=on",
    "lifecycle.exits.age_out=true",
    "lifecycle.age_out_days=0.3",
    "lifecycle.exit_spacing=5",
    "lifecycle.max_exits_per_day=50",
    "env.horizon=100000",
]


def assert_same(enc: np.ndarray, ref: ReferenceEncoder, when: str) -> None:
    """Bit-identical buffers, or a message naming the first differing features."""
    got, want = enc, ref.buffer
    if np.array_equal(got, want):
        return
    rows, cols = np.nonzero(got != want)
    names = sorted(
        {
            f.name
            for f in ref.layout.features
            for c in cols[:50]
            if f.start <= c < f.stop and (c - f.start) % f.step == 0
        }
    )
    raise AssertionError(
        f"{when}: {len(rows)} values differ, slots {sorted(set(rows.tolist()))[:10]}, "
        f"features {names[:10]}, max gap {np.abs(got - want).max()}"
    )


def stir(world: World, rng: np.random.Generator) -> None:
    """A good chat and a grudge between random living agents, so ties, rivals and their flags show up."""
    live = world.agents.slots()
    if len(live) >= 2:
        a, b, c, d = rng.choice(live, 4)
        if a != b:
            world.relationships.apply(world, int(a), int(b), "good_chat")
        if c != d:
            world.relationships.apply(world, int(c), int(d), "took_my_shift")


def run_env(variant: str, agents: int, steps: int, every: int, overrides: list[str]) -> dict[str, int]:
    """Random masked agents in an env; compare the env's observations with the reference's; count coverage."""
    env = parallel_env(variant=variant, agents=agents, overrides=overrides)
    obs, _ = env.reset(seed=3)
    world = env.core.sim.world
    ref = ReferenceEncoder(world, variant)
    ref.encode()
    assert_same(env.core.buffers.obs, ref, "reset")
    rng = np.random.default_rng(3)
    seen = {"ties": 0, "rivals": 0, "queued": 0, "arrivals": 0, "compared": 0}
    for step in range(steps):
        if step % 25 == 0:
            stir(world, rng)
        names = env.agents
        choice = random_masked(rng, np.stack([obs[a]["action_mask"] for a in names]))
        obs, *_ = env.step(dict(zip(names, choice.tolist(), strict=True)))
        rel = world.relationships
        seen["ties"] += bool((rel.other >= 0).any())
        seen["rivals"] += bool(((rel.other >= 0) & (rel.values[..., RIVALRY] > 0)).any())
        seen["queued"] += any(world.objects.queue)
        seen["arrivals"] += bool(env.core.buffers.arrived.any())
        if step % every == 0 or env.core.buffers.arrived.any() or env.core.buffers.exited.any():
            ref.encode()
            assert_same(env.core.buffers.obs, ref, f"step {step}")
            seen["compared"] += 1
        else:
            ref.seen_alive[:] = world.agents.alive  # keep its ctx_reset memory in step with the encoder's
            ref.seen_spawn[:] = world.agents.spawn_tick
    return seen


@pytest.mark.parametrize("variant", VARIANTS)
def test_encoder_matches_the_reference_while_agents_leave_and_arrive(variant: str) -> None:
    """Every step of a busy town with exits and newcomers encodes exactly as the numpy reference does."""
    seen = run_env(variant, agents=8, steps=900, every=1, overrides=LIFECYCLE)
    assert seen["arrivals"] >= 3 and seen["rivals"] and seen["queued"], seen


def test_encoder_matches_the_reference_in_a_big_town() -> None:
    """With more than 64 agents (box-sum crowd counts) the full variant still matches the reference."""
    seen = run_env("full", agents=100, steps=120, every=10, overrides=["town.scale=2", "env.horizon=100000"])
    assert seen["compared"] >= 12 and seen["queued"], seen


def test_encoder_matches_the_reference_in_a_scripted_town(make_sim) -> None:
    """A day of the scripted town (chats, rivalries, queues) encodes as the reference, in every variant."""
    sim = make_sim(agents=12, overrides=LIFECYCLE)
    encs = [ObservationEncoder(sim.world, v) for v in VARIANTS]
    refs = [ReferenceEncoder(sim.world, v) for v in VARIANTS]
    for tick in range(1200):
        sim.step()
        if tick % 3 == 0:
            for enc, ref in zip(encs, refs, strict=True):
                got = enc.encode()
                ref.encode()
                assert_same(got, ref, f"{enc.variant} tick {tick}")


def test_encoder_matches_the_reference_with_rivals_in_a_queue(make_sim) -> None:
    """Queues, holders and rivals in one line (every queue flag set somewhere) encode as the reference."""
    sim = make_sim(agents=4, manual=True)
    w = sim.world
    till = int(w.objects.by_type["till"][0])
    w.relationships.apply(w, 1, 2, "took_my_shift")
    w.relationships.apply(w, 3, 0, "took_my_shift")
    w.relationships.apply(w, 2, 3, "good_chat")
    w.queues.reserve(w, 0, till)
    w.agents.target_obj[0] = till
    w.queues.request(w, [(1, till), (2, till), (3, till)])
    for variant in VARIANTS:
        enc, ref = ObservationEncoder(w, variant), ReferenceEncoder(w, variant)
        ref.encode()
        assert_same(enc.encode(), ref, variant)
        assert enc.buffer[:, enc.layout.index("flag.rival_in_queue")].sum() == 2
        sim.step()
        ref.encode()
        assert_same(enc.encode(), ref, f"{variant}, a tick later")
