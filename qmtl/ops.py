"""``qmtl ops``: operator tools behind the runbooks (docs/runbooks.md).

    qmtl ops cross-context show            # step 1: offending label sets
    qmtl ops cache purge --node NODE_ID    # step 4: flush SDK node caches
    qmtl ops cross-context reset           # step 5: clear the counter series
    qmtl ops gc-trigger                    # one GC sweep, prints its report
    qmtl ops fault SERVICE NAME=VALUE...   # drills: inject a fault (see docs/operations.md)
    qmtl ops fault SERVICE --clear

Targets come from qmtl.yml (each service's host/port, ``sdk.admin_port``) or
``--target URL`` (repeatable).  Admin tokens from the config are sent as Bearer tokens.
Exit codes: 0 ok, 1 a target failed or (for ``show``) hits exist, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx
import yaml

from qmtl.foundation.config import QmtlConfig

__all__ = ["main"]


def _url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def service_urls(config: QmtlConfig) -> dict[str, tuple[str, str | None]]:
    """Base URL and admin token of every process the ops commands talk to."""
    return {
        "dagmanager": (
            _url(config.dagmanager.host, config.dagmanager.http_port),
            config.dagmanager.admin_token,
        ),
        "gateway": (_url(config.gateway.host, config.gateway.port), config.gateway.admin_token),
        "worldservice": (
            _url(config.worldservice.host, config.worldservice.port),
            config.worldservice.admin_token,
        ),
        "sdk": (_url("127.0.0.1", config.sdk.admin_port), None),
    }


def _call(
    method: str, url: str, token: str | None, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        return 0, {"error": "unreachable", "message": f"{url}: {exc}"}
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"error": "bad_response", "message": response.text[:200]}


def _targets(
    args: argparse.Namespace, config: QmtlConfig, default: list[str]
) -> list[tuple[str, str, str | None]]:
    if args.target:
        return [(url, url.rstrip("/"), args.token) for url in args.target]
    urls = service_urls(config)
    return [(name, urls[name][0], args.token or urls[name][1]) for name in default]


def cross_context(args: argparse.Namespace, config: QmtlConfig) -> int:
    failed = hits_found = 0
    for name, base, token in _targets(args, config, ["dagmanager", "sdk"]):
        if args.action == "show":
            status, body = _call("GET", f"{base}/admin/cross-context", token)
            if status != 200:
                print(f"{name}: cannot read hits: {body.get('message', body)}", file=sys.stderr)
                failed += 1
                continue
            hits = body.get("hits", [])
            hits_found += len(hits)
            print(f"{name}: {len(hits)} unresolved cross-context hit series")
            for hit in hits:
                labels = ", ".join(f"{k}={v}" for k, v in sorted(hit["labels"].items()))
                print(f"  {hit['value']:g}  {labels}")
        else:
            status, body = _call("POST", f"{base}/admin/cross-context/reset", token)
            if status != 200:
                print(f"{name}: reset failed: {body.get('message', body)}", file=sys.stderr)
                failed += 1
                continue
            print(f"{name}: cleared {body.get('reset_series', 0)} series")
    if args.action == "show" and hits_found:
        print(
            "promotions stay blocked until the hits are remediated and reset (see docs/runbooks.md)"
        )
    return 1 if failed or (args.action == "show" and hits_found) else 0


def cache(args: argparse.Namespace, config: QmtlConfig) -> int:
    failed = 0
    for name, base, token in _targets(args, config, ["sdk"]):
        status, body = _call("POST", f"{base}/admin/cache/purge", token, {"node_id": args.node})
        if status != 200:
            print(f"{name}: purge failed: {body.get('message', body)}", file=sys.stderr)
            failed += 1
            continue
        for node, items in body.get("purged", {}).items():
            print(f"{name}: purged {items} cached items of node {node}")
    return 1 if failed else 0


def gc_trigger(args: argparse.Namespace, config: QmtlConfig) -> int:
    ((_, base, token),) = _targets(args, config, ["dagmanager"])[:1]
    status, body = _call("POST", f"{base}/admin/gc-trigger", token)
    print(json.dumps(body, indent=2))
    return 0 if status == 200 else 1


def fault(args: argparse.Namespace, config: QmtlConfig) -> int:
    urls = service_urls(config)
    if args.service not in urls:
        print(f"unknown service {args.service!r}; one of {', '.join(urls)}", file=sys.stderr)
        return 2
    base, token = urls[args.service]
    if args.target:
        base = args.target[0].rstrip("/")
    if args.clear and args.service == "sdk":
        status, body = _call("POST", f"{base}/admin/faults/clear", args.token or token, {})
    elif args.clear:
        status, body = _call("DELETE", f"{base}/admin/faults", args.token or token)
    else:
        changes = {}
        for item in args.settings:
            if "=" not in item:
                print(f"fault setting {item!r} must look like NAME=VALUE", file=sys.stderr)
                return 2
            key, raw = item.split("=", 1)
            changes[key] = yaml.safe_load(raw)
        status, body = _call("POST", f"{base}/admin/faults", args.token or token, changes)
    print(json.dumps(body))
    return 0 if status == 200 else 1


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target", action="append", help="service base URL (repeatable); default from qmtl.yml"
    )
    common.add_argument("--token", help="admin bearer token (default: from qmtl.yml)")
    parser = argparse.ArgumentParser(prog="qmtl ops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cc = sub.add_parser(
        "cross-context", parents=[common], help="show or reset cross-context cache hits"
    )
    cc.add_argument("action", choices=["show", "reset"])
    cc.set_defaults(run=cross_context)
    ca = sub.add_parser("cache", parents=[common], help="SDK node caches")
    ca.add_argument("action", choices=["purge"])
    ca.add_argument("--node", help="node id to purge (default: all nodes)")
    ca.set_defaults(run=cache)
    gc = sub.add_parser("gc-trigger", parents=[common], help="run one DAG Manager GC sweep")
    gc.set_defaults(run=gc_trigger)
    fa = sub.add_parser("fault", parents=[common], help="inject or clear a fault for drills")
    fa.add_argument("service", help="dagmanager | gateway | worldservice | sdk")
    fa.add_argument("settings", nargs="*", help="NAME=VALUE (YAML scalars)")
    fa.add_argument("--clear", action="store_true")
    fa.set_defaults(run=fault)
    return parser


def main(args: argparse.Namespace) -> int:
    """Entry from ``qmtl ops ...`` (the top-level CLI has loaded the config)."""
    ops_args = build_parser().parse_args(list(args.rest))
    return int(ops_args.run(ops_args, args.qmtl_config))
