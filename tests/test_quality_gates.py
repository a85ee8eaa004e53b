"""The quality gates themselves: the core imports no heavy packages, docstring coverage counts what it should."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "fastapi", "uvicorn", "websockets", "ray")


def _load_tool():
    spec = importlib.util.spec_from_file_location("docstring_coverage", ROOT / "tools" / "docstring_coverage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_core_packages_import_no_heavy_packages():
    """Importing config, world, policy, observations and sim (and running a tick) loads no torch or server."""
    code = (
        "import sys\n"
        "import townlet.config, townlet.world, townlet.policy, townlet.observations, townlet.sim\n"
        "import townlet.policy.learned, townlet.policy.checkpoint\n"
        "from townlet.sim import Simulation\n"
        "Simulation(seed=1).step()\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_docstring_coverage_counts_public_definitions(tmp_path):
    """Public classes, functions and methods count; private, dunder and nested functions do not."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text(
        '"""A module."""\n'
        "def documented():\n    '''Yes.'''\n"
        "def bare():\n    def inner():\n        pass\n"
        "def _private():\n    pass\n"
        "class Thing:\n    '''A thing.'''\n"
        "    def __init__(self):\n        pass\n"
        "    def method(self):\n        pass\n"
        "    def _helper(self):\n        pass\n"
    )
    (pkg / "_internal.py").write_text("def hidden():\n    pass\n")
    tool = _load_tool()
    documented, total, missing = tool.coverage([pkg])
    assert (documented, total) == (2, 4)
    assert [m.split()[-1] for m in missing] == ["bare", "Thing.method"]


def test_docstring_coverage_of_src_meets_the_gate(capsys):
    """The gate CI runs: public functions and classes in src/ are at least 90% documented."""
    tool = _load_tool()
    assert tool.main(["--min", "90"]) == 0
    assert "docstring coverage:" in capsys.readouterr().out
