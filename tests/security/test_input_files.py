"""Hostile or broken input files: one clear line and exit 2, never a traceback; a bad TLS pair stops serve."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest

from server_support import ServerProcess
from telemetry_support import make_ca, make_cert, write_pem
from townlet.cli.main import main
from townlet.server.certificates import CertificateError, check_certificate


def one_line(text: str) -> bool:
    return "Traceback" not in text and len(text.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["config", "validate"], ["run", "--ticks", "1"], ["serve", "--port", "0"]])
def test_a_non_utf8_config_is_one_line(tmp_path: Path, capsys, command: list[str]) -> None:
    """A Latin-1 config file: exit 2, one line naming the file and the offending byte (config, run, serve)."""
    bad = tmp_path / "town.yaml"
    bad.write_bytes("seed: 3\nnote: caf\xe9\n".encode("latin-1"))
    extra = ["--state-dir", str(tmp_path / "state")] if command[0] == "serve" else []
    assert main([*command, str(bad), *extra]) == 2
    err = capsys.readouterr().err
    assert one_line(err) and "not UTF-8" in err and "0xe9" in err and str(bad) in err


def test_a_non_utf8_affordance_file_is_one_line(tmp_path: Path, capsys) -> None:
    """An affordance manifest that is not UTF-8: exit 2 with one line naming it."""
    bad = tmp_path / "aff.yaml"
    bad.write_bytes(b"affordances:\n  x: \xff\xfe\n")
    assert main(["config", "validate", "--set", f"affordances={bad}"]) == 2
    err = capsys.readouterr().err
    assert one_line(err) and "not UTF-8" in err


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A valid pair, an expired pair, and a stranger's key."""
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca()
    out: dict[str, str] = {}
    out["cert"], out["key"] = write_pem(folder, "server", *make_cert(ca))
    out["expired"], out["expired_key"] = write_pem(folder, "expired", *make_cert(ca, expired=True))
    _, out["other_key"] = write_pem(folder, "other", *make_cert(ca))
    (folder / "junk.pem").write_text("not a certificate\n")
    out["junk"] = str(folder / "junk.pem")
    return out


@pytest.mark.parametrize(
    "case,cert,key,expect",
    [
        ("mismatch", "cert", "other_key", "does not match"),
        ("expired", "expired", "expired_key", "expired on"),
        ("not pem", "junk", "key", "must be PEM"),
        ("missing", "cert", "missing", "TLS file not found"),
    ],
)
def test_serve_refuses_a_bad_tls_pair_with_one_line(pki, tmp_path: Path, capsys, case, cert, key, expect) -> None:
    """A key that does not match, an expired certificate, junk or a missing file: exit 2, one line, no traceback."""
    files = {**pki, "missing": str(tmp_path / "nope.key")}
    code = main(
        [
            "serve",
            "--port",
            "0",
            "--state-dir",
            str(tmp_path / "state"),
            "--tls-cert",
            files[cert],
            "--tls-key",
            files[key],
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and expect in err and one_line(err), err


def test_invalid_dates_can_be_allowed_explicitly_with_a_warning(pki) -> None:
    """Expired or not yet valid: refused by default; with tls_allow_invalid_dates a loud warning instead."""
    with pytest.raises(CertificateError, match="not valid before"):
        check_certificate(pki["cert"], pki["key"], now=time.time() - 30 * 86400)
    warnings = check_certificate(pki["expired"], pki["expired_key"], allow_invalid_dates=True)
    assert len(warnings) == 1 and "expired" in warnings[0] and "serving it anyway" in warnings[0]
    soon = check_certificate(pki["cert"], pki["key"])  # the test certificate lives 7 days
    assert len(soon) == 1 and "expires in" in soon[0]


def test_an_expired_certificate_allowed_explicitly_serves_and_ticks(pki) -> None:
    """With server.tls_allow_invalid_dates the server starts (warning on stderr) and the town ticks."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    proc = ServerProcess(
        Path(pki["cert"]).parent / "state-expired",
        "--tls-cert",
        pki["expired"],
        "--tls-key",
        pki["expired_key"],
        "--set",
        "server.tls_allow_invalid_dates=true",
        verify=context,
    )
    try:
        first = proc.health()["tick"]
        proc.wait_tick(first + 2)
        assert "expired" in proc.log_text()
    finally:
        proc.stop()


def test_a_non_utf8_file_hot_reloaded_into_a_running_town_is_rejected_and_it_ticks_on(tmp_path: Path) -> None:
    """The affordance manifest and config rewritten as Latin-1 under a running town: both rejected, ticking goes on."""
    import shutil

    from townlet.config.loader import DEFAULTS_DIR, load_config
    from townlet.sim import Simulation
    from townlet.sim.reload import HotReloader

    config, manifest = tmp_path / "town.yaml", tmp_path / "affordances.yaml"
    shutil.copy(DEFAULTS_DIR / "default.yaml", config)
    shutil.copy(DEFAULTS_DIR / "affordances.yaml", manifest)
    sim = Simulation(load_config(config, [f"affordances={manifest}", f"town.map={DEFAULTS_DIR / 'town.yaml'}"]))
    sim.run(10)
    reloader = HotReloader(sim)
    manifest.write_bytes(manifest.read_bytes() + "# café\n".encode("latin-1"))
    config.write_bytes(config.read_bytes() + "# café\n".encode("latin-1"))
    result = reloader.reload()
    assert set(result.rejected) == {"affordances", "perturbations"}
    assert all("not UTF-8" in reason for reason in result.rejected.values())
    sim.run(10)
    assert sim.tick == 20
