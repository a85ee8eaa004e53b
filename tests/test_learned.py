"""The learned policy in a town: torch threads pinned around the forward pass, recurrent state reset per slot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from townlet.config import load_config
from townlet.policy.learned import LearnedPolicy, torch_threads
from townlet.sim import Simulation
from townlet.training.evaluation import install
from training_support import tiny_checkpoint


class Spy:
    """Wraps a policy network: records the torch thread count and the recurrent state each forward pass sees."""

    def __init__(self, net: Any) -> None:
        self.net = net
        self.threads: list[int] = []
        self.states: list[torch.Tensor | None] = []

    def __call__(self, obs: torch.Tensor, mask: torch.Tensor, state: Any = None, reset: Any = None) -> Any:
        self.threads.append(torch.get_num_threads())
        self.states.append(None if state is None else state[0].clone())
        return self.net(obs, mask, state, reset)

    def initial_state(self, batch: int) -> Any:
        return self.net.initial_state(batch)


@pytest.fixture
def two_threads() -> Any:
    """Torch starts each test at two threads (the machine's cores) and gets its setting back after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def spied(policy: LearnedPolicy) -> Spy:
    spy = Spy(policy.net)
    policy.net = spy  # type: ignore[assignment]
    return spy


def test_the_forward_pass_runs_on_one_torch_thread_and_the_setting_comes_back(tmp_path: Path, two_threads) -> None:
    """By default the network acts on one thread; torch's own setting is restored after every tick."""
    sim = Simulation(load_config(), seed=0)
    sim.actor = LearnedPolicy(tiny_checkpoint(tmp_path / "p.pt", decisions="ticks"))
    spy = spied(sim.actor)
    for _ in range(3):
        sim.step()
    assert spy.threads == [1, 1, 1] and torch.get_num_threads() == 2


def test_a_semi_mdp_policy_is_asked_only_for_agents_at_a_decision_point(tmp_path: Path) -> None:
    """Forward passes see only the deciding agents; everybody else continues its running option untouched."""
    sim = Simulation(load_config(), seed=0)
    sim.actor = LearnedPolicy(tiny_checkpoint(tmp_path / "p.pt"))
    spy = spied(sim.actor)
    rows, ticks_with_pass = 0, 0
    for _ in range(200):
        deciding = sim.controller.deciding()
        running = sim.world.agents.option.copy()
        passes = len(spy.threads)
        actions = sim.actor.act(sim)
        assert list(sim.actor.deciders) == list(deciding.nonzero()[0])
        keep = sim.world.agents.alive & ~deciding
        assert (actions[keep] == running[keep]).all(), "non-deciders continue"
        assert len(spy.threads) == passes + (1 if deciding.any() else 0)
        rows += int(deciding.sum())
        ticks_with_pass += bool(deciding.any())
        sim.step(actions)
    assert 0 < ticks_with_pass < 200 and rows < 200 * 8 / 4, "a small share of agent-ticks are decisions"


def test_policy_threads_come_from_the_config_and_0_leaves_torch_alone(tmp_path: Path, two_threads) -> None:
    """install() passes promotion.policy_threads; 0 keeps torch's default thread count."""
    path = tiny_checkpoint(tmp_path / "p.pt")
    for threads, seen in ((0, 2), (1, 1)):
        sim = Simulation(load_config(overrides=[f"promotion.policy_threads={threads}"]), seed=0)
        install(sim, path)
        assert sim.actor.threads == threads
        spy = spied(sim.actor)
        sim.step()
        assert spy.threads == [seen]
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def lstm_town(tmp_path: Path) -> tuple[Simulation, Spy]:
    sim = Simulation(
        load_config(overrides=["population.agents=3", "features.lifecycle=on", "lifecycle.spawn_delay=[3, 3]"]), seed=0
    )
    sim.actor = LearnedPolicy(tiny_checkpoint(tmp_path / "lstm.pt", lstm=True, decisions="ticks"))
    spy = spied(sim.actor)
    for _ in range(5):
        sim.step()
    return sim, spy


def state_of(spy: Spy, live: np.ndarray, slot: int) -> torch.Tensor:
    """The recurrent state (h) of ``slot`` as the last forward pass received it."""
    state = spy.states[-1]
    assert state is not None
    return state[0, int(np.flatnonzero(live == slot)[0])]


def test_a_newcomer_starts_from_a_zero_recurrent_state_and_only_its_slot_is_reset(tmp_path: Path) -> None:
    """An agent leaves slot 1; its successor's first step sees a zero state, the others keep theirs."""
    sim, spy = lstm_town(tmp_path)
    sim.enqueue(lambda w: sim.lifecycle.exit(1, "console"))
    sim.step()
    assert not sim.world.agents.alive[1]
    before = {s: state_of(spy, np.array([0, 2]), s) for s in (0, 2)}
    while not sim.world.agents.alive[1]:
        sim.step()
    assert sim.world.agents.ids[1] == "agent_3"
    sim.step()  # the newcomer's first decision
    live = sim.world.agents.slots()
    assert list(live) == [0, 1, 2]
    assert torch.count_nonzero(state_of(spy, live, 1)) == 0, "the leaver's state is gone"
    for s in (0, 2):
        kept = state_of(spy, live, s)
        assert torch.count_nonzero(kept) > 0 and not torch.equal(kept, before[s]), "carried on, not reset"
    sim.step()
    assert torch.count_nonzero(state_of(spy, live, 1)) > 0, "then it builds up its own"


def test_the_ctx_reset_flag_zeroes_that_slots_recurrent_state_only(tmp_path: Path) -> None:
    """An observation with ctx_reset = 1 (a hard context cut) starts that slot's state from zero."""
    sim, spy = lstm_town(tmp_path)
    policy = sim.actor
    encode = policy.encoder.encode
    ctx = policy.encoder.layout.index("ctx_reset")

    def cut_slot_2() -> np.ndarray:
        obs = encode()
        obs[2, ctx] = 1.0
        return obs

    policy.encoder.encode = cut_slot_2
    sim.step()
    live = sim.world.agents.slots()
    assert torch.count_nonzero(state_of(spy, live, 2)) == 0
    assert torch.count_nonzero(state_of(spy, live, 0)) > 0 and torch.count_nonzero(state_of(spy, live, 1)) > 0
