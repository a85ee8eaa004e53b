"""The command line: JSON contracts, --set overrides, clear errors for bad input, --help everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from townlet.cli.main import main

RUN_KPIS = {"attendance", "lateness", "collapses", "need_ok_share", "queue_conflicts", "ghost_steps"}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_json_prints_one_object_with_the_contract_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """`townlet run --json` prints exactly one JSON object carrying the documented fields."""
    code, out, _ = run_cli(capsys, "run", "--ticks", "300", "--seed", "3", "--json")
    assert code == 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert {"config_id", "seed", "ticks", "agents", "state_hash", "kpis"} <= set(result)
    assert result["seed"] == 3 and result["ticks"] == 300 and result["agents"] == 8
    assert RUN_KPIS <= set(result["kpis"])


def test_run_is_deterministic_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    """The same seed gives the same state hash; another seed gives another."""
    hashes = []
    for seed in ("1", "1", "2"):
        _, out, _ = run_cli(capsys, "run", "--ticks", "200", "--seed", seed, "--json")
        hashes.append(json.loads(out)["state_hash"])
    assert hashes[0] == hashes[1] != hashes[2]


def test_set_overrides_change_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    """`--set population.agents=3` runs three agents and changes the config_id."""
    _, out_default, _ = run_cli(capsys, "run", "--ticks", "50", "--json")
    _, out_small, _ = run_cli(capsys, "run", "--ticks", "50", "--json", "--set", "population.agents=3")
    small, default = json.loads(out_small), json.loads(out_default)
    assert small["agents"] == 3
    assert small["config_id"] != default["config_id"]


def test_run_prints_a_kpi_table_without_json(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json the run ends with a human KPI table naming the KPIs."""
    code, out, _ = run_cli(capsys, "run", "--ticks", "100")
    assert code == 0
    for label in ("collapses", "attendance", "need ok share", "queue conflicts", "ghost steps", "money: wages"):
        assert label in out


def test_bench_json_reports_speed_phases_and_memory(capsys: pytest.CaptureFixture[str]) -> None:
    """`townlet bench --json` prints ticks/s, agent-steps/s, per-phase ms and peak memory."""
    code, out, _ = run_cli(
        capsys, "bench", "--agents", "4", "--ticks", "50", "--warmup", "10", "--repeat", "1", "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert result["ticks_per_s"] > 0 and result["agent_steps_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert {"policy", "arbitrate", "affordances", "world"} <= set(result["phase_ms"])
    assert result["agent_steps_per_s"] == pytest.approx(4 * result["ticks_per_s"], rel=0.01)


def test_bench_scale_series_times_each_size_in_its_own_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bench --scale-series` reports every size with us/agent-step, peak RSS, ratios and the baseline's speed."""
    import townlet.cli.bench as bench

    monkeypatch.setattr(bench, "SCALE_SERIES", ((4, 1, 30, 5), (12, 1, 30, 5)))
    monkeypatch.setattr(bench, "SERIES_REFERENCE", (12, 1))
    src = Path(bench.__file__).resolve().parents[2]
    code, out, err = run_cli(capsys, "bench", "--scale-series", "--repeat", "1", "--baseline-src", str(src), "--json")
    assert code == 0
    rows = json.loads(out)["series"]
    assert [(r["agents"], r["town_scale"]) for r in rows] == [(4, 1), (12, 1)]
    for r in rows:
        assert r["us_per_agent_step"] > 0 and r["peak_rss_mb"] > 0 and r["base_agent_steps_per_s"] > 0
        assert r["speedup_vs_base"] == pytest.approx(r["agent_steps_per_s"] / r["base_agent_steps_per_s"], rel=0.01)
        assert r["cpu_us_per_agent_step"] > 0 and r["cpu_speedup_vs_base"] > 0
    assert rows[1]["vs_1000_at_4"] == 1.0
    assert "us/agent-step" in err and "peak RSS MB" in err


def test_bench_scale_series_rejects_a_baseline_without_code(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A --baseline-src that holds no townlet package stops with a clear error before any timing."""
    code, _, err = run_cli(capsys, "bench", "--scale-series", "--baseline-src", str(tmp_path))
    assert code == 2 and "holds no townlet package" in err


def test_config_validate_accepts_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped config validates."""
    code, out, _ = run_cli(capsys, "config", "validate")
    assert code == 0 and out.startswith("ok:")


def test_config_show_prints_the_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    """`config show --json` includes the config_id and the override."""
    code, out, _ = run_cli(capsys, "config", "show", "--json", "--set", "population.agents=5")
    body = json.loads(out)
    assert code == 0 and body["population"]["agents"] == 5 and len(body["config_id"]) == 12


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "population.agents=0"], "population.agents"),
        (["--set", "populaton.agents=3"], "populaton"),
        (["--set", "features.lifecycle=maybe"], "features.lifecycle"),
        (["--set", "town.map=missing.yaml"], "town.map"),
    ],
)
def test_bad_config_stops_with_one_clear_message(
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    """Bad values stop with exit 2 and one message naming the key, never a traceback."""
    code, out, err = run_cli(capsys, "run", "--ticks", "10", *args)
    assert code == 2
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_malformed_files_name_the_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken map or affordance file is reported with its file name and the field at fault."""
    bad_aff = tmp_path / "aff.yaml"
    bad_aff.write_text("affordances:\n  nap:\n    object: bed\n    duration: -3\n")
    code, _, err = run_cli(capsys, "config", "validate", "--set", f"affordances={bad_aff}")
    assert code == 2 and "aff.yaml" in err and "affordances.nap.duration" in err
    bad_map = tmp_path / "town.yaml"
    bad_map.write_text("name: x\nwidth: 2\nheight: 1\nlegend: {'.': {tile: floor}}\nlayout: |\n  .Z\nplaces: {}\n")
    code, _, err = run_cli(capsys, "config", "validate", "--set", f"town.map={bad_map}")
    assert code == 2 and "town.yaml" in err and "Traceback" not in err


def test_every_command_has_help_with_examples() -> None:
    """`--help` works for every command and shows examples."""
    for argv in (
        ["--help"],
        ["run", "--help"],
        ["bench", "--help"],
        ["config", "--help"],
        ["config", "validate", "--help"],
        ["config", "show", "--help"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "townlet.cli.main", *argv], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, argv
        assert "examples" in proc.stdout, argv
