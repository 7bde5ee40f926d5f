"""``qmtl ops``: operator tools behind the runbooks (docs/runbooks.md).

    qmtl ops cross-context show            # step 1: offending label sets, promotion hold
    qmtl ops cache purge --node NODE_ID    # step 4: flush SDK node caches
    qmtl ops cross-context reset           # step 5: clear the counter series everywhere
    qmtl ops gc-trigger                    # one GC sweep, prints its report
    qmtl ops fault SERVICE NAME=VALUE...   # drills: inject a fault (see docs/operations.md)
    qmtl ops fault SERVICE --clear

Targets come from qmtl.yml (each service's host/port; for cross-context, the DAG Manager
and the SDK admin URLs the WorldService learned from submissions; for cache purges,
``sdk.admin_port``) or ``--target URL`` (repeatable).  Admin tokens from the config are sent as Bearer tokens.
Exit codes: 0 ok, 1 a target failed or (for ``show``) hits exist or the hold runs,
2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx
import yaml

from qmtl.foundation.config import QmtlConfig, local_url
from qmtl.foundation.errors import InvalidRequest

__all__ = ["cache", "cross_context", "fault", "gc_trigger", "service_urls"]


def service_urls(config: QmtlConfig) -> dict[str, tuple[str, str | None]]:
    """Base URL and admin token of every process the ops commands talk to."""
    return {
        "dagmanager": (config.dagmanager.url, config.dagmanager.admin_token),
        "gateway": (config.gateway.url, config.gateway.admin_token),
        "worldservice": (config.worldservice.url, config.worldservice.admin_token),
        "sdk": (local_url("127.0.0.1", config.sdk.admin_port), config.sdk.admin_token),
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


def _message(body: Any) -> str:
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


def _sources(args: argparse.Namespace, config: QmtlConfig) -> list[tuple[str, str, str | None]]:
    """(name, base URL, token) of every process that may hold cross-context hits.

    A token goes only where the operator chose the address: ``--target`` with
    ``--token``, the DAG Manager and the SDK admin port of this qmtl.yml.  Other SDK admin
    URLs the WorldService learned come from submissions -- somebody else chose them --
    so they are called without one (reading hits needs none; a reset of a process that
    listens beyond loopback is then refused, and the message says how to target it).
    """
    if args.target:
        return [(url, url.rstrip("/"), args.token) for url in args.target]
    urls = service_urls(config)
    found = [("dagmanager", *urls["dagmanager"])]
    ws, ws_token = urls["worldservice"]
    status, body = _call("GET", f"{ws}/promotion-guard/sources", args.token or ws_token)
    if status == 200:
        # One row per (URL, world): a process that submitted to two worlds is one source.
        for base in dict.fromkeys(s["url"].rstrip("/") for s in body.get("sources", [])):
            found.append((f"sdk {base}", base, urls["sdk"][1]))
    else:  # no WorldService to ask: the SDK admin port of this qmtl.yml
        print(f"worldservice: cannot list SDK sources: {_message(body)}", file=sys.stderr)
        found.append(("sdk", *urls["sdk"]))
    own_sdk = urls["sdk"][0]  # the SDK admin port of this qmtl.yml: the operator's choice
    return [
        (
            name,
            base,
            (args.token or token) if name in ("dagmanager", "sdk") or base == own_sdk else None,
        )
        for name, base, token in found
    ]


def _hold(config: QmtlConfig, token: str | None) -> str | None:
    """The WorldService's view of the promotion hold, as one line."""
    ws, ws_token = service_urls(config)["worldservice"]
    status, body = _call("GET", f"{ws}/promotion-guard", token or ws_token)
    if status == 0:
        return f"worldservice: cannot read the promotion guard: {_message(body)}"
    if status == 503:
        return f"promotions blocked: {_message(body)}"
    if body.get("hold_remaining_seconds"):
        return (
            f"promotions on hold for {body['hold_remaining_seconds']:.0f} s more "
            f"(until {body['hold_until_iso']}): the counter must stay at zero for "
            f"{body['hold_seconds']:.0f} s after the last hit"
        )
    if body.get("blocked"):
        return "promotions blocked while hits are unresolved"
    if body.get("blocked_worlds"):
        return (
            "promotions allowed, except in world(s) "
            f"{', '.join(body['blocked_worlds'])} (hits, hold or an unreadable source there)"
        )
    return "promotions allowed"


def cross_context(args: argparse.Namespace) -> int:
    config: QmtlConfig = args.qmtl_config
    failed: list[str] = []
    hits_found = 0
    for name, base, token in _sources(args, config):
        if args.action == "show":
            status, body = _call("GET", f"{base}/admin/cross-context", token)
            if status != 200:
                print(f"{name}: cannot read hits: {_message(body)}", file=sys.stderr)
                failed.append(name)
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
                hint = ""
                if status in (401, 403) and token is None:
                    hint = (
                        f" (a registered SDK process gets no token; run `qmtl ops cross-context"
                        f" reset --target {base} --token TOKEN`)"
                    )
                print(f"{name}: reset failed: {_message(body)}{hint}", file=sys.stderr)
                failed.append(name)
                continue
            print(f"{name}: cleared {body.get('reset_series', 0)} series")
    hold = None if args.target else _hold(config, args.token)
    if hold:
        print(hold)
    if failed:
        verb = "read" if args.action == "show" else "reset"
        print(f"could not {verb}: {', '.join(failed)}", file=sys.stderr)
    if args.action == "show" and hits_found:
        print(
            "promotions stay blocked until the hits are remediated and reset (see docs/runbooks.md)"
        )
    on_hold = bool(hold and hold.startswith("promotions on hold"))
    return 1 if failed or (args.action == "show" and (hits_found or on_hold)) else 0


def cache(args: argparse.Namespace) -> int:
    config: QmtlConfig = args.qmtl_config
    urls = service_urls(config)
    targets = (
        [(url, url.rstrip("/"), args.token) for url in args.target]
        if args.target
        else [("sdk", urls["sdk"][0], args.token or urls["sdk"][1])]
    )
    failed = 0
    for name, base, token in targets:
        status, body = _call("POST", f"{base}/admin/cache/purge", token, {"node_id": args.node})
        if status != 200:
            print(f"{name}: purge failed: {_message(body)}", file=sys.stderr)
            failed += 1
            continue
        for node, items in body.get("purged", {}).items():
            print(f"{name}: purged {items} cached items of node {node}")
    return 1 if failed else 0


def gc_trigger(args: argparse.Namespace) -> int:
    config: QmtlConfig = args.qmtl_config
    base, token = service_urls(config)["dagmanager"]
    if args.target:
        base = args.target[0].rstrip("/")
    status, body = _call("POST", f"{base}/admin/gc-trigger", args.token or token)
    print(json.dumps(body, indent=2))
    return 0 if status == 200 else 1


def fault(args: argparse.Namespace) -> int:
    config: QmtlConfig = args.qmtl_config
    base, token = service_urls(config)[args.service]
    if args.target:
        base = args.target[0].rstrip("/")
    token = args.token or token
    if args.clear:
        status, body = _call("DELETE", f"{base}/admin/faults", token)
    else:
        if not args.settings:
            raise InvalidRequest("give NAME=VALUE settings or --clear")
        changes = {}
        for item in args.settings:
            if "=" not in item:
                raise InvalidRequest(f"fault setting {item!r} must look like NAME=VALUE")
            key, raw = item.split("=", 1)
            changes[key] = yaml.safe_load(raw)
        status, body = _call("POST", f"{base}/admin/faults", token, changes)
    if status == 404:
        print(
            f"{args.service}: no fault switches here; drills are off (set drills.enabled: true "
            "in qmtl.yml, as `qmtl up` does)",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(body))
    return 0 if status == 200 else 1
