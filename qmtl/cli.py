"""``qmtl`` command line: services, the local stack and operator tools.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration, 3 a command
that exists in the design but is not built in this version (it says so, never
pretends to work).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from qmtl import __version__
from qmtl.foundation.config import ConfigError, QmtlConfig, load_config

__all__ = ["EXIT_CONFIG", "EXIT_NOT_BUILT", "main"]

EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_NOT_BUILT = 3

Handler = Callable[[argparse.Namespace], int]


class CommandNotBuilt(Exception):
    """The command is planned but its implementation is not in this build."""


def resolve_config(path: str | None) -> QmtlConfig:
    """``--config`` if given, else ``./qmtl.yml`` when present, else built-in defaults."""
    if path is not None:
        return load_config(path)
    default = Path("qmtl.yml")
    return load_config(default if default.is_file() else None)


def _entry(module: str, function: str, what: str) -> Handler:
    """A handler that imports ``module`` lazily, so `qmtl --help` stays fast."""

    def run(args: argparse.Namespace) -> int:
        # Configuration errors are reported (exit 2) before anything else happens.
        args.qmtl_config = resolve_config(getattr(args, "config", None))
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                raise CommandNotBuilt(what) from None
            raise
        func = getattr(mod, function, None)
        if func is None:
            raise CommandNotBuilt(what)
        return int(func(args) or 0)

    return run


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="PATH", help="qmtl.yml to load (default: ./qmtl.yml if present)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qmtl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"qmtl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    service = commands.add_parser("service", help="run a QMTL service")
    services = service.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name, module in (
        ("dagmanager", "qmtl.services.dagmanager.server"),
        ("gateway", "qmtl.services.gateway.server"),
        ("worldservice", "qmtl.services.worldservice.server"),
    ):
        svc = services.add_parser(name, help=f"run the {name} service")
        actions = svc.add_subparsers(dest="action", metavar="ACTION")
        server = actions.add_parser("server", help="run the server (default action)")
        _add_config(server)
        _add_config(svc)
        run = _entry(module, "main", f"qmtl service {name} server")
        server.set_defaults(handler=run)
        svc.set_defaults(handler=run)
        if name == "dagmanager":
            metrics = actions.add_parser(
                "metrics", help="serve the DAG Manager metrics registry as a standalone exporter"
            )
            metrics.add_argument("--port", type=int, default=8000, help="port (default 8000)")
            metrics.add_argument("--host", default="127.0.0.1", help="bind address")
            _add_config(metrics)
            metrics.set_defaults(
                handler=_entry(
                    "qmtl.services.dagmanager.metrics",
                    "cli_main",
                    "qmtl service dagmanager metrics",
                )
            )

    up = commands.add_parser("up", help="run the local stack with a demo strategy")
    _add_config(up)
    up.add_argument("--state-dir", default=".qmtl-stack", help="where all state and logs go")
    up.add_argument("--no-prometheus", action="store_true", help="run without Prometheus")
    up.add_argument("--with", dest="with_", default="", help="kafka,postgres: real backends")
    up.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    up.set_defaults(handler=_entry("qmtl.devstack.up", "main", "qmtl up"))

    ops = commands.add_parser("ops", help="operator tools (runbooks, faults)")
    _add_config(ops)
    ops.set_defaults(handler=_entry("qmtl.ops", "main", "qmtl ops"))
    ops.add_argument("rest", nargs=argparse.REMAINDER, help="ops sub-command")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(
        logging.WARNING
    )  # one line per request drowns the status view
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"qmtl: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CommandNotBuilt as exc:
        print(f"qmtl: '{exc}' is not built in this version of QMTL yet.", file=sys.stderr)
        return EXIT_NOT_BUILT
    except KeyboardInterrupt:
        return 130
