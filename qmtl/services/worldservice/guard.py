"""The promotion guard: no apply while a cross-context cache hit is unresolved.

Sources are the ``/admin/cross-context`` endpoints of the processes that count hits:

* **static** -- chosen by the operator: the DAG Manager of this configuration and
  ``cross_context_sources``;
* **registered** -- SDK processes that submitted with their admin URL.  A client chose
  that URL, so it is read only if its host is loopback or in
  ``worldservice.guard_allowed_sources``, and it speaks for its own world only: its
  hits, its silence and the hold after its reset block applies of the world it
  submitted to, never another one.

Reads carry no credential at all: the report is public on every process, like the
``/metrics`` it summarises, so no secret ever goes to a URL somebody else chose.

A static source with a hit, or that cannot be read, blocks every world (fail closed);
so does Prometheus when ``prometheus_url`` is set.  After the last hit of a scope is
cleared, applies of that scope wait ``promotion_hold_seconds`` more.

Reads happen on the guard's own schedule (every ``guard_poll_seconds``) and before an
apply; ``GET /promotion-guard`` answers from the last read and never calls out.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from qmtl.foundation.config import QmtlConfig
from qmtl.foundation.contracts import check_field
from qmtl.foundation.errors import GuardBlocked, GuardSourceRefused, GuardUnavailable
from qmtl.services.worldservice import metrics
from qmtl.services.worldservice.models import GuardSource
from qmtl.services.worldservice.store import WorldStore

__all__ = ["ALL_WORLDS", "GuardView", "PromotionGuard", "SourceAllowlist"]

log = logging.getLogger(__name__)

#: Scope of what blocks every world (static sources, Prometheus).
ALL_WORLDS = "*"
#: Seconds a single source read may take; reads run in parallel.
READ_TIMEOUT_SECONDS = 3.0
_HOLD = "hold_from"
_STATIC_SEEN = "static_hits_seen"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _hold_key(scope: str) -> str:
    return _HOLD if scope == ALL_WORLDS else f"{_HOLD}:{scope}"


class SourceAllowlist:
    """Which hosts the guard may contact for a client-registered source.

    Loopback always; beyond it, each entry is an IP network (``10.0.0.0/8``), an address,
    a host name (``strategies.internal``) or a domain suffix (``.svc.cluster.local``).
    Names are compared as written, never resolved: a lookup would let whoever controls
    DNS decide where the guard connects.
    """

    def __init__(self, entries: Sequence[str]) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = entry.lower().rstrip(".")
            if name.startswith("."):
                self.suffixes.append(name)
            else:
                self.names.add(name)

    def allows(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        if not host:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return (
                host == "localhost"
                or host in self.names
                or any(host.endswith(s) for s in self.suffixes)
            )
        return address.is_loopback or any(address in net for net in self.networks)


@dataclass(frozen=True)
class _Source:
    url: str
    scope: str  # ALL_WORLDS, or the world a registered source speaks for
    registered: GuardSource | None = None


@dataclass
class GuardView:
    """What the guard saw at ``checked_at``, and for which scope each finding counts.

    Each hit and each unreachable source carries ``scope``: ``*`` (every world) or the
    world id it blocks.  :meth:`for_world` is what an apply of that world must respect.
    """

    hits: list[dict[str, Any]]
    unreachable: list[dict[str, str]]
    holds: dict[str, float]  # scope -> time the last hit of that scope was cleared
    hold_seconds: float
    checked_at: float
    world_id: str | None = None
    #: Registered sources the last read saw (url, world, strategy).
    sources: list[dict[str, Any]] = field(default_factory=list)
    #: The guard's clock: holds end by it.
    clock: Callable[[], float] = time.time

    def for_world(self, world_id: str) -> GuardView:
        scopes = (ALL_WORLDS, world_id)
        return GuardView(
            [h for h in self.hits if h["scope"] in scopes],
            [u for u in self.unreachable if u["scope"] in scopes],
            {s: t for s, t in self.holds.items() if s in scopes},
            self.hold_seconds,
            self.checked_at,
            world_id,
            [s for s in self.sources if s["world_id"] == world_id],
            self.clock,
        )

    @property
    def resume_at(self) -> float | None:
        if not self.holds:
            return None
        resume = max(self.holds.values()) + self.hold_seconds
        return resume if resume > self.clock() else None

    def _blocks(self, scope: str) -> bool:
        if any(h["scope"] == scope for h in self.hits):
            return True
        if any(u["scope"] == scope for u in self.unreachable):
            return True
        held = self.holds.get(scope)
        return held is not None and held + self.hold_seconds > self.clock()

    def as_dict(self) -> dict[str, Any]:
        resume = self.resume_at if self.world_id is not None else self._resume(ALL_WORLDS)
        scope = self.world_id if self.world_id is not None else ALL_WORLDS
        blocked = self._blocks(ALL_WORLDS) or self._blocks(scope)
        worlds = sorted(
            {h["scope"] for h in self.hits}
            | {u["scope"] for u in self.unreachable}
            | {s for s in self.holds if self._blocks(s)}
        )
        return {
            "world_id": self.world_id,
            "blocked": blocked,
            "blocked_worlds": [w for w in worlds if w != ALL_WORLDS and self._blocks(w)],
            "hits": self.hits,
            "unreachable": self.unreachable,
            "hold_seconds": self.hold_seconds,
            "hold_until": resume,
            "hold_until_iso": iso(resume) if resume else None,
            "hold_remaining_seconds": round(resume - self.clock(), 1) if resume else 0.0,
            "checked_at": self.checked_at,
            "checked_at_iso": iso(self.checked_at),
        }

    def _resume(self, scope: str) -> float | None:
        held = self.holds.get(scope)
        if held is None or held + self.hold_seconds <= self.clock():
            return None
        return held + self.hold_seconds


class PromotionGuard:
    """Reads the sources, remembers holds in the shared store, answers whether a world
    may be promoted.  Thread-safe; one instance per WorldService."""

    def __init__(
        self,
        config: QmtlConfig,
        store: WorldStore,
        http_get: Callable[..., Any],
        static_sources: Sequence[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = config.worldservice
        #: Wall-clock time of holds and source expiry (tests pass a clock they move).
        self.clock = clock
        self.store = store
        self._http_get = http_get
        self.static_sources = list(static_sources)
        self.allowlist = SourceAllowlist(self.settings.guard_allowed_sources)
        self._last: GuardView | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="promotion-guard")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- sources -------------------------------------------------------------------------------
    def register(self, url: str, world_id: str, strategy_id: str) -> None:
        """An SDK process that submitted: read its hits from now on, for its world only.

        :class:`GuardSourceRefused` when its host is not allowed or the table is full.
        """
        check_field("admin_url", url)
        base = url.rstrip("/")
        if not self.allowlist.allows(base):
            raise GuardSourceRefused(
                f"admin URL {base} is not on loopback or in worldservice.guard_allowed_sources; "
                "the promotion guard contacts only allowed hosts (add the host or network "
                "there to have this strategy's cross-context hits read)"
            )
        full = f"{base}/admin/cross-context"
        known = self.store.source_urls()
        if known >= self.settings.guard_max_sources and not any(
            s.url == full for s in self.store.sources()
        ):
            raise GuardSourceRefused(
                f"the promotion guard already reads {known} registered sources "
                f"(worldservice.guard_max_sources); sources of ended processes are forgotten "
                f"after {self.settings.guard_source_expiry_seconds:g}s, or raise the limit"
            )
        self.store.add_source(full, world_id, strategy_id, self.clock())

    def _sources(self, world_id: str | None) -> list[_Source]:
        static = [_Source(url, ALL_WORLDS) for url in self.static_sources]
        registered = []
        for row in self.store.sources():
            if world_id is not None and row.world_id != world_id:
                continue
            registered.append(_Source(row.url, row.world_id, row))
        return static + registered

    def _read(self, source: _Source) -> dict[str, Any]:
        response = self._http_get(source.url, timeout=READ_TIMEOUT_SECONDS, follow_redirects=False)
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("hits"), list):
            raise ValueError("not a cross-context report")
        return body

    def _attempt(self, source: _Source) -> dict[str, Any] | Exception:
        if source.registered is not None and not self.allowlist.allows(source.url):
            return PermissionError("host no longer in worldservice.guard_allowed_sources")
        try:
            return self._read(source)
        except (httpx.HTTPError, ValueError) as exc:
            return exc

    # -- reading -------------------------------------------------------------------------------
    def read(self, world_id: str | None = None) -> GuardView:
        """Read the sources of ``world_id`` (all when None) now, record what was seen.

        Never raises for a source that cannot be read: it is listed as unreachable.
        """
        now = self.clock()
        sources = self._sources(world_id)
        # One read per URL, whatever number of worlds it speaks for.
        unique = list({s.url: s for s in sources}.values())
        by_url = dict(
            zip((s.url for s in unique), self._pool.map(self._attempt, unique), strict=True)
        )
        answers = [by_url[s.url] for s in sources]
        hits: list[dict[str, Any]] = []
        unreachable: list[dict[str, str]] = []
        seen: list[dict[str, Any]] = []
        hits_by_scope: dict[str, bool] = {}
        for source, answer in zip(sources, answers, strict=True):
            registered = source.registered
            if registered is not None:
                seen.append({"url": registered.url, "world_id": registered.world_id,
                             "strategy_id": registered.strategy_id})  # fmt: skip
            if isinstance(answer, Exception):
                if isinstance(answer, PermissionError) or (
                    registered is not None
                    and now - registered.last_ok > self.settings.guard_source_expiry_seconds
                ):
                    self._forget(source, answer)
                    continue
                unreachable.append(
                    {"source": source.url, "scope": source.scope, "error": type(answer).__name__}
                )
                continue
            source_hits = [
                {**h, "source": source.url, "scope": source.scope} for h in answer["hits"]
            ]
            hits.extend(source_hits)
            hits_by_scope[source.scope] = hits_by_scope.get(source.scope, False) or bool(
                source_hits
            )
            cleared = answer.get("last_reset")
            if isinstance(cleared, int | float) and cleared > 0:
                self.store.raise_state(_hold_key(source.scope), float(cleared))
            if registered is not None:
                if registered.had_hits and not source_hits:
                    self.store.raise_state(_hold_key(source.scope), now)  # cleared by a restart
                self.store.source_seen(source.url, now, bool(source_hits))
            elif source_hits:
                self.store.raise_state(_STATIC_SEEN, now)
        static_clean = not hits_by_scope.get(ALL_WORLDS, False) and not any(
            u["scope"] == ALL_WORLDS for u in unreachable
        )
        if static_clean and (self.store.state(_STATIC_SEEN) or 0) > (self.store.state(_HOLD) or 0):
            # A configured source had hits at our last look and has none now.
            self.store.raise_state(_HOLD, now)
        if self.settings.prometheus_url:
            hits_or_error = self._ask_prometheus()
            if isinstance(hits_or_error, str):
                unreachable.append(
                    {
                        "source": self.settings.prometheus_url,
                        "scope": ALL_WORLDS,
                        "error": hits_or_error,
                    }
                )
            else:
                hits.extend(hits_or_error)
        scopes = {ALL_WORLDS} | {s.scope for s in sources}
        holds = {
            scope: held
            for scope in scopes
            if (held := self.store.state(_hold_key(scope))) is not None
        }
        view = GuardView(
            hits,
            unreachable,
            holds,
            self.settings.promotion_hold_seconds,
            now,
            None,
            seen,
            self.clock,
        )
        if world_id is None:
            with self._lock:
                self._last = view
            metrics.set_unreachable_sources(
                static=sum(1 for u in unreachable if u["scope"] == ALL_WORLDS),
                registered=sum(1 for u in unreachable if u["scope"] != ALL_WORLDS),
            )
        return view

    def _forget(self, source: _Source, why: Exception) -> None:
        """A registered source gone for good (or no longer allowed): its counter died
        with it, which is a reset of its world."""
        registered = source.registered
        if registered is None:
            return
        self.store.remove_source(source.url)
        log.warning(
            "promotion guard: dropped %s (%s), last answered %s", source.url, why,
            iso(registered.last_ok),
        )  # fmt: skip
        if registered.had_hits:
            self.store.raise_state(_hold_key(source.scope), registered.last_ok)

    def _ask_prometheus(self) -> list[dict[str, Any]] | str:
        """QMTL's cross-context hits as Prometheus has them, or why it could not say: an
        answer other than success (a refused query, say) is no answer, never "no hits"."""
        url = f"{(self.settings.prometheus_url or '').rstrip('/')}/api/v1/query"
        query = f"cross_context_cache_hit_total{{{self.settings.prometheus_selector}}} > 0"
        try:
            answer = self._http_get(
                url, params={"query": query}, timeout=READ_TIMEOUT_SECONDS
            ).json()
            if answer.get("status") != "success":
                return f"{answer.get('errorType', 'error')}: {answer.get('error', answer)}"
            return [
                {"labels": r["metric"], "value": float(r["value"][1]), "source": "prometheus",
                 "scope": ALL_WORLDS}
                for r in answer["data"]["result"]
            ]  # fmt: skip
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return type(exc).__name__

    def last(self) -> GuardView | None:
        """The view of the last scheduled read (None before the first); no call out."""
        with self._lock:
            return self._last

    # -- deciding ------------------------------------------------------------------------------
    def check(self, world_id: str) -> GuardView:
        """Read ``world_id``'s sources now; raise when its promotions must wait.

        The errors name the hits, the sources that cannot be read, or the end of the hold.
        """
        view = self.read(world_id).for_world(world_id)
        if view.hits:
            sets = "; ".join(
                ", ".join(f"{k}={v}" for k, v in sorted(h.get("labels", {}).items()))
                for h in view.hits[:5]
            )
            raise GuardBlocked(
                f"{len(view.hits)} unresolved cross-context cache hit(s) ({sets}); follow the "
                "CrossContextCacheHit runbook and run `qmtl ops cross-context reset` after "
                "remediation",
                hits=view.hits,
            )
        if view.unreachable:
            raise GuardUnavailable(
                "promotion guard cannot read "
                + ", ".join(f"{u['source']} ({u['error']})" for u in view.unreachable)
                + "; promotions of this world stay blocked until every source answers (a "
                f"process that ended is forgotten after {self.settings.guard_source_expiry_seconds:g}s)",
                unreachable=view.unreachable,
            )
        resume = view.resume_at
        if resume is not None:
            raise GuardBlocked(
                f"the cross-context counter must stay at zero for {view.hold_seconds:g}s after "
                f"the last hit was cleared; promotions resume at {iso(resume)} "
                f"(in {resume - self.clock():.0f}s)",
                hits=[],
                resume_at=resume,
                resume_at_iso=iso(resume),
            )
        return view
