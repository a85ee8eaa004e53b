"""PPO over options: the update, rollout collection, window KPIs, the curriculum, and training runs end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from townlet.config.errors import ConfigError
from townlet.config.loader import DEFAULT_CONFIG, load_config
from townlet.env import BatchedTowns
from townlet.policy.checkpoint import CheckpointError, from_network, load, save
from townlet.policy.learned import LearnedPolicy
from townlet.policy.networks import NetworkSpec, OptionPolicyNet
from townlet.sim import Simulation
from townlet.training.curriculum import Curriculum
from townlet.training.ppo import PPOArgs, train
from townlet.training.rollout import Collector, Rollout
from townlet.training.update import ppo_update, sequences
from townlet.training.windows import BestWindows, baseline_kpis, window_kpis, window_score

TINY = {
    "towns": 2,
    "rollout_ticks": 32,
    "window_ticks": 64,
    "baselines": False,
    "checkpoint_every": 2,
    "final_eval": False,
    "env_workers": 0,
}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """Tiny networks on a shared 2-core machine: one thread avoids oversubscription (train() sets it too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def net_for(collector: Collector, **kw: Any) -> OptionPolicyNet:
    torch.manual_seed(0)
    return OptionPolicyNet(NetworkSpec.for_layout(collector.layout, collector.n_actions, **kw))


# -- the update ------------------------------------------------------------------------------------------------


def transitions(
    obs: np.ndarray,
    actions: np.ndarray,
    logp: np.ndarray,
    values: np.ndarray,
    rewards: np.ndarray,
    learned: bool = True,
) -> Rollout:
    """One-decision episodes (each transition ends its agent's episode), for bandit-style update tests."""
    n = len(actions)
    return Rollout(
        obs=obs,
        masks=np.ones((n, 7), bool),
        actions=actions,
        logprobs=logp,
        values=values,
        rewards=rewards,
        discounts=np.ones(n, np.float32),
        next_values=np.zeros(n, np.float32),
        ends=np.ones(n, bool),
        next_index=np.full(n, -1),
        learned=np.full(n, learned),
        slots=np.arange(n),
        ticks=np.ones(n, np.int64),
        resets=np.ones(n, bool),
    )


def test_update_raises_the_probability_of_the_rewarded_option() -> None:
    """A bandit where option 3 pays 1 and the rest 0: a few PPO updates make option 3 the most likely."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = OptionPolicyNet(NetworkSpec(obs_dim=4, n_actions=7, hidden=16))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    args = PPOArgs(reward_scale=1.0, gae_lambda=0.0, minibatches=1)
    n = 128
    obs = np.ones((n, 4), np.float32)
    mask = torch.ones(1, 7, dtype=torch.bool)
    before = torch.softmax(net(torch.ones(1, 4), mask)[0], -1)[0, 3].item()
    for _ in range(8):
        with torch.no_grad():
            logits, values, _ = net(torch.from_numpy(obs), torch.ones(n, 7, dtype=torch.bool))
            dist = net.distribution(logits)
            actions = dist.sample()
            logp = dist.log_prob(actions)
        act = actions.numpy()
        ro = transitions(obs, act, logp.numpy(), values.numpy(), (act == 3).astype(np.float32))
        stats = ppo_update(net, opt, ro, args, torch.device("cpu"), rng)
    after = torch.softmax(net(torch.ones(1, 4), mask)[0], -1)[0, 3].item()
    assert before == pytest.approx(1 / 7, abs=0.02)
    assert after > 0.5
    assert set(stats) >= {"policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "explained_variance"}


def test_scripted_rows_train_the_value_but_not_the_policy() -> None:
    """With every transition left to the scripted routine the policy weights stay put while the critic learns."""
    torch.manual_seed(0)
    net = OptionPolicyNet(NetworkSpec(obs_dim=4, n_actions=7, hidden=16))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    actor = net.actor.weight.detach().clone()
    critic = net.critic.weight.detach().clone()
    n = 32
    ro = transitions(
        np.ones((n, 4), np.float32),
        np.zeros(n, np.int64),
        np.full(n, -np.log(7), np.float32),
        np.zeros(n, np.float32),
        np.ones(n, np.float32),
        learned=False,
    )
    ppo_update(net, opt, ro, PPOArgs(ent_coef=0.0), torch.device("cpu"), np.random.default_rng(0))
    assert torch.equal(net.actor.weight, actor)
    assert not torch.equal(net.critic.weight, critic)


# -- networks -------------------------------------------------------------------------------------------------


def test_full_variant_cnn_reads_the_map_block_channel_by_channel() -> None:
    """The CNN's grid cell (channel, row, column) is the observation's layout.map_cell(row, column, channel)."""
    towns = BatchedTowns(1, variant="full")
    layout = towns.layout
    spec = NetworkSpec.for_layout(layout, towns.actions)
    assert spec.map_shape == (len(layout.channels), layout.window, layout.window)
    assert spec.map_start == layout.blocks["map"][0] and spec.map_order == "hwc"
    net = OptionPolicyNet(spec)
    obs = torch.from_numpy(np.random.default_rng(1).random((2, layout.size), dtype=np.float32))
    grid = net.map_grid(obs)
    for row, col, ch in ((0, 0, 0), (5, 5, 4), (10, 3, len(layout.channels) - 1)):
        assert grid[1, ch, row, col] == obs[1, layout.map_cell(row, col, layout.channels[ch])]
    logits, value, _ = net(obs, torch.ones(2, towns.actions, dtype=torch.bool))
    assert logits.shape == (2, towns.actions) and value.shape == (2,)


def test_stay_bias_favours_the_running_option_at_a_critical_decision() -> None:
    """With the stay bias a fresh network gives the running option most of the probability; without it, 1/7."""
    towns = BatchedTowns(1)
    towns.reset(seed=0)
    layout = towns.layout
    obs = np.zeros((1, layout.size), np.float32)
    obs[0, layout.index("option.GoToWork")] = 1.0
    mask = torch.ones(1, 7, dtype=torch.bool)
    with_bias = OptionPolicyNet(NetworkSpec.for_layout(layout, 7, stay_bias=4.0))
    plain = OptionPolicyNet(NetworkSpec.for_layout(layout, 7))
    p_bias = torch.softmax(with_bias(torch.from_numpy(obs), mask)[0], -1)[0, 2].item()
    p_plain = torch.softmax(plain(torch.from_numpy(obs), mask)[0], -1)[0, 2].item()
    assert p_bias > 0.85
    assert p_plain == pytest.approx(1 / 7, abs=0.02)


# -- collection ----------------------------------------------------------------------------------------------


def test_collector_steps_every_town_exactly_and_asks_only_deciding_agents() -> None:
    """Each town runs exactly the budget; transitions are decisions with legal actions, far fewer than agent-ticks."""
    c = Collector(None, [], 2, 5, 0.99)
    ro = c.collect(net_for(c), 300)
    assert ro.town_ticks == 600 and c.kpis.ticks == 300 and not ro.windows
    assert 16 <= ro.size < 0.2 * 600 * 8, "agents decide at decision points, not every tick"
    assert ro.obs.shape == (ro.size, c.layout.size) and ro.masks.shape == (ro.size, 7)
    assert ro.masks[np.arange(ro.size), ro.actions].all()
    assert (ro.logprobs <= 0).all() and (ro.ticks >= 1).all()
    first = {int(s) for s in ro.slots[ro.resets]}
    assert first == set(range(8)) | set(range(c.capacity, c.capacity + 8)), "everyone's first decision resets"
    ro2 = c.collect(net_for(c), 800)
    assert ro2.town_ticks == 1600 and not ro2.resets.any(), "open transitions carry over to the next rollout"
    assert len(ro2.windows) == 1 and ro2.window_ends == [2 * 700], "the day's window closes on its last tick"


def test_a_town_collects_the_same_whichever_batch_or_process_it_is_in() -> None:
    """Town 1 of a two-town collector seeded s matches a one-town collector seeded s + 1, also with a worker."""
    pair = Collector(None, [], 2, 10, 0.99, workers=1)
    single = Collector(None, [], 1, 11, 0.99)
    net = net_for(pair)
    try:
        a, b = pair.collect(net, 200), single.collect(net, 200)
    finally:
        pair.close()
    cap = pair.capacity
    second = a.slots >= cap
    np.testing.assert_array_equal(a.actions[second], b.actions)
    np.testing.assert_array_equal(a.slots[second] - cap, b.slots)
    np.testing.assert_allclose(a.rewards[second], b.rewards)


def test_scripted_share_leaves_slots_to_the_routine() -> None:
    """Half the slots scripted: their transitions feed the values but are not learned."""
    c = Collector(None, [], 1, 0, 0.99)
    c.set_scripted_share(0.5)
    ro = c.collect(net_for(c), 800)  # (the routine sleeps until 06:00: its first decisions come after)
    scripted = c.scripted.reshape(-1)
    assert scripted.sum() == c.capacity // 2
    assert not ro.learned[scripted[ro.slots]].any()
    assert scripted[ro.slots].any() and ro.learned[~scripted[ro.slots]].any()


def test_horizon_truncation_is_bootstrapped_with_the_final_value() -> None:
    """At the horizon every open transition ends, bootstrapping with V(final observation), and a new chain starts."""
    c = Collector(None, ["env.horizon=60"], 1, 0, 0.9)
    net = net_for(c)
    ro = c.collect(net, 60)  # the rollout ends with the episode
    cut = ro.ends
    assert cut.sum() == 8, "the eight agents' episodes end at the horizon"
    final = c.towns.final_obs.reshape(c.slots, -1)
    with torch.no_grad():
        _, v, _ = net(torch.from_numpy(final[ro.slots[cut]]), torch.ones(int(cut.sum()), 7, dtype=torch.bool))
    np.testing.assert_allclose(ro.next_values[cut], v.numpy(), rtol=1e-5)
    assert (ro.next_index[cut] == -1).all()
    after = c.collect(net, 50)
    assert after.resets.any() and set(after.slots[after.resets]) <= set(range(8)), "the next episode starts afresh"


def test_lstm_collection_keeps_state_and_resets_it_at_arrivals() -> None:
    """A recurrent net: every transition carries the state before it; first decisions start from zero."""
    c = Collector(None, [], 1, 0, 0.99)
    net = net_for(c, lstm=True, hidden=32)
    ro = c.collect(net, 300)
    assert ro.init_state is not None and ro.init_state[0].shape == (1, ro.size, 32)
    assert not np.any(ro.init_state[0][:, ro.resets]) and np.any(ro.init_state[0][:, ~ro.resets])
    assert c.state is not None and c.state[0].abs().sum() > 0
    seq = sequences(ro)
    assert seq.valid.sum() == ro.size and (ro.slots[seq.rows[0]] == np.sort(np.unique(ro.slots))).all()


# -- window KPIs and baselines ----------------------------------------------------------------------------------


def test_scripted_day_scores_well_and_random_day_scores_worse() -> None:
    """Over one day the scripted routine attends every shift with needs in check; random masked does worse."""
    scripted = baseline_kpis(None, [], 1, 1000, 3, "scripted")
    random = baseline_kpis(None, [], 1, 1000, 3, "random")
    assert scripted["attendance"] == 1.0 and scripted["need_ok_share"] > 0.9
    assert scripted["self_sufficiency"] > 0.8
    assert random["need_ok_share"] < scripted["need_ok_share"]
    assert random["reward"] < scripted["reward"]


def test_window_kpis_are_ratios_of_the_summed_counters() -> None:
    """Raw sums from two sources add up before the ratios are taken."""
    one = np.array([3, 1, 1, 80, 100, 0, 0, 2, 4, 1.0])
    two = np.array([1, 3, 0, 20, 100, 2, 1, 0, 4, -1.0])
    k = window_kpis(one + two, 100)
    assert k["attendance"] == 0.5 and k["lateness"] == 0.25 and k["need_ok_share"] == 0.5
    assert k["self_sufficiency"] == 0.25 and k["collapses"] == 1.0 and k["exits"] == 0.5 and k["reward"] == 0.0


def sufficiency_window(sufficient: int, present: int) -> np.ndarray:
    """Raw window sums with only the self-sufficiency counts set."""
    raw = np.zeros(10)
    raw[7], raw[8] = sufficient, present
    return raw


def test_best_windows_score_the_last_windows_together_and_keep_the_best() -> None:
    """Scores add the last two windows' sums; none wins before two; only a strictly better one is a new best."""
    best = BestWindows({"self_sufficiency": 1.0}, windows=2, ticks_per_day=100)
    seen = [best.observe(sufficiency_window(s, 4), step) for step, s in enumerate((1, 3, 0, 4, 4))]
    assert seen == [(0.25, False), (0.5, True), (0.375, False), (0.5, False), (1.0, True)]
    assert best.score == 1.0 and best.step == 4 and best.kpis is not None and best.kpis["self_sufficiency"] == 1.0
    again = BestWindows({"self_sufficiency": 1.0}, windows=2, ticks_per_day=100)
    again.load_state_dict(json.loads(json.dumps(best.state_dict())))
    assert (again.score, again.step) == (1.0, 4) and again.observe(sufficiency_window(0, 4), 5) == (0.5, False)
    best.reset()
    assert best.step is None and best.observe(sufficiency_window(0, 4), 6) == (0.0, False)
    assert best.observe(sufficiency_window(1, 4), 7) == (0.125, True)
    mixed = {"self_sufficiency": 0.5, "need_ok_share": 0.9, "attendance": 1.0}
    assert window_score(mixed, {"self_sufficiency": 0.5, "need_ok_share": 0.25, "attendance": 0.25}) == pytest.approx(
        0.725
    )
    with pytest.raises(ValueError, match="unknown KPI"):
        BestWindows({"happiness": 1.0}, 2, 100)
    with pytest.raises(ValueError, match="more than 0"):
        BestWindows({"attendance": 0.0}, 2, 100)


# -- curriculum --------------------------------------------------------------------------------------------------


def staged_config(write_yaml: Callable[[str, Any], Path], bands: dict[str, list[float]]) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["affordances"] = str(DEFAULT_CONFIG.parent / "affordances.yaml")
    raw["town"]["map"] = str(DEFAULT_CONFIG.parent / "town.yaml")
    raw["stages"]["M0"]["advance_when"] = bands
    raw["stages"]["M1"]["advance_when"] = bands
    return write_yaml("staged.yaml", raw)


def test_curriculum_moves_on_after_two_passing_windows_in_a_row(write_yaml: Callable[[str, Any], Path]) -> None:
    """A failing window resets the streak; two passing windows in a row move M0 -> M1."""
    cur = Curriculum.from_config(load_config(staged_config(write_yaml, {"attendance": [0.8, 1.0]})), "M0")
    good, bad = {"attendance": 0.9}, {"attendance": 0.5}
    assert cur.observe(good, 10) is None
    assert cur.observe(bad, 20) is None and cur.streak == 0
    assert cur.observe(good, 30) is None
    assert cur.observe(good, 40) == "M1" and cur.stage == "M1" and cur.history == [(40, "M1")]


def test_curriculum_without_bands_or_in_manual_mode_stays(write_yaml: Callable[[str, Any], Path]) -> None:
    """No bands, the last stage, or auto off: windows never move the stage; advance() does."""
    loaded = load_config(staged_config(write_yaml, {"attendance": [0.0, 1.0]}))
    cur = Curriculum.from_config(loaded, "M4")
    cur.bands["M4"] = {}
    assert all(cur.observe({"attendance": 1.0}, i) is None for i in range(4))
    cur = Curriculum.from_config(loaded, "M5")
    assert all(cur.observe({"attendance": 1.0}, i) is None for i in range(4))
    manual = Curriculum.from_config(loaded, "M0", auto=False)
    assert all(manual.observe({"attendance": 1.0}, i) is None for i in range(4))
    assert manual.advance(5, "M3") == "M3" and manual.stage == "M3"


def test_unknown_kpi_in_a_band_is_a_config_error(write_yaml: Callable[[str, Any], Path]) -> None:
    """A band on a KPI the trainer does not measure names its key path."""
    with pytest.raises(ConfigError, match=r"stages\.M0\.advance_when\.happiness"):
        Curriculum.from_config(load_config(staged_config(write_yaml, {"happiness": [0.5, 1.0]})), "M0")


def test_band_with_low_above_high_is_rejected() -> None:
    """``advance_when`` bands are [low, high] with low <= high."""
    with pytest.raises(ConfigError, match="advance_when"):
        load_config(overrides=["stages.M0.advance_when={attendance: [0.9, 0.1]}"])


# -- training runs ------------------------------------------------------------------------------------------------


def test_training_run_writes_metrics_curves_and_loadable_checkpoints(tmp_path: Path) -> None:
    """A tiny run: metrics lines, the PNG, checkpoints with identity, scorecards, and a policy that drives a town."""
    out = tmp_path / "run"
    summary = train(
        PPOArgs(out=str(out), total_steps=256, eval_days=0.05, **{**TINY, "baselines": True, "final_eval": True})
    )
    assert summary["global_step"] == 256 and summary["updates"] == 4
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in rows]
    assert kinds[0] == "start" and kinds.count("baseline") == 2 and kinds.count("update") == 4
    assert kinds[-1] == "final" and set(rows[-1]["scorecards"]) - {"best"} == {"ppo", "scripted", "random"}
    card = json.loads((out / "scorecard.json").read_text())["ppo"]
    assert {"attendance", "lateness", "collapses", "need_ok_share", "self_sufficiency"} <= set(card)
    updates = [r for r in rows if r["kind"] == "update"]
    assert [u["global_step"] for u in updates] == [64, 128, 192, 256]
    assert sum("window" in u for u in updates) == 2
    assert (out / "learning_curves.png").stat().st_size > 10_000
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["update_000002.pt", "update_000004.pt"]
    ck = load(out / "final.pt")
    assert ck.variant == "hybrid" and ck.config_id == load_config().config_id and ck.step == 256
    assert ck.policy_hash == summary["policy_hash"] and "optimizer" in ck.meta
    sim = Simulation(load_config(), seed=0)
    sim.actor = LearnedPolicy(ck)
    for _ in range(5):
        sim.step()
    assert sim.actor.probs[sim.world.agents.slots()].sum(axis=1) == pytest.approx(1.0, abs=1e-5)


def test_training_keeps_the_checkpoint_of_the_best_windows(tmp_path: Path) -> None:
    """Each better window score saves best.pt and a best line; the summary and a resume know the best so far."""
    out = tmp_path / "run"
    summary = train(PPOArgs(out=str(out), total_steps=384, **TINY))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scores = [r["window_score"] for r in rows if r["kind"] == "update" and "window" in r]
    bests = [r for r in rows if r["kind"] == "best"]
    assert len(scores) == 3 and bests and bests[0]["global_step"] == 256, "the first pair of windows is the first best"
    assert [b["score"] for b in bests] == sorted({b["score"] for b in bests}), "each best beats the one before"
    assert max(scores) == bests[-1]["score"] == summary["best_score"]
    ck = load(out / "best.pt")
    assert summary["best_checkpoint"] == str(out / "best.pt") and summary["best_tick"] == bests[-1]["global_step"]
    assert ck.step == summary["best_tick"] and ck.meta["best"]["score"] == summary["best_score"]
    assert summary["best_window"] == bests[-1]["kpis"]
    resumed = train(PPOArgs(resume=str(out), total_steps=448))
    assert resumed["best_score"] >= summary["best_score"] and resumed["best_tick"] >= summary["best_tick"]


def test_resume_continues_the_step_count_and_the_metrics(tmp_path: Path) -> None:
    """Resuming a run directory picks up at its last checkpoint and appends to metrics.jsonl."""
    out = tmp_path / "run"
    train(PPOArgs(out=str(out), total_steps=128, **TINY))
    first = load(out / "latest.pt")
    summary = train(PPOArgs(resume=str(out), total_steps=256))
    assert summary["global_step"] == 256 and summary["out"] == str(out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    updates = [r["update"] for r in rows if r["kind"] == "update"]
    assert updates == [1, 2, 3, 4]
    assert load(out / "final.pt").meta["args"]["towns"] == 2  # the run's own settings came back
    assert first.policy_hash != summary["policy_hash"]


def test_init_from_a_checkpoint_starts_from_its_weights(tmp_path: Path) -> None:
    """--init copies the weights and shape of a checkpoint (e.g. behaviour cloning) and records its hash."""
    c = Collector(None, [], 1, 0, 0.99)
    net = OptionPolicyNet(NetworkSpec(c.layout.size, 7, hidden=32))
    ck = from_network(net, "hybrid", load_config().config_id)
    path = save(ck, tmp_path / "bc.pt")
    out = tmp_path / "run"
    train(PPOArgs(out=str(out), total_steps=64, init=str(path), **TINY))
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["init_hash"] == ck.policy_hash and start["spec"]["hidden"] == 32
    assert load(out / "final.pt").spec.hidden == 32


def test_init_from_a_checkpoint_of_another_variant_is_refused(tmp_path: Path) -> None:
    """A checkpoint reading compact observations cannot start a hybrid run."""
    c = Collector(None, ["features.observations=compact"], 1, 0, 0.99)
    path = save(from_network(net_for(c), "compact", "x"), tmp_path / "compact.pt")
    with pytest.raises(CheckpointError, match="features"):
        train(PPOArgs(out=str(tmp_path / "run"), total_steps=64, init=str(path), **TINY))


def test_recurrent_policy_trains(tmp_path: Path) -> None:
    """An LSTM policy runs through collection and sequence replay in the update."""
    summary = train(PPOArgs(out=str(tmp_path / "run"), total_steps=128, lstm=True, hidden=32, **TINY))
    assert load(summary["final"]).spec.lstm
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["policy_loss"]) for r in rows if r["kind"] == "update")


def test_curriculum_moves_the_towns_to_the_next_stage(tmp_path: Path, write_yaml: Callable[[str, Any], Path]) -> None:
    """Bands that always hold: after two windows training continues in M1 (metrics and checkpoint say so)."""
    config = staged_config(write_yaml, {"reward": [-1.0, 1.0]})
    out = tmp_path / "run"
    summary = train(PPOArgs(config=str(config), out=str(out), stage="M0", total_steps=320, **TINY))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    stages = [(r["global_step"], r["stage"]) for r in rows if r["kind"] == "stage"]
    assert stages == [(0, "M0"), (256, "M1")]
    assert summary["stage"] == "M1" and load(out / "final.pt").meta["stage"] == "M1"
    assert [r["stage"] for r in rows if r["kind"] == "update"][-1] == "M1"
    assert train(PPOArgs(resume=str(out), total_steps=384))["stage"] == "M1"  # resume keeps the stage
    moved = train(PPOArgs(resume=str(out), total_steps=448, stage="M3", auto_curriculum=False))
    assert moved["stage"] == "M3"  # ... and --stage on resume moves it by hand
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rows if r["kind"] == "stage"][-1] == "by hand"


def test_anneal_hands_agents_over_window_by_window(tmp_path: Path) -> None:
    """With the anneal on, training starts at 80% scripted and every window is judged against scripted."""
    out = tmp_path / "run"
    summary = train(PPOArgs(out=str(out), total_steps=192, anneal=True, **TINY))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    updates = [r for r in rows if r["kind"] == "update"]
    assert updates[0]["scripted_share"] == pytest.approx(0.8)
    judged = [r for r in rows if r["kind"] == "anneal"]
    assert len(judged) == 1 and judged[0]["decision"] in ("advance", "freeze")
    expected = 0.6 if judged[0]["decision"] == "advance" else 0.8
    assert updates[-1]["scripted_share"] == pytest.approx(expected)
    assert summary["anneal"]["history"][0]["scripted_share"] == pytest.approx(0.8)


def test_shipped_stages_carry_bands_that_do_not_change_the_config_id() -> None:
    """M0-M4 ship with bands; bands are training control, so they leave the config_id alone."""
    loaded = load_config()
    cur = Curriculum.from_config(loaded, "M0")
    assert all(cur.bands[s] for s in ("M0", "M1", "M2", "M3", "M4")) and not cur.bands["M5"]
    changed = load_config(overrides=["stages.M0.advance_when={attendance: [0.5, 1.0]}"])
    assert changed.config_id == loaded.config_id


def test_agents_present_until_the_horizon_count_for_self_sufficiency() -> None:
    """Episodes ending mid-window (autoreset) still count their agents: the scripted routine stays at 1.0."""
    kpis = baseline_kpis(None, ["env.horizon=300"], 1, 600, 3, "scripted")
    assert kpis["self_sufficiency"] == 1.0 and kpis["attendance"] == 1.0


def test_baselines_score_windows_taken_together_like_the_training_windows() -> None:
    """Three scripted days as one-day windows keep most agents self-sufficient; as one 3-day span far fewer."""
    daily = baseline_kpis(None, [], 1, 3000, 4, "scripted", window=1000)
    whole = baseline_kpis(None, [], 1, 3000, 4, "scripted")
    assert daily["self_sufficiency"] >= 0.75 and daily["self_sufficiency"] > whole["self_sufficiency"]
    assert daily["need_ok_share"] == whole["need_ok_share"] and daily["attendance"] == whole["attendance"]


def _rollout(n: int, hidden: int | None) -> Rollout:
    """A rollout of ``n`` rows with row links 0 -> 1 and, with ``hidden``, LSTM state filled with ``n``."""
    ints = np.zeros(n, np.int64)
    floats = np.zeros(n, np.float32)
    flags = np.zeros(n, bool)
    init = None if hidden is None else (np.full((1, n, hidden), n, np.float32), np.full((1, n, hidden), -n, np.float32))
    return Rollout(
        obs=np.zeros((n, 3), np.float32),
        masks=np.ones((n, 2), bool),
        actions=ints,
        logprobs=floats,
        values=floats,
        rewards=floats,
        discounts=floats,
        next_values=floats,
        ends=flags,
        next_index=np.array([1] + [-1] * (n - 1)),
        learned=flags,
        slots=np.arange(n),
        ticks=ints,
        resets=flags,
        init_state=init,
        town_ticks=n,
    )


def test_concat_joins_rows_links_and_lstm_state() -> None:
    """Rollout.concat renumbers slots and row links per part and joins the LSTM state along its row axis."""
    joined = Rollout.concat([_rollout(2, 4), _rollout(3, 4)], slots_per_part=10)
    assert joined.size == 5 and joined.town_ticks == 5
    assert joined.next_index.tolist() == [1, -1, 3, -1, -1]
    assert joined.slots.tolist() == [0, 1, 10, 11, 12]
    assert joined.init_state is not None
    h, c = joined.init_state
    assert h.shape == c.shape == (1, 5, 4)
    assert h[0, :, 0].tolist() == [2, 2, 3, 3, 3] and c[0, :, 0].tolist() == [-2, -2, -3, -3, -3]
    assert Rollout.concat([_rollout(2, None), _rollout(1, None)], slots_per_part=10).init_state is None
    with pytest.raises(ValueError, match="recurrent"):
        Rollout.concat([_rollout(2, 4), _rollout(1, None)], slots_per_part=10)
