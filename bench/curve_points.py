"""bench/cost_curves.py's curves: rules, event size, fan-out, open circuits, signing."""

import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from cryptography.fernet import Fernet

from activities.store import StoreActivities
from bench.control_lab import MB, Lab
from bench.curve_lab import Sinks, at_paths, burst, latency, one_by_one, point
from bench.run import percentile, rounded, say
from hub.client import HubClient
from hub.config import Settings
from hub.core import templating
from hub.core.claims import EVENT_INLINE_MAX
from hub.core.matching import PatternIndex
from hub.core.models import DispatchInput, Event, Service, ServiceIn
from hub.engine.holds import count_held
from hub.runtime.connections import connect_temporal
from hub.runtime.embedded import free_port
from hub.runtime.metrics import HubMetrics
from hub.runtime.rule_index import RuleIndex
from hub.secrets import SecretBox
from hub.store import Store

Curve = Callable[[Lab, Sinks, dict[str, Any]], Awaitable[None]]
"""A curve adds each point to its dict as it goes: a later point's failure keeps them."""
BLOB_TEMPLATE = "{{data.blob}}"


def rule_names(count: int) -> list[str]:
    """count patterns, half exact (``rc.r<i>``) and half wildcards (``rc.w<i>.*``);
    ``rc.r0`` matches exactly one of them."""
    return [f"rc.r{i}" for i in range((count + 1) // 2)] + [f"rc.w{i}.*" for i in range(count // 2)]


async def plan_cost(lab: Lab) -> dict[str, Any]:
    """The plan local activity, called in this process on a real store and rule index: the
    snapshot load and pattern build every worker pays per configuration version (and every
    rule_cache_seconds), then the plan of an event that matches one rule."""
    began = time.perf_counter()
    snapshot = await lab.store.rules.snapshot()
    load_ms = (time.perf_counter() - began) * 1000
    began = time.perf_counter()
    PatternIndex([t.rule.event for t in snapshot.targets])
    build_ms = (time.perf_counter() - began) * 1000
    index = RuleIndex(lab.store)
    await index.start()
    try:
        plans = StoreActivities(lab.store, index, max_payload_bytes=MB, metrics=HubMetrics())
        event = Event.model_validate({"id": "plan", "name": "rc.r0", "data": {"id": 1}})
        dispatch = DispatchInput(event=event, config_version=index.version)
        began = time.perf_counter()
        plan = await plans.plan(dispatch)  # builds the pattern index of this snapshot
        first_ms = (time.perf_counter() - began) * 1000
        assert len(plan.deliveries) == 1, plan
        each = []
        for _ in range(lab.args.plan_calls):
            began = time.perf_counter()
            await plans.plan(dispatch)
            each.append((time.perf_counter() - began) * 1e6)
    finally:
        await index.close()
    ttl = Settings.model_fields["rule_cache_seconds"].default
    return {
        "snapshot_load_ms": round(load_ms, 1),
        "pattern_build_ms": round(build_ms, 2),
        # Every worker and emitter pays both at each change and each rule_cache_seconds.
        "reload_ms_per_min_per_process": round((load_ms + build_ms) * 60 / ttl, 1),
        "plan_first_ms": round(first_ms, 2),
        "plan_p50_us": round(percentile(each, 50), 1),
        "plan_p99_us": round(percentile(each, 99), 1),
    }


async def rules_curve(lab: Lab, sinks: Sinks, out: dict[str, Any]) -> None:
    """Emit and plan cost at each --rule-counts, the event matching one rule."""
    service = await lab.service("rules")
    for count in lab.args.rule_counts:
        await lab.store.pool.execute("DELETE FROM rules WHERE event LIKE 'rc.%'")
        await lab.store.pool.execute(
            "INSERT INTO rules (event, service_id, endpoint)"
            " SELECT e, $1, '/rules' FROM unnest($2::text[]) AS e",
            service.id,
            rule_names(count),
        )
        figures = await plan_cost(lab)
        async with point(lab, f"rules{count}", sinks.plain) as p:
            m = await p.measure(lab.args.events, one_by_one("rc.r0"), at_paths("/rules"))
        figures |= {
            "emit_p50_ms": rounded(percentile(m.emitted.emit_ms, 50), 2),
            "emit_p99_ms": rounded(percentile(m.emitted.emit_ms, 99), 2),
            **m.figures(),
        }
        out[str(count)] = figures
        say(f"rules {count}: {figures}")
    await lab.store.pool.execute("DELETE FROM rules WHERE event LIKE 'rc.%'")


def blob_events(name: str, size: int, hashes: dict[str, str]) -> Callable[[str], dict[str, Any]]:
    """Event data of about size bytes, new for each event; the hash of the body it renders
    (what the sink must receive) goes into hashes."""

    def data(rid: str) -> dict[str, Any]:
        body = {"blob": secrets.token_hex(size // 2)}
        event = Event.model_validate({"id": rid, "name": name, "data": body})
        rendered = templating.render(BLOB_TEMPLATE, event, max_bytes=MB)
        hashes[rid] = hashlib.sha256(rendered.encode()).hexdigest()
        return body

    return data


async def size_curve(lab: Lab, sinks: Sinks, out: dict[str, Any]) -> None:
    """1 KB, 100 KB and 1 MB of event data, paced: CPU, latency, and the bytes verified."""
    args, url = lab.args, sinks.hashing_url
    for size in args.sizes:
        big = size >= 500_000
        count, rate = (args.big_events, args.big_rate) if big else (args.events, args.size_rate)
        label, hashes = f"{size // 1000}KB", dict[str, str]()
        service = await lab.service(f"size{label.lower()}", base_url=url)
        event = f"size.b{size}"
        await lab.rule(event, service, endpoint=f"/size/{label}", template=BLOB_TEMPLATE)
        emit = one_by_one(event, 1 / rate, blob_events(event, size, hashes))
        async with point(lab, f"size{size}", sinks.hashing) as p:
            m = await p.measure(count, emit, at_paths(f"/size/{label}"))
        mine = [r for r in m.records if r[1] == f"/size/{label}" and r[2] in m.emitted.sent]
        figures = {
            "data_bytes": size,
            "claim_checked": size > EVENT_INLINE_MAX,
            "rate_per_s": rate,
            **latency(m.latencies(f"/size/{label}")),
            "emit_p50_ms": rounded(percentile(m.emitted.emit_ms, 50), 2),
            "bodies_verified": len([r for r in mine if r[3] == hashes[r[2]]]),
            "bodies_differing": len([r for r in mine if r[3] != hashes[r[2]]]),
            "body_bytes_p50": int(percentile([r[4] for r in mine], 50)) if mine else None,
            **m.figures(),
        }
        out[label] = figures
        say(f"size {label}: {figures}")


async def fanout_curve(lab: Lab, sinks: Sinks, out: dict[str, Any]) -> None:
    """1, 5 and 50 services with one rule each on the same event, emitted in a burst."""
    for k in lab.args.fanouts:
        event, paths = f"fan{k}.ev", [f"/fan{k}/{j}" for j in range(k)]
        for j, path in enumerate(paths):
            await lab.rule(event, await lab.service(f"fan{k}-{j}"), endpoint=path)
        count = lab.args.events if k < 50 else lab.args.big_events
        async with point(lab, f"fan{k}", sinks.plain) as p:
            m = await p.measure(count, burst(lab, event), at_paths(*paths))
        figures = m.figures()
        cpu = figures["cpu_s_per_event"]
        figures |= {
            "services": k,
            "cpu_s_per_delivery": {g: round(v / k, 5) for g, v in cpu.items()},
            "events_per_s": round(count / m.span(), 1),
            "deliveries_per_s": round(count * k / m.span(), 1),
        }
        out[str(k)] = figures
        say(f"fanout {k}: {figures}")


async def force_open(lab: Lab, service_ids: list[int]) -> None:
    """Open the circuits now, as --cb-threshold failures would (their cooldown counts)."""
    await lab.store.pool.execute(
        """UPDATE circuit_state c SET state = 'open', failures = s.cb_threshold,
               opened_at = now(), updated_at = now()
           FROM services s WHERE s.id = c.service_id AND c.service_id = ANY($1::bigint[])""",
        service_ids,
    )


async def open_services(
    lab: Lab, n: int, spread: bool, dead: str
) -> tuple[Callable[[int], str], list[Service]]:
    """A healthy service and n with an open circuit (a dead URL, so a probe fails); the
    names of the events: together, each matches all of them; spread, the healthy one and
    one open service in turn."""
    mode = f"open{n}{'s' if spread else ''}"
    await lab.rule(f"{mode}.*", await lab.service(f"{mode}-ok"), endpoint=f"/{mode}")
    # Short names: an event's HubServices search attribute (every matched service's name)
    # is refused over 2,048 bytes; with 100 names of 18 characters it could not be emitted.
    down = {"base_url": dead, "cb_cooldown": lab.args.open_cooldown}
    opened = [await lab.service(f"o{n}{'s' if spread else ''}x{j}", **down) for j in range(n)]
    for j, service in enumerate(opened):
        await lab.rule(f"{mode}.s{j}" if spread else f"{mode}.all", service, endpoint="/never")
    await force_open(lab, [s.id for s in opened])
    if spread:
        return (lambda i: f"{mode}.s{i % n}"), opened
    return (lambda i: f"{mode}.all"), opened


async def open_curve(lab: Lab, sinks: Sinks, out: dict[str, Any]) -> None:
    """0, 10 and 100 open circuits next to one healthy service: its throughput and latency,
    what the held deliveries cost while they wait (CPU, worker RSS, two windows), then every
    workflow terminated. Each event goes to all of them, and (spread) to one open in turn."""
    args = lab.args
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    modes = [(n, False) for n in args.open_counts] + [(n, True) for n in args.open_counts if n]
    for n, spread in modes:
        name, path = f"open{n}{'s' if spread else ''}", f"/open{n}{'s' if spread else ''}"
        event, opened = await open_services(lab, n, spread, dead)
        count = args.big_events if n >= 100 and not spread else args.events
        async with point(lab, name, sinks.plain) as p:
            m = await p.measure(count, one_by_one(event, 1 / args.open_rate), at_paths(path))
            figures = {
                "open_services": n,
                "each_event_to": 1 + (1 if spread else n),
                "rate_per_s": args.open_rate,
                "healthy_per_s": round(count / m.span(), 1),
                **latency(m.latencies(path)),
                **m.figures(),
            }
            held = [await count_held(lab.temporal, s.name) for s in opened]
            figures["held_deliveries"] = sum(held)
            windows = 2 if n else 1
            figures["while_held"] = [await p.holding(args.hold_seconds) for _ in range(windows)]
            figures["cleanup"] = await p.terminate_all()
        out[f"{n}_spread" if spread else str(n)] = figures
        say(f"open {name}: {figures}")


def keyed_emitter(lab: Lab, store: Store, key: str) -> Callable[[str], Any]:
    """Emitters whose client seals payloads with key, as the worker that has it does."""

    @contextlib.asynccontextmanager
    async def emitter(queue: str) -> AsyncIterator[HubClient]:
        settings = Settings(
            database_url=lab.dsn, temporal_address=lab.address, task_queue=queue, secret_key=key
        )
        temporal = await connect_temporal(settings)
        async with HubClient.connect(settings, temporal=temporal, store=store) as hub:
            await hub.index.refresh(min_version=await store.rules.config_version())
            yield hub

    return emitter


async def signing_curve(lab: Lab, sinks: Sinks, out: dict[str, Any]) -> None:
    """The same service unsigned and HMAC-signed, in a burst. Both with a secret key (the
    signer needs it), which also turns the payload codec on: that cost is in both."""
    key = Fernet.generate_key().decode()
    async with Store.open(lab.dsn, box=SecretBox(key), max_size=4) as store:
        for mode, sign in (("off", None), ("hmac", "hmac")):
            name = f"sign-{mode}-{lab.run}"
            values = {"name": name, "base_url": sinks.hashing_url, "sign": sign}
            service = await store.services.create(ServiceIn.model_validate(values))
            await lab.rule(f"sign.{mode}", service, endpoint=f"/sign/{mode}")
            emitter = keyed_emitter(lab, store, key)
            async with point(lab, f"sign{mode}", sinks.hashing, emitter, HUB_SECRET_KEY=key) as p:
                m = await p.measure(
                    lab.args.events, burst(lab, f"sign.{mode}"), at_paths(f"/sign/{mode}")
                )
            mine = [r for r in m.records if r[1] == f"/sign/{mode}" and r[2] in m.emitted.sent]
            figures = {
                "signed_deliveries": sum(1 for r in mine if r[5]),
                "events_per_s": round(m.count / m.span(), 1),
                **m.figures(),
            }
            out[mode] = figures
            say(f"signing {mode}: {figures}")


CURVES: dict[str, Curve] = {
    "rules": rules_curve,
    "size": size_curve,
    "fanout": fanout_curve,
    "open": open_curve,
    "signing": signing_curve,
}
