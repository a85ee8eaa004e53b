"""``townlet serve``: the live town over HTTP, paced in real time, with the browser viewer at ``/``.

Prints the URL once listening; on a fresh install (no signing key in ``console.state_dir``) it creates
one and prints an admin token, once. Ctrl+C stops the town and the server cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from townlet.cli.main import add_config_arguments
from townlet.cli.policy_arg import add_policy_argument, policy_errors, registry_of

EXAMPLES = """examples:
  townlet serve                                        # the default town at http://127.0.0.1:8000/
  townlet serve --port 8080 --speed 10x --seed 3
  townlet serve my_town.yaml --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem
  townlet serve --speed pause --set server.allowed_origins='["https://overlay.example"]'
  townlet serve --policy default                       # the learned policy shipped with Townlet drives
  townlet serve --policy runs/ppo/final.pt             # a checkpoint (it must fit the town); or --policy release
then: townlet watch http://127.0.0.1:8000   |   townlet console http://127.0.0.1:8000 status --token $TOKEN
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser(
        "serve",
        help="run the live town with the browser viewer, telemetry stream and console API",
        formatter_class=formatter,
        description=__doc__,
        epilog=EXAMPLES,
    )
    add_config_arguments(p)
    p.add_argument("--host", default=None, metavar="H", help="address to listen on (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, metavar="P", help="port (default: server.port, 8000; 0 = any)")
    p.add_argument(
        "--speed",
        default=None,
        choices=("pause", "1x", "10x", "100x", "max"),
        help="pace at start (default: server.speed, 1x = 250 ms per tick)",
    )
    p.add_argument("--tls-cert", default=None, metavar="F", help="PEM certificate: serve https and wss")
    p.add_argument("--tls-key", default=None, metavar="F", help="PEM private key of --tls-cert")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="run seed (default: the config's seed)")
    p.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help="where signing keys, revocations and the audit log live (default: console.state_dir)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue from the newest valid snapshot in DIR (a corrupt newest one is skipped)",
    )
    p.add_argument(
        "--autosave-every",
        type=int,
        default=None,
        metavar="N",
        help="snapshot every N ticks (default: snapshots.autosave_every; 0 = off)",
    )
    p.add_argument(
        "--snapshot-dir",
        default=None,
        metavar="DIR",
        help="where autosaves go (default: --resume DIR, else snapshots.dir)",
    )
    add_policy_argument(
        p, more="default: with --resume the policy the snapshot records, else the registry's release, else scripted"
    )
    p.set_defaults(handler=serve_command)


def _overrides(args: argparse.Namespace) -> list[str]:
    flags = {
        "server.host": args.host,
        "server.port": args.port,
        "server.speed": args.speed,
        "server.tls_cert": args.tls_cert,
        "server.tls_key": args.tls_key,
        "console.state_dir": args.state_dir,
        "snapshots.autosave_every": getattr(args, "autosave_every", None),
    }
    # JSON-quoted so YAML reads every value as given (``::1`` stays an address, ``10x`` a string).
    return [*args.overrides, *(f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None)]


def url_of(host: str, port: int, secure: bool) -> str:
    """The base URL for a bound address."""
    name = f"[{host}]" if ":" in host else host
    return f"{'https' if secure else 'http'}://{name}:{port}"


def serve_command(args: argparse.Namespace) -> int:
    """Load the config, check TLS and credentials, bind, print the URL and serve until interrupted."""
    import uvicorn

    from townlet.config.loader import load_config
    from townlet.config.models import is_loopback_host
    from townlet.console.auth import RevocationsUnavailable
    from townlet.logs import configure_logging
    from townlet.server.app import create_app
    from townlet.server.certificates import CertificateError, check_certificate
    from townlet.server.credentials import first_run_admin_token, keys_file
    from townlet.server.live import LiveTown
    from townlet.server.stack import Limits, StackConfig, bind
    from townlet.training.live import baseline_file

    loaded = load_config(args.config, _overrides(args))
    cfg = loaded.config
    server = cfg.server
    configure_logging(cfg.logging.format, cfg.logging.level)
    secure = server.tls_cert is not None
    if server.tls_cert is not None and server.tls_key is not None:
        try:
            for warning in check_certificate(server.tls_cert, server.tls_key, server.tls_allow_invalid_dates):
                print(f"townlet: warning: {warning}", file=sys.stderr, flush=True)
        except CertificateError as exc:
            print(f"townlet: error: {exc}", file=sys.stderr)
            return 2
    try:
        token = first_run_admin_token(cfg.console, server)
    except RevocationsUnavailable as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind(server.host, server.port)
    except OSError as exc:
        print(f"townlet: error: cannot listen on {server.host}:{server.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    resumed = _resume(args, loaded)
    if isinstance(resumed, int):
        return resumed
    driving = _driving_policy(args, loaded, resumed)
    if isinstance(driving, int):
        return driving
    choice, registry, why = driving
    seed = resumed.seed if resumed is not None else (args.seed if args.seed is not None else cfg.seed)
    if not baseline_file(loaded, seed).is_file():
        print(
            f"townlet: measuring the live canaries' baseline ({cfg.stability.baseline_windows} windows of the "
            f"scripted routine; cached in {cfg.stability.baseline_cache})",
            file=sys.stderr,
            flush=True,
        )
    try:
        live = LiveTown.build(loaded, seed=args.seed, sim=resumed, policy=choice, registry=registry)
    except policy_errors() as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    from townlet.sim.autosave import Autosaver

    saver = Autosaver.from_config(live.sim, args.snapshot_dir or args.resume).attach(live.sim)
    if saver.every:
        print(f"townlet: autosave every {saver.every} ticks to {saver.directory} (keeping {saver.keep})", flush=True)
    from townlet.sim.reload import HotReloader

    live.sim.reloader = HotReloader(live.sim, cfg.snapshots.watch_every).attach()  # also the console's `reload`
    port = sock.getsockname()[1]
    base = url_of(server.host, port, secure)
    live.viewers.public_url = f"{'wss' if secure else 'ws'}{base[base.index(':') :]}/ws/telemetry"
    live.freeze_heap = True  # a long-running server: full garbage collections skip the town built so far
    app = create_app(live, secure=secure)
    print(f"townlet: the live town is at {base}/  (telemetry: {live.viewers.public_url})", flush=True)
    print(
        f"townlet: speed {'paused' if live.sim.clock.paused else live.sim.clock.speed}, seed {live.sim.seed}, "
        f"config {loaded.config_id}; Ctrl+C stops",
        flush=True,
    )
    print(f"townlet: policy {_label(live.policies.driving())} ({why})", flush=True)
    if token is not None:
        print(f"townlet: first run: created a signing key in {keys_file(cfg.console)}", flush=True)
        print(f"townlet: admin token (shown once, keep it secret): {token}", flush=True)
    if not secure and not is_loopback_host(server.host):
        print(
            "townlet: warning: serving without TLS on a non-loopback address; tokens travel in clear "
            "(use --tls-cert/--tls-key)",
            file=sys.stderr,
        )
    config = StackConfig(
        app,
        Limits.from_config(server),
        ws_max_size=server.max_body_bytes,
        timeout_graceful_shutdown=3,
        ssl_certfile=_path(server.tls_cert),
        ssl_keyfile=_path(server.tls_key),
    )
    # uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal: both end the command with 0.
    signal.signal(signal.SIGTERM, _stopped)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0


def _resume(args: argparse.Namespace, loaded: Any) -> Any:
    """The simulation to continue (None for a fresh town), or an exit code when nothing can be resumed."""
    if args.resume is None:
        return None
    from townlet.sim.autosave import newest_valid
    from townlet.sim.snapshot import SnapshotError

    try:
        sim, path, warnings = newest_valid(args.resume, loaded)
    except SnapshotError as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"townlet: warning: {warning}", file=sys.stderr, flush=True)
    print(f"townlet: resumed tick {sim.world.tick} from {path}", flush=True)
    return sim


def _driving_policy(args: argparse.Namespace, loaded: Any, resumed: Any) -> Any:
    """(who drives, the registry, why) for serve: ``--policy``, a resumed snapshot's policy, the release, scripted."""
    from townlet.training.policies import builtin, reinstate, resolve

    try:
        registry = registry_of(args, loaded, create=True)
        if args.policy is not None:
            choice = resolve(args.policy, registry)
            if resumed is not None:
                reinstate(resumed, choice, registry)
                return None, registry, "--policy, over the snapshot's"
            return choice, registry, "--policy"
        if resumed is not None:
            reinstate(resumed, None, registry)
            return None, registry, "recorded in the snapshot"
        if registry.release is not None:
            return resolve("release", registry), registry, f"the release of the registry at {registry.path}"
        return builtin("scripted"), registry, f"the registry at {registry.path} has no release yet"
    except policy_errors() as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2


def _label(policy: dict[str, Any]) -> str:
    return policy["name"] if policy["name"] == policy["hash"] else f"{policy['name']} = {policy['hash']}"


def _stopped(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _path(value: str | None) -> str | None:
    return None if value is None else str(Path(value).expanduser())
