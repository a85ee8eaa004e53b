"""Which policy drives a town: references, the fit check, `--policy` on the command line, snapshots keeping it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from townlet.cli.main import main
from townlet.config.loader import load_config
from townlet.policy import shipped
from townlet.policy.checkpoint import CheckpointError, load
from townlet.policy.compat import IncompatiblePolicy, check, config_family, differences
from townlet.policy.driver import PolicyDriver
from townlet.sim import Simulation, snapshot
from townlet.training.policies import PolicyNotFound, describe, install, reinstate, resolve
from townlet.training.registry import PolicyRegistry
from training_support import tiny_checkpoint


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained semi-MDP policy for the shipped town."""
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt", seed=3)


# -- references ---------------------------------------------------------------------------------------------


def test_references_name_builtins_default_paths_and_registered_hashes(tiny: Path, tmp_path: Path) -> None:
    """scripted, random, default, a file, a hash and a unique prefix all resolve; release reads the registry."""
    assert resolve("scripted").kind == "scripted" and resolve("random").policy_hash == "random"
    default = resolve("default")
    assert default.source == "default" and default.policy_hash == shipped.default_hash()
    by_path = resolve(str(tiny))
    assert by_path.source == "path" and by_path.policy_hash == load(tiny).policy_hash
    with PolicyRegistry(tmp_path / "r.sqlite") as registry:
        registry.register(str(tiny))
        assert resolve(by_path.policy_hash, registry).source == "registry"
        assert resolve(by_path.policy_hash[:6], registry).policy_hash == by_path.policy_hash
        with pytest.raises(PolicyNotFound, match="has no release"):
            resolve("release", registry)
        registry.promote(by_path.policy_hash, "test")
        assert resolve("release", registry).policy_hash == by_path.policy_hash


def test_an_unknown_reference_is_refused_with_one_line_saying_what_a_policy_is(tmp_path: Path) -> None:
    """A name that is nothing is PolicyNotFound; a client's reference never reaches the filesystem."""
    with pytest.raises(PolicyNotFound, match="no policy 'abcdef'.*a policy is scripted, random, default"):
        resolve("abcdef")
    (tmp_path / "looks_like_a_hash").write_bytes(b"x")
    with pytest.raises(PolicyNotFound):
        resolve(str(tmp_path / "looks_like_a_hash"), paths=False)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        resolve(str(tmp_path / "looks_like_a_hash"))


# -- the fit check ------------------------------------------------------------------------------------------


def test_a_checkpoint_of_another_variant_size_or_config_does_not_fit_and_each_difference_is_named(
    tmp_path: Path,
) -> None:
    """Variant, observation size and config are named; a stage of the same town still fits."""
    compact = load(tiny_checkpoint(tmp_path / "compact.pt", variant="compact"))
    town = Simulation(load_config())
    found = differences(compact, town.world)
    assert any(d.startswith("variant: the policy reads compact") for d in found)
    assert not any(d.startswith("observation size") for d in found)  # compact's own size is right
    with pytest.raises(IncompatiblePolicy, match="does not fit this town: variant"):
        check(compact, town.world)
    check(compact, town.world, strict=False)  # runnable: the suite compares variants on purpose
    bigger = Simulation(load_config(overrides=["population.agents=4"]))
    assert any(
        d.startswith("config: trained under config")
        for d in differences(load(tiny_checkpoint(tmp_path / "h.pt")), bigger.world)
    )
    staged = load(tiny_checkpoint(tmp_path / "m2.pt", overrides=["stage=M2"]))
    assert staged.config_id in config_family(town.loaded)
    assert differences(staged, town.world) == []


def test_the_option_set_must_be_the_towns(tiny: Path) -> None:
    """A checkpoint over another number of actions, or a town of primitives, is refused by name."""
    checkpoint = load(tiny)
    primitives = Simulation(load_config(overrides=["env.action_level=primitives"]))
    assert any(
        d.startswith("option set: this town takes primitives") for d in differences(checkpoint, primitives.world)
    )
    import dataclasses

    wider = dataclasses.replace(checkpoint, spec=dataclasses.replace(checkpoint.spec, n_actions=9))
    assert any(
        d.startswith("option set: the policy chooses among 9")
        for d in differences(wider, Simulation(load_config()).world)
    )


def test_the_registry_refuses_to_register_or_promote_a_policy_that_does_not_fit(tmp_path: Path) -> None:
    """Registering or promoting with the town's config refuses another variant, naming it."""
    compact = tiny_checkpoint(tmp_path / "compact.pt", variant="compact")
    town = load_config()
    with PolicyRegistry(tmp_path / "r.sqlite") as registry:
        with pytest.raises(IncompatiblePolicy, match="variant"):
            registry.register(str(compact), town=town)
        record = registry.register(str(compact))  # for another town: fine
        with pytest.raises(IncompatiblePolicy, match="variant"):
            registry.promote(record.policy_hash, "try", town=town)
        assert registry.release is None


# -- driving ------------------------------------------------------------------------------------------------


def test_an_installed_learned_policy_drives_and_possessed_agents_are_left_to_their_admin(tiny: Path) -> None:
    """The driver acts for everyone except possessed agents (action -1); the inspector has their numbers."""
    from townlet.console.possession import PossessionPolicy

    sim = Simulation(load_config(), seed=2)
    sim.policy = PossessionPolicy(sim.policy, sim.world)
    driver = install(sim, resolve(str(tiny)))
    assert isinstance(driver, PolicyDriver) and isinstance(sim.policy, PossessionPolicy)  # the wrapper stays
    sim.policy.owners[sim.world.agents.ids[0]] = "alice"
    actions = driver.act(sim)
    assert actions[0] == -1 and (actions[1:8] >= 0).all()
    views = driver.inspect(np.arange(8))
    assert views[0] is not None and len(views[0]["top"]) == 3
    top = [p for _, p in views[1]["top"]]
    assert top == sorted(top, reverse=True) and views[1]["hash"] == driver.policy_hash
    assert describe(sim)["hash"] == driver.policy_hash and describe(sim)["kind"] == "learned"


# -- the command line ---------------------------------------------------------------------------------------


def test_run_with_a_checkpoint_reports_the_driving_policy_in_json(
    capsys: pytest.CaptureFixture[str], tiny: Path
) -> None:
    """`townlet run --policy CKPT --json` has a top-level policy field with its hash, name and source."""
    code, out, _ = run_cli(capsys, "run", "--policy", str(tiny), "--ticks", "60", "--json")
    assert code == 0
    policy = json.loads(out)["policy"]
    assert policy["hash"] == load(tiny).policy_hash and policy["source"] == "path" and policy["kind"] == "learned"
    code, out, _ = run_cli(capsys, "run", "--ticks", "10", "--json")
    assert json.loads(out)["policy"] == {
        "hash": "scripted",
        "name": "scripted",
        "source": "builtin",
        "kind": "scripted",
    }


def test_run_policy_default_drives_with_the_shipped_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """`townlet run --policy default` runs the policy shipped in the package."""
    code, out, _ = run_cli(capsys, "run", "--policy", "default", "--ticks", "100", "--json")
    assert code == 0
    assert json.loads(out)["policy"]["hash"] == shipped.default_hash()


def test_run_refuses_a_bad_or_incompatible_policy_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Unknown references and checkpoints that do not fit exit 2 with one error line naming the problem."""
    code, _, err = run_cli(capsys, "run", "--policy", "nobody", "--ticks", "5")
    assert code == 2 and err.count("\n") == 1 and "no policy 'nobody'" in err
    compact = tiny_checkpoint(tmp_path / "c.pt", variant="compact")
    code, _, err = run_cli(capsys, "run", "--policy", str(compact), "--ticks", "5")
    assert code == 2 and "does not fit this town: variant: the policy reads compact" in err


def test_evaluate_takes_any_policy_reference(capsys: pytest.CaptureFixture[str], tiny: Path) -> None:
    """`townlet evaluate --policy PATH` and `--baseline default` score both (the gate runs)."""
    code, out, _ = run_cli(
        capsys, "evaluate", "--policy", str(tiny), "--baseline", "default", "--days", "0.1", "--seed", "5", "--json"
    )
    result = json.loads(out)
    assert code in (0, 1) and result["policy"] == load(tiny).policy_hash
    assert result["baseline"]["policy"] == shipped.default_hash() and "passed" in result["gate"]


# -- snapshots keep the policy ------------------------------------------------------------------------------


def _hash_after(sim: Simulation, ticks: int) -> str:
    for _ in range(ticks):
        sim.step()
    return sim.state_hash()


def touchy_checkpoint(path: Path, lstm: bool) -> Path:
    """An untrained policy with large weights: its choices turn on every input and on its recurrent state."""
    import torch

    from townlet.policy.checkpoint import from_network, save
    from townlet.policy.networks import OptionPolicyNet

    template = load(tiny_checkpoint(path, seed=1, lstm=lstm))
    torch.manual_seed(7)
    net = OptionPolicyNet(template.spec)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(25.0)
    return save(from_network(net, template.variant, template.config_id), path)


@pytest.mark.parametrize("lstm", [False, True])
def test_a_resumed_learned_town_reaches_the_same_state_hash_as_the_uninterrupted_one(
    tmp_path: Path, lstm: bool
) -> None:
    """A sampling (recurrent) policy: snapshot at 150, resume, 150 more ticks = 300 ticks straight."""
    ckpt = touchy_checkpoint(tmp_path / "p.pt", lstm)
    straight = Simulation(load_config(), seed=4)
    install(straight, resolve(str(ckpt)), greedy=False)
    first = _hash_after(straight, 150)
    snapshot.write(straight, tmp_path / "at150.snap")
    expected = _hash_after(straight, 150)
    resumed = snapshot.load(tmp_path / "at150.snap")
    assert resumed.state_hash() == first and resumed.recorded_policy["hash"] == load(ckpt).policy_hash
    choice = reinstate(resumed)
    assert choice.policy_hash == load(ckpt).policy_hash and not resumed.actor.greedy
    assert _hash_after(resumed, 150) == expected


def test_resume_without_the_recorded_policy_is_refused_naming_its_hash(tmp_path: Path) -> None:
    """The checkpoint is gone and not registered: reinstating names the missing hash; --policy overrides."""
    ckpt = tiny_checkpoint(tmp_path / "gone.pt", seed=2)
    wanted = load(ckpt).policy_hash
    sim = Simulation(load_config(), seed=1)
    install(sim, resolve(str(ckpt)))
    _hash_after(sim, 20)
    snapshot.write(sim, tmp_path / "s.snap")
    ckpt.unlink()
    with pytest.raises(PolicyNotFound, match=f"taken under policy {wanted}.*pass --policy"):
        reinstate(snapshot.load(tmp_path / "s.snap"))
    assert reinstate(snapshot.load(tmp_path / "s.snap"), resolve("scripted")).kind == "scripted"


def test_run_resume_brings_back_the_recorded_policy_and_policy_overrides_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`run --resume` under the shipped default keeps it (same hash as straight through); --policy wins."""
    snap = tmp_path / "d.snap"
    code, straight, _ = run_cli(capsys, "run", "--policy", "default", "--ticks", "120", "--json")
    assert code == 0
    run_cli(capsys, "run", "--policy", "default", "--ticks", "60", "--snapshot-out", str(snap), "--json")
    code, out, _ = run_cli(capsys, "run", "--resume", str(snap), "--ticks", "60", "--json")
    resumed = json.loads(out)
    assert code == 0 and resumed["policy"]["hash"] == shipped.default_hash()
    assert resumed["state_hash"] == json.loads(straight)["state_hash"]
    code, out, _ = run_cli(capsys, "run", "--resume", str(snap), "--ticks", "10", "--policy", "scripted", "--json")
    assert json.loads(out)["policy"]["hash"] == "scripted"
