"""``townlet train``: the real command with tiny budgets, its files, resume, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from townlet.cli.main import main
from townlet.policy.checkpoint import load

TINY = [
    "--towns",
    "2",
    "--ppo",
    "rollout_ticks=32",
    "--ppo",
    "window_ticks=64",
    "--ppo",
    "baselines=false",
    "--ppo",
    "checkpoint_every=2",
    "--ppo",
    "final_eval=false",
    "--json",
]


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """Restore torch's thread count after train() sets it to 1."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_metrics_curves_and_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`townlet train --steps N --out DIR` fills DIR and prints a JSON summary."""
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", "--steps", "128", "--out", str(out), "--seed", "3", *TINY)
    assert code == 0
    summary = json.loads(stdout)
    assert summary["global_step"] == 128 and summary["final"] == str(out / "final.pt")
    assert summary["best_checkpoint"] is None, "one window is not enough to crown a best"
    assert (out / "metrics.jsonl").is_file() and (out / "learning_curves.png").is_file()
    assert (out / "checkpoints" / "update_000002.pt").is_file() and (out / "latest.pt").is_file()
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["args"]["seed"] == 3 and start["args"]["rollout_ticks"] == 32 and start["variant"] == "hybrid"
    assert load(out / "final.pt").policy_hash == summary["policy_hash"]


def test_best_checkpoint_weights_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--ppo best_weights=KPI:W,...` sets the score of best.pt; the summary names the best checkpoint."""
    out = tmp_path / "run"
    code, stdout, _ = run_cli(
        capsys,
        "train",
        "--steps",
        "256",
        "--out",
        str(out),
        "--ppo",
        "best_weights=self_sufficiency:2,attendance:1",
        *TINY,
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary["best_checkpoint"] == str(out / "best.pt") and summary["best_tick"] == 256
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["args"]["best_weights"] == {"self_sufficiency": 2.0, "attendance": 1.0}
    window = summary["best_window"]
    assert summary["best_score"] == pytest.approx((2 * window["self_sufficiency"] + window["attendance"]) / 3, abs=1e-6)


def test_variant_agents_and_set_reach_the_towns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--variant, --agents and --set shape the towns the policy is trained in."""
    out = tmp_path / "run"
    code, _, _ = run_cli(
        capsys,
        "train",
        "--steps",
        "64",
        "--out",
        str(out),
        "--variant",
        "compact",
        "--agents",
        "4",
        "--set",
        "features.relationships=OFF",
        *TINY,
    )
    assert code == 0
    ck = load(out / "final.pt")
    assert ck.variant == "compact" and ck.spec.obs_dim == 130
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert "population.agents=4" in start["args"]["overrides"]


def test_resume_by_directory_continues_to_the_new_total(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--resume DIR --steps M` trains on from DIR/latest.pt until M ticks in total."""
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--steps", "128", "--out", str(out), *TINY)[0] == 0
    code, stdout, _ = run_cli(capsys, "train", "--steps", "256", "--resume", str(out), "--json")
    assert code == 0 and json.loads(stdout)["global_step"] == 256
    assert load(out / "final.pt").step == 256


def test_bad_ppo_argument_and_missing_resume_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown --ppo key exits 2 naming it; resuming nothing exits 2 naming the path."""
    code, _, err = run_cli(capsys, "train", "--steps", "10", "--ppo", "learning_speed=3")
    assert code == 2 and "learning_speed" in err
    code, _, err = run_cli(capsys, "train", "--steps", "10", "--ppo", "gamma=high")
    assert code == 2 and "gamma=high" in err
    code, _, err = run_cli(capsys, "train", "--steps", "10", "--ppo", "best_weights=happiness:1")
    assert code == 2 and "happiness" in err
    code, _, err = run_cli(capsys, "train", "--steps", "10", "--resume", str(tmp_path / "nope"), "--json")
    assert code == 2 and "nothing to resume" in err


def test_train_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """`townlet train --help` shows examples including Ray and resume."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--ray local" in out and "--resume" in out and "--init" in out
