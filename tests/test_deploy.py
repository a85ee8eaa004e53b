"""The deployment files as far as no Docker engine is needed: stages, profiles, entrypoints, the torch pin."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
INSTALL = ROOT / "deploy" / "install.sh"


def install_commands() -> set[str]:
    """The subcommands deploy/install.sh handles (its case labels)."""
    text = INSTALL.read_text(encoding="utf-8")
    groups = re.findall(r"^  ([a-z|-]+)\)$", text, flags=re.MULTILINE)
    return {label for group in groups for label in group.split("|")}


def test_the_image_has_runtime_as_default_target_and_a_training_stage_with_a_torch_index_argument() -> None:
    """Stages build, base, training, runtime (last: a plain `docker build` gives the live town); CPU torch default."""
    stages = re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE, flags=re.MULTILINE)
    assert stages == ["build", "base", "training", "runtime"]
    training = DOCKERFILE.split("AS training", 1)[1].split("\nFROM ", 1)[0]
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in training
    assert 'ENTRYPOINT ["townlet-install"]' in training and 'CMD ["train"]' in training
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert 'ENTRYPOINT ["townlet-install", "serve"]' in runtime and "HEALTHCHECK" in runtime
    assert "USER 10001:10001" in training and "USER 10001:10001" in runtime


def test_every_entrypoint_the_image_and_compose_name_is_an_install_sh_command() -> None:
    """Each `townlet-install X` in the Dockerfile and compose.yaml is handled by deploy/install.sh."""
    handled = install_commands()
    named = set(re.findall(r"townlet-install\"?,? \"?([a-z-]+)", DOCKERFILE))
    for service in COMPOSE["services"].values():
        words = [
            *service.get("entrypoint", []),
            *service.get("command", []),
            *service.get("healthcheck", {}).get("test", []),
        ]
        named |= {w for w in words if not w.startswith(("CMD", "townlet-install"))}
    assert named and named <= handled, named - handled
    assert {"serve", "healthcheck", "collect", "train", "evaluate", "capture", "install", "install-train"} <= handled


def test_compose_profiles_run_the_town_the_sink_and_a_trainer_writing_checkpoints_to_a_volume() -> None:
    """The town and the sink use the runtime image, the trainer the training image with its runs in a named volume."""
    services = COMPOSE["services"]
    assert {name: s["profiles"] for name, s in services.items()} == {
        "town": ["town"],
        "sink": ["sink"],
        "trainer": ["train"],
    }
    assert services["town"]["build"]["target"] == services["sink"]["build"]["target"] == "runtime"
    trainer = services["trainer"]
    assert trainer["build"]["target"] == "training" and "TORCH_INDEX_URL" in trainer["build"]["args"]
    assert "townlet-runs:/var/lib/townlet/runs" in trainer["volumes"]
    assert trainer["environment"]["TOWNLET_RUN_DIR"].startswith("/var/lib/townlet/runs/")
    assert services["sink"]["entrypoint"] == ["townlet-install", "collect"]
    assert "townlet-telemetry:/var/lib/townlet/telemetry" in services["sink"]["volumes"]
    assert set(COMPOSE["volumes"]) >= {"townlet-data", "townlet-telemetry", "townlet-runs"}


def test_torch_is_pinned_to_one_version_everywhere() -> None:
    """The train and dev extras pin the same torch; install.sh reads the pin from the wheel, never its own."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    pins = {req for extra in ("train", "dev") for req in extras[extra] if req.startswith("torch")}
    assert pins == {"torch==2.13.0"}
    assert "2.13" not in INSTALL.read_text(encoding="utf-8") and "2.13" not in DOCKERFILE


def test_install_sh_parses_and_evaluate_without_a_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    """`bash -n` accepts the script; the evaluate entrypoint with an empty run directory exits 2 naming the fix."""
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)
    env = {
        **os.environ,
        "TOWNLET_VENV": sys.prefix,
        "TOWNLET_RUN_DIR": str(tmp_path / "runs"),
        "TOWNLET_DATA": str(tmp_path),
    }
    done = subprocess.run(["bash", str(INSTALL), "evaluate"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "TOWNLET_CHECKPOINT" in done.stderr
    unknown = subprocess.run(["bash", str(INSTALL), "launch"], capture_output=True, text=True, env=env, timeout=60)
    assert unknown.returncode == 2 and "usage" in unknown.stderr
