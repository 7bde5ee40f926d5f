"""``qmtl`` command line: services, the local stack and operator tools.

One argparse tree; ``--config PATH`` is accepted on every command, before or after
the sub-command.  Exit codes, the same for every command:

* 0 success
* 1 runtime failure (a target did not answer, a process died, hits exist for ``show``)
* 2 bad usage or configuration (one line names the problem and the fix)
* 3 a command that exists in the design but is not built in this version

No command prints a traceback unless ``-v`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from qmtl import __version__
from qmtl.foundation.config import ConfigError, resolve_config
from qmtl.foundation.errors import InvalidInput

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_NOT_BUILT",
    "EXIT_OK",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_NOT_BUILT = 3

Handler = Callable[[argparse.Namespace], int]


class CommandNotBuilt(Exception):
    """The command is planned but its implementation is not in this build."""


class UserError(Exception):
    """A problem the user can fix; ``exit_code`` is 1 (runtime) or 2 (usage)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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


def _common() -> argparse.ArgumentParser:
    """Options every command accepts, wherever they are written on the line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="qmtl.yml to load (default: $QMTL_CONFIG, else ./qmtl.yml if present)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    return common


def _ops_target(common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    target = argparse.ArgumentParser(add_help=False, parents=[common])
    target.add_argument(
        "--target",
        action="append",
        metavar="URL",
        help="service base URL (repeatable); default: every source known from qmtl.yml",
    )
    target.add_argument("--token", help="admin bearer token (default: from qmtl.yml)")
    return target


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="qmtl", description=__doc__.splitlines()[0], parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"qmtl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    service = commands.add_parser("service", help="run a QMTL service", parents=[common])
    services = service.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name, module in (
        ("dagmanager", "qmtl.services.dagmanager.server"),
        ("gateway", "qmtl.services.gateway.server"),
        ("worldservice", "qmtl.services.worldservice.server"),
    ):
        svc = services.add_parser(name, help=f"run the {name} service", parents=[common])
        actions = svc.add_subparsers(dest="action", metavar="ACTION")
        run = _entry(module, "main", f"qmtl service {name} server")
        actions.add_parser("server", help="run the server (default)", parents=[common])
        svc.set_defaults(handler=run)
        if name == "dagmanager":
            metrics = actions.add_parser(
                "metrics",
                parents=[common],
                help="serve the live metrics of the DAG Manager configured in qmtl.yml",
            )
            metrics.add_argument("--port", type=int, default=8000, help="port (default 8000)")
            metrics.add_argument("--host", default="127.0.0.1", help="bind address")
            metrics.set_defaults(
                handler=_entry(
                    "qmtl.services.dagmanager.exporter", "main", "qmtl service dagmanager metrics"
                )
            )

    up = commands.add_parser(
        "up", help="run the local stack with a demo strategy", parents=[common]
    )
    up.add_argument("--state-dir", default=".qmtl-stack", help="where all state and logs go")
    up.add_argument("--no-prometheus", action="store_true", help="run without Prometheus")
    up.add_argument("--with", dest="with_", default="", help="kafka,postgres: real backends")
    up.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    up.add_argument(
        "--replicas", type=int, default=1, metavar="N",
        help="N replicas of every service behind HAProxy (implies --with kafka,postgres)",
    )  # fmt: skip
    up.add_argument(
        "--ha", action="store_true",
        help="highly available monitoring: 2 Prometheus replicas, 2 clustered Alertmanagers",
    )  # fmt: skip
    up.set_defaults(handler=_entry("qmtl.devstack.up", "main", "qmtl up"))

    ops = commands.add_parser("ops", help="operator tools behind the runbooks", parents=[common])
    ops_cmds = ops.add_subparsers(dest="ops_command", metavar="OPS_COMMAND", required=True)
    target = _ops_target(common)
    cc = ops_cmds.add_parser(
        "cross-context", parents=[target], help="show or reset cross-context cache hits"
    )
    cc.add_argument("action", choices=["show", "reset"])
    cc.set_defaults(handler=_entry("qmtl.ops", "cross_context", "qmtl ops cross-context"))
    cache = ops_cmds.add_parser("cache", parents=[target], help="SDK node caches")
    cache.add_argument("action", choices=["purge"])
    cache.add_argument("--node", help="node id to purge (default: all nodes)")
    cache.set_defaults(handler=_entry("qmtl.ops", "cache", "qmtl ops cache"))
    gc = ops_cmds.add_parser("gc-trigger", parents=[target], help="run one DAG Manager GC sweep")
    gc.set_defaults(handler=_entry("qmtl.ops", "gc_trigger", "qmtl ops gc-trigger"))
    fault = ops_cmds.add_parser(
        "fault", parents=[target], help="inject or clear a fault (drills only)"
    )
    fault.add_argument("service", choices=["dagmanager", "gateway", "worldservice", "sdk"])
    fault.add_argument("settings", nargs="*", metavar="NAME=VALUE", help="YAML scalars")
    fault.add_argument("--clear", action="store_true", help="clear every fault of SERVICE")
    fault.set_defaults(handler=_entry("qmtl.ops", "fault", "qmtl ops fault"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # One line per request drowns the status view.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"qmtl: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UserError as exc:
        print(f"qmtl: {exc}", file=sys.stderr)
        return exc.exit_code
    except InvalidInput as exc:  # bad usage found by a command itself
        print(f"qmtl: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CommandNotBuilt as exc:
        print(f"qmtl: '{exc}' is not built in this version of QMTL yet.", file=sys.stderr)
        return EXIT_NOT_BUILT
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line, never a traceback
        if verbose:
            traceback.print_exc()
        print(
            f"qmtl: {type(exc).__name__}: {exc} (rerun with -v for details; please report it)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
