"""Structured stability and promotion log lines with `promotion_state` from `train`, `evaluate` and `promote`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from townlet.cli.main import main
from townlet.policy import shipped


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """Restore torch's thread count after train() sets it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def log_lines(err: str, event: str) -> list[dict[str, Any]]:
    """The JSON log records of one event on stderr."""
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [r for r in records if r["event"] == event]


def test_promote_logs_each_action_with_the_promotion_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`promote promote default` then `pin`: promotion.promote / promotion.pin lines carry release and pin."""
    registry = str(tmp_path / "r.sqlite")
    assert main(["promote", "promote", "default", "--reason", "ship", "--registry", registry]) == 0
    (line,) = log_lines(capsys.readouterr().err, "promotion.promote")
    assert line["context"]["policy"] == shipped.default_hash()
    assert line["context"]["promotion_state"] == {"release": shipped.default_hash(), "releases": 1, "pinned": None}
    assert main(["promote", "pin", "--reason", "hold", "--registry", registry]) == 0
    (line,) = log_lines(capsys.readouterr().err, "promotion.pin")
    assert line["context"]["promotion_state"]["pinned"] == "hold"


def test_evaluate_logs_the_scorecard_with_the_promotion_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`evaluate --policy default` with a registry: evaluation.scorecard says the release was the one scored."""
    registry = str(tmp_path / "r.sqlite")
    assert main(["promote", "promote", "default", "--reason", "ship", "--registry", registry]) == 0
    capsys.readouterr()
    code = main(["evaluate", "--policy", "release", "--registry", registry, "--days", "0.05", "--seed", "3", "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["policy"] == shipped.default_hash()
    (line,) = log_lines(err, "evaluation.scorecard")
    assert line["context"]["policy"] == shipped.default_hash()
    assert line["context"]["promotion_state"]["evaluated_release"] is True


def test_train_logs_its_windows_and_the_candidate_with_the_promotion_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tiny `train`: a stability.window line per window (label train) and a final promotion.candidate."""
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--steps",
            "128",
            "--out",
            str(out),
            "--towns",
            "2",
            "--ppo",
            "rollout_ticks=32",
            "--ppo",
            "window_ticks=32",
            "--ppo",
            "baselines=false",
            "--ppo",
            "final_eval=false",
            "--json",
        ]
    )
    stdout, err = capsys.readouterr()
    assert code == 0
    windows = log_lines(err, "stability.window")
    assert windows and all(w["context"]["label"] == "train" for w in windows)
    assert set(windows[0]["context"]["canaries"]) == {
        "lateness_spike",
        "starvation",
        "option_thrash",
        "reward_collapse",
    }
    assert windows[0]["context"]["promotion_state"]["candidate"] == str(out)
    (done,) = log_lines(err, "promotion.candidate")
    assert done["context"]["policy"] == json.loads(stdout)["policy_hash"]
    assert done["context"]["promotion_state"]["candidate"] == done["context"]["policy"]
