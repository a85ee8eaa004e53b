"""Hostile snapshot files: gadgets never run, edits and bit flips are refused, a foreign key is not trusted."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from townlet.cli.main import main
from townlet.config.loader import load_config
from townlet.console import ConsoleService, TokenAuthority
from townlet.console.errors import E_CONFLICT
from townlet.files import write_atomic
from townlet.sim import Simulation, snapshot
from townlet.sim.autosave import newest_valid
from townlet.sim.signing import SnapshotKeys
from townlet.sim.snapshot import MAGIC, MAGIC_V1, SnapshotError


class Gadget:
    """Pickles as a call of ``fn(*args)``: what a hostile version 1 file carried."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.fn, self.args


def gadgets(marker: Path) -> dict[str, Any]:
    """Pickled states that write ``marker`` if unpickled: via os.system, exec, numpy and townlet functions."""
    import os

    from numpy.testing._private.utils import runstring

    code = f"open({str(marker)!r}, 'w').write('pwned')"
    return {
        "os.system": Gadget(os.system, f"touch {marker}"),
        "builtins.exec": Gadget(exec, code),
        "numpy runstring": Gadget(runstring, code, {}),
        "townlet write_atomic": Gadget(write_atomic, str(marker), b"pwned"),
    }


def v1_file(path: Path, state: Any, sim: Simulation) -> Path:
    """A version 1 snapshot (checksummed header + pickle) around ``state``."""
    header = {
        "identity": {**snapshot.identity(sim), "schema_version": 1},
        "config": sim.config.model_dump(mode="json"),
        "map_path": str(sim.loaded.map_path),
        "affordances_path": str(sim.loaded.affordances_path),
        "source": str(sim.loaded.source),
        "migrations": [],
    }
    body = json.dumps(header).encode() + b"\n" + pickle.dumps(state, protocol=5)
    path.write_bytes(MAGIC_V1 + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    return path


@pytest.fixture
def keys(tmp_path: Path) -> SnapshotKeys:
    return SnapshotKeys.from_config(load_config(overrides=[f"console.state_dir={tmp_path / 'state'}"]).config)


def state_dir_args(keys: SnapshotKeys) -> list[str]:
    return ["--state-dir", str(keys.keys.path.parent)]


def test_gadget_snapshots_never_run_code_anywhere_they_can_be_loaded(tmp_path: Path, keys, capsys) -> None:
    """v1 gadgets through validate, run --resume, serve --resume's recovery, the console and convert-v1: no marker."""
    sim = Simulation(
        load_config(overrides=[f"console.state_dir={tmp_path / 'state'}", f"snapshots.dir={tmp_path / 'snaps'}"]),
        seed=2,
    )
    sim.run(20)
    marker = tmp_path / "marker"
    for name, gadget in gadgets(marker).items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        path = v1_file(folder / "town-000000000020.snap", {"grid_fields": [], "rng": gadget}, sim)
        assert main(["snapshot", "validate", str(path), *state_dir_args(keys)]) == 1
        assert "version 1" in capsys.readouterr().err
        with pytest.raises(SystemExit, match="version 1"):
            main(["run", "--resume", str(path), "--ticks", "1", "--set", f"console.state_dir={tmp_path / 'state'}"])
        with pytest.raises(SnapshotError):
            newest_valid(folder, sim.loaded)
        assert (
            main(["snapshot", "convert-v1", str(path), "--out", str(folder / "out.snap"), *state_dir_args(keys)]) == 1
        )
        assert "may not appear" in capsys.readouterr().err
        assert not marker.exists(), name
    authority = TokenAuthority(tmp_path / "k.json", tmp_path / "r.json", tmp_path / "i.jsonl")
    console = ConsoleService(sim, authority)
    admin, _ = authority.issue("alice", "admin", 3600)
    before = sim.state_hash()
    snaps = Path(sim.config.snapshots.dir).expanduser()
    snaps.mkdir(parents=True, exist_ok=True)
    v1_file(snaps / "gadget.snap", {"grid_fields": [], "rng": gadgets(marker)["builtins.exec"]}, sim)
    future = console.submit(admin, {"cmd": "snapshot", "args": {"op": "load", "file": "gadget.snap"}})
    sim.step()
    assert future.result(1).code == E_CONFLICT and "version 1" in future.result(1).message
    assert not marker.exists() and sim.state_hash() != before  # refused, and the town ticked on


def test_a_signed_file_naming_code_in_its_state_is_refused(tmp_path: Path, keys) -> None:
    """Even signed with the right key, a state naming a function, an unknown tag or an object dtype is refused."""
    sim = Simulation(load_config(overrides=[f"console.state_dir={tmp_path / 'state'}"]), seed=2)
    path = snapshot.write(sim, tmp_path / "ok.snap", keys)
    good = snapshot.read(path, keys)
    head, rest = good.body.split(b"\n", 1)
    header = json.loads(head)
    bad_states = [
        {"$t": "dataclass", "type": "townlet.files:write_atomic", "v": {}},
        {"$t": "pickle", "v": "gASV"},
        {"$t": "enum", "type": "os:system", "v": "touch marker"},
        {"$t": "dataclass", "type": "townlet.sim.snapshot:Section", "v": {"name": "x"}},
    ]
    for doc in bad_states:
        text = json.dumps({"grid_fields": doc, "components": {}, "rng": {}}).encode()
        body = json.dumps({**header, "state_bytes": len(text), "arrays": []}).encode() + b"\n" + text
        write_atomic(tmp_path / "bad.snap", MAGIC + keys.sign(MAGIC, body) + body)
        with pytest.raises(SnapshotError, match="cannot be decoded"):
            snapshot.load(tmp_path / "bad.snap", keys=keys)
    table = [{"d": "|O8", "s": [1], "n": 8}]
    text = b'{"grid_fields":{"$t":"array","i":0},"components":{},"rng":{}}'
    body = json.dumps({**header, "state_bytes": len(text), "arrays": table}).encode() + b"\n" + text + b"\0" * 8
    write_atomic(tmp_path / "obj.snap", MAGIC + keys.sign(MAGIC, body) + body)
    with pytest.raises(SnapshotError, match="unsupported dtype"):
        snapshot.load(tmp_path / "obj.snap", keys=keys)
    assert rest  # the untouched file still loads
    assert snapshot.load(path, keys=keys).state_hash() == sim.state_hash()


def test_edited_state_with_a_recomputed_checksum_is_refused(make_sim, tmp_path: Path, keys) -> None:
    """Every wallet set to 1e9 in place: the signature fails; signed with a foreign key: refused as foreign."""
    sim = make_sim(seed=4)
    sim.run(100)
    path = snapshot.write(sim, tmp_path / "s.snap", keys)
    data = bytearray(path.read_bytes())
    wallet = sim.world.agents.wallet
    raw = wallet.tobytes()
    at = bytes(data).index(raw)
    data[at : at + len(raw)] = np.full_like(wallet, 1e9).tobytes()
    edited = tmp_path / "edited.snap"
    edited.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="signature mismatch"):
        snapshot.load(edited, keys=keys)
    mallory = SnapshotKeys.from_config(load_config(overrides=[f"console.state_dir={tmp_path / 'mallory'}"]).config)
    body = bytes(data).split(b"\n", 2)[2]
    foreign = tmp_path / "foreign.snap"
    foreign.write_bytes(MAGIC + mallory.sign(MAGIC, body) + body)
    with pytest.raises(SnapshotError, match="foreign"):
        snapshot.load(foreign, keys=keys)
    unsigned = tmp_path / "unsigned.snap"
    unsigned.write_bytes(MAGIC + b"unsigned\n" + body)
    with pytest.raises(SnapshotError, match="not signed"):
        snapshot.load(unsigned, keys=keys)


def test_bit_flips_anywhere_are_refused_with_one_line(make_sim, tmp_path: Path, keys) -> None:
    """200 single-bit flips across the file: each is a SnapshotError with a one-line message, never a crash."""
    sim = make_sim(seed=1)
    sim.run(30)
    data = snapshot.write(sim, tmp_path / "s.snap", keys).read_bytes()
    rng = np.random.default_rng(0)
    for position in rng.integers(0, len(data), 200):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        (tmp_path / "f.snap").write_bytes(bytes(flipped))
        with pytest.raises(SnapshotError) as err:
            snapshot.load(tmp_path / "f.snap", keys=keys)
        assert "\n" not in str(err.value)


def test_a_signed_but_malformed_header_is_skipped_by_crash_recovery(make_sim, tmp_path: Path, keys) -> None:
    """Crash recovery (serve --resume) skips a newest file whose header is malformed and resumes the one before."""
    sim = make_sim(seed=6, overrides=[f"console.state_dir={tmp_path / 'state'}"])
    sim.run(40)
    snapshot.write(sim, tmp_path / "town-000000000040.snap", keys)
    for i, head in enumerate([b'{"identity": 5}', b"[]", b'{"identity": {"schema_version": "2"}}', b"\xff\xfe"]):
        body = head + b"\n"
        write_atomic(tmp_path / f"town-00000000009{i}.snap", MAGIC + keys.sign(MAGIC, body) + body)
    resumed, path, warnings = newest_valid(tmp_path, sim.loaded)
    assert path.name == "town-000000000040.snap" and len(warnings) == 4
    assert all("malformed snapshot header" in w or "sizes in its header" in w for w in warnings)
    resumed.run(10)
    assert resumed.tick == 50


def test_oversized_files_are_refused_before_they_are_read(make_sim, tmp_path: Path) -> None:
    """A file larger than snapshots.max_bytes is refused from its size alone."""
    keys = SnapshotKeys.from_config(
        load_config(overrides=[f"console.state_dir={tmp_path}", "snapshots.max_bytes=65536"]).config
    )
    big = tmp_path / "big.snap"
    big.write_bytes(MAGIC + b"x" * 70_000)
    with pytest.raises(SnapshotError, match="max_bytes"):
        snapshot.read(big, keys)


def test_trust_re_signs_a_foreign_file_and_key_import_accepts_its_key(make_sim, tmp_path: Path, keys, capsys) -> None:
    """An operator vouches for a file (snapshot trust) or imports the other key set's key: then it loads."""
    sim = make_sim(seed=3)
    sim.run(25)
    elsewhere = ["--state-dir", str(tmp_path / "elsewhere")]
    other = SnapshotKeys.from_config(load_config(overrides=[f"console.state_dir={tmp_path / 'elsewhere'}"]).config)
    path = snapshot.write(sim, tmp_path / "a.snap", other)
    assert main(["snapshot", "validate", str(path), *state_dir_args(keys)]) == 1
    assert "foreign" in capsys.readouterr().err
    assert main(["snapshot", "trust", str(path), "--out", str(tmp_path / "b.snap"), *state_dir_args(keys)]) == 0
    assert main(["snapshot", "validate", str(tmp_path / "b.snap"), *state_dir_args(keys)]) == 0
    capsys.readouterr()
    kid = other.keys.ids()[0]
    assert main(["snapshot", "key", "export", kid, *elsewhere]) == 0
    (tmp_path / "key.json").write_text(capsys.readouterr().out)
    assert main(["snapshot", "key", "import", str(tmp_path / "key.json"), *state_dir_args(keys)]) == 0
    assert main(["snapshot", "validate", str(path), *state_dir_args(keys)]) == 0
    assert main(["snapshot", "key", "rotate", *state_dir_args(keys)]) == 0
    assert main(["snapshot", "key", "retire", kid, *state_dir_args(keys)]) == 0
    assert main(["snapshot", "validate", str(path), *state_dir_args(keys)]) == 1  # its key retired: refused again


def test_a_trusted_version_1_file_converts_with_the_same_state(make_sim, tmp_path: Path, keys, capsys) -> None:
    """convert-v1 rewrites a genuine version 1 file; the result loads with the recorded state hash."""
    sim = make_sim(seed=8, overrides=["features.lifecycle=on"])
    sim.run(300)
    state = snapshot.capture(sim)
    flat = {**state["components"], "rng": state["rng"], "grid_fields": state["grid_fields"]}
    old = v1_file(tmp_path / "old.snap", flat, sim)
    assert main(["snapshot", "convert-v1", str(old), "--out", str(tmp_path / "new.snap"), *state_dir_args(keys)]) == 0
    loaded = snapshot.load(tmp_path / "new.snap", keys=keys)
    assert loaded.state_hash() == sim.state_hash()
    loaded.run(100)
    sim.run(100)
    assert loaded.state_hash() == sim.state_hash()


def test_convert_v1_help_says_trusted_files_only(capsys) -> None:
    """The converter's --help warns that it must only be used on trusted files."""
    with pytest.raises(SystemExit):
        main(["snapshot", "convert-v1", "--help"])
    out = capsys.readouterr().out
    assert "ONLY use this on files whose origin you trust" in out
