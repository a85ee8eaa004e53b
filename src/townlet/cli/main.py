"""The ``townlet`` command: one entry point, a subcommand per job, ``--help`` with examples everywhere."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from townlet.config.errors import ConfigError

Handler = Callable[[argparse.Namespace], int]


class BadInput(Exception):
    """Bad input found deep in a command: ``main`` prints ``townlet: error: MESSAGE`` and exits with 2."""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The CONFIG positional and repeatable ``--set key.path=value`` shared by most subcommands."""
    parser.add_argument(
        "config", nargs="?", default=None, metavar="CONFIG", help="YAML config file (default: the shipped town)"
    )
    _add_set(parser, "override any config value (repeatable), e.g. --set population.agents=12")


def add_config_options(parser: argparse.ArgumentParser, example: str = "") -> None:
    """``--config CONFIG`` and repeatable ``--set key.path=value`` for the actions of subcommand groups.

    Their positionals are taken by the action's own arguments; ``example`` ends the ``--set`` help.
    """
    parser.add_argument("--config", default=None, metavar="CONFIG", help="YAML config (default: the shipped one)")
    _add_set(parser, f"override a config value (repeatable){example}")


def _add_set(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The repeatable ``--set key.path=value`` option, collected into ``overrides``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE", help=help_text
    )


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand registered."""
    from townlet.cli import (
        bench,
        bench_live,
        capture,
        config_cmd,
        console_cmd,
        evaluate,
        promote,
        replay,
        run,
        serve,
        snapshot,
        telemetry,
        token,
        train,
        watch,
    )

    parser = argparse.ArgumentParser(
        prog="townlet",
        formatter_class=_formatter,
        description="Townlet: a small-town life simulation for multi-agent reinforcement learning.",
        epilog="examples:\n  townlet run --ticks 5000 --seed 1\n  townlet bench --agents 1000 --town-scale 4 --json\n"
        "  townlet config show --set population.agents=12\n\nRun 'townlet COMMAND --help' for details.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (
        run,
        bench,
        config_cmd,
        telemetry,
        token,
        train,
        serve,
        watch,
        console_cmd,
        bench_live,
        capture,
        evaluate,
        promote,
        snapshot,
        replay,
    ):
        module.register(sub, _formatter)
    return parser


def _version() -> str:
    from townlet import __version__

    return f"townlet {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except (ConfigError, BadInput) as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("townlet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
