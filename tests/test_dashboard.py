"""deploy/: the Grafana dashboard, Prometheus's alert rules and the README's copy of them,
checked against what the hub really exports.

No Prometheus or Grafana runs here (no Docker engine, and no promtool binary): the files are
parsed, each PromQL expression is tokenized into its vector selectors, and the last test
compares those with what a real ``python worker.py`` (HUB_METRICS_PORT) and the real API's
``GET /metrics`` serve after a delivery and a dead letter went through them.
"""

import asyncio
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client import generate_latest
from pydantic import SecretStr
from temporalio.client import Client

from hub.api import create_app
from hub.config import Settings
from hub.core.models import DispatchResult, Outcome
from hub.engine.schedules import ensure_schedules
from hub.runtime.embedded import free_port
from hub.runtime.metrics import HubMetrics
from hub.runtime.telemetry import BUCKET_OVERRIDES
from hub.store import Store
from tests.cli_runner import hub_env, spawn_worker
from tests.sink import Reply
from workflows.dispatch import DispatchEventWorkflow

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "hub.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
README = ROOT / "README.md"
API_TOKEN = "dashboard-TOKEN-0123456789"

# PromQL, as far as these files use it.
STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
RANGE = re.compile(r"\[[^\]]*\]")
SELECTOR = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)?\s*(\{[^}]*\})?")
MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*\x00(\d+)\x00")
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count"}
AGGREGATIONS |= {"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
"""Names that are not metrics: operators, and aggregations (``sum by (x) (...)`` puts the
grouping between the name and its parenthesis)."""
GRAFANA_INTERVALS = re.compile(r"\$__(?:rate_interval|interval|range)\b")
"""Grafana's own variables, substituted before a query reaches Prometheus."""
OPERATORS = {
    "MatchOp.Equal": "=",
    "MatchOp.NotEqual": "!=",
    "MatchOp.Re": "=~",
    "MatchOp.NotRe": "!~",
}
"""promql-parser's match operators (not hashable), by their names."""
HISTOGRAM_SUFFIXES = {"_bucket": ("histogram",), "_sum": ("histogram", "summary")}
HISTOGRAM_SUFFIXES["_count"] = HISTOGRAM_SUFFIXES["_sum"]
SCRAPE_LABELS = {"job", "instance"}
"""Labels Prometheus adds to every scraped series."""
SEVERITIES = {"info", "warning", "critical"}
DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")


@dataclass(frozen=True)
class Selector:
    """A vector selector: the metric name and its label matchers (label, operator, value)."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]


def unquote(literal: str) -> str:
    """A PromQL string literal's value: "..." and '...' with escapes, `...` raw."""
    if literal[0] == "`":
        return literal[1:-1]
    body = literal[1:-1]
    if literal[0] == "'":
        body = body.replace("\\'", "'").replace('"', '\\"')
    return str(json.loads(f'"{body}"'))


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of a PromQL expression, functions, keywords and numbers left out."""
    strings: list[str] = []

    def keep(match: re.Match[str]) -> str:
        strings.append(match.group(0))
        return f"\x00{len(strings) - 1}\x00"

    masked = RANGE.sub(" ", GROUPING.sub(" ", STRING.sub(keep, expr)))
    found = []
    for match in SELECTOR.finditer(masked):
        name, braces = match.group(1), match.group(2)
        if not name and not braces:
            continue
        if name and (
            name in KEYWORDS | AGGREGATIONS or masked[match.end(1) :].lstrip().startswith("(")
        ):
            continue
        assert name, f"a selector without a metric name in {expr!r}"
        matchers = tuple(
            (label, op, unquote(strings[int(index)]))
            for label, op, index in MATCHER.findall(braces or "")
        )
        found.append(Selector(name, matchers))
    return found


def parsed_selectors(expr: str) -> list[Selector]:
    """The vector selectors that promql-parser (a port of Prometheus's grammar) finds; a
    ValueError for an expression Prometheus would refuse."""
    found: list[Selector] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = tuple(
                (m.name, OPERATORS[str(m.op)], m.value)
                for m in node.matchers.matchers
                if m.name != "__name__"
            )
            found.append(Selector(node.name, matchers))

    promql_parser.walk(promql_parser.parse(GRAFANA_INTERVALS.sub("1m", expr)), visit)
    return found


def test_selectors_find_metrics_not_functions_labels_or_durations():
    expr = (
        'histogram_quantile(0.99, sum by (service, le) (rate(hub_x_seconds_bucket{service=~"$s",'
        'to="open"}[$__rate_interval]))) / max(up{job="hub-worker"} offset 30m) > bool 1e3'
    )
    assert selectors(expr) == [
        Selector("hub_x_seconds_bucket", (("service", "=~", "$s"), ("to", "=", "open"))),
        Selector("up", (("job", "=", "hub-worker"),)),
    ]
    assert selectors("absent(up{job='a}b'} == 1) or count(temporal_y{a=~`x|y`})") == [
        Selector("up", (("job", "=", "a}b"),)),
        Selector("temporal_y", (("a", "=~", "x|y"),)),
    ]


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard panel target and every alert rule."""
    found = []
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r}", target["expr"]))
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", rule["expr"]))
    return found


def variable_metrics(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(variable, metric) of each ``label_values(metric, label)`` template variable."""
    found = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", text)
        assert match, f"variable {variable['name']}: {text!r} is not label_values(metric, label)"
        found.append((variable["name"], match.group(1)))
    return found


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row, including those inside collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def queried_names() -> set[str]:
    return {s.name for _, expr in queries() for s in selectors(expr)}


def test_every_query_is_valid_promql_with_the_selectors_the_tokenizer_finds():
    """promtool is not installed; promql-parser checks the syntax instead, and agrees with
    the tokenizer that the live test below relies on."""
    for where, expr in queries():
        try:
            parsed = parsed_selectors(expr)
        except ValueError as error:
            pytest.fail(f"{where}: not valid PromQL ({error}): {expr}")
        assert sorted(parsed, key=repr) == sorted(selectors(expr), key=repr), where


# the dashboard


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_is_a_current_grafana_dashboard(dashboard):
    assert dashboard["uid"] == "temporal-hub"
    assert dashboard["schemaVersion"] >= 39, "older than Grafana 11's schema"
    assert "id" not in dashboard or dashboard["id"] is None, "an exported id breaks provisioning"
    all_panels = dashboard["panels"] + [
        p for row in dashboard["panels"] for p in row.get("panels", [])
    ]
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(dashboard):
        assert panel["targets"], f"{panel['title']} queries nothing"
        assert panel.get("description"), f"{panel['title']} says nothing about what it shows"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_dashboard_uses_the_datasource_variable_defaulting_to_the_provisioned_one(dashboard):
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    [provisioned] = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert variable["current"]["value"] == provisioned["uid"]
    expected = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    for panel in panels(dashboard):
        assert panel["datasource"] == expected, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", expected) == expected, panel["title"]
    for query_variable in dashboard["templating"]["list"]:
        if query_variable["type"] == "query":
            assert query_variable["datasource"] == expected, query_variable["name"]


def test_panels_fit_the_grid_without_overlapping(dashboard):
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_dashboard_shows_what_the_issue_asks_for(dashboard):
    """Throughput, outcome ratio, p50/p99 by service, attempts by status class, DLQ depth,
    open circuits, circuit transitions, Temporal's schedule-to-start latency and slots."""
    exprs = [t["expr"] for p in panels(dashboard) for t in p["targets"]]
    text = "\n".join(exprs)
    names = {s.name for expr in exprs for s in selectors(expr)}
    assert {
        "hub_deliveries_total",
        "hub_events_received_total",
        "hub_delivery_attempts_total",
        "hub_dlq_depth",
        "hub_circuit_transitions_total",
        "temporal_workflow_task_schedule_to_start_latency_bucket",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_worker_task_slots_used",
        "temporal_worker_task_slots_available",
    } <= names
    for quantile in ("0.5", "0.99"):
        assert re.search(
            rf"histogram_quantile\({quantile}, sum by \(service, le\) \(rate\("
            r"hub_delivery_attempt_duration_seconds_bucket",
            text,
        ), f"no p{quantile} attempt latency by service"
    assert any(
        ("outcome", "=", "dead_lettered") in s.matchers
        for expr in exprs
        for s in selectors(expr)
        if s.name == "hub_deliveries_total"
    ), "no outcome ratio"
    assert any(
        ("state", "=", "open") in s.matchers
        for expr in exprs
        for s in selectors(expr)
        if s.name == "hub_circuit_state"
    ), "no open circuits"
    assert "by (status_class)" in text


def test_database_gauges_are_never_summed_across_processes():
    """The API and every worker report the same database figures: max by (service) first."""
    for where, expr in queries():
        for name in ("hub_dlq_depth", "hub_circuit_state", "hub_circuit_failures"):
            for match in re.finditer(rf"(\w+)(?: by \([^)]*\))? \({name}\b", expr):
                assert match.group(1) == "max", f"{where}: {match.group(1)}({name}) in {expr}"


# the alert rules


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    assert len({group["name"] for group in groups}) == len(groups)
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_are_well_formed(rules):
    """What promtool would refuse, checked by hand: promtool is not installed here."""
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    allowed = {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
    for rule in rules:
        assert set(rule) <= allowed, f"{rule['alert']}: {set(rule) - allowed}"
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        assert selectors(rule["expr"]), f"{rule['alert']} selects nothing"
        if "for" in rule:
            assert DURATION.fullmatch(rule["for"]), f"{rule['alert']}: for {rule['for']!r}"
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_alert_rules_cover_what_an_operator_needs(rules):
    def selecting(name: str) -> list[str]:
        return [r["alert"] for r in rules if name in {s.name for s in selectors(r["expr"])}]

    assert selecting("hub_dlq_depth"), "no rule on a growing DLQ"
    assert any(
        ("state", "=", "open") in s.matchers
        for r in rules
        for s in selectors(r["expr"])
        if s.name == "hub_circuit_state"
    ), "no rule on an open circuit"
    assert selecting("temporal_workflow_task_schedule_to_start_latency_bucket")
    assert selecting("temporal_activity_schedule_to_start_latency_bucket")
    assert selecting("hub_store_up"), "no rule on a lost database"
    assert selecting("up"), "no rule on a process that stopped answering"
    assert selecting("hub_deliveries_total"), "no rule on the dead-letter ratio"


def test_rules_and_panels_name_only_jobs_prometheus_scrapes():
    jobs = {job["job_name"] for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}
    for where, expr in queries():
        for selector in selectors(expr):
            for label, op, value in selector.matchers:
                if label == "job":
                    assert op == "=" and value in jobs, f"{where}: job {value!r} is not scraped"


def test_readme_shows_the_same_alert_rules():
    """The README's example rules are copies of deploy/prometheus/alerts.yml's, and it names
    every rule there."""
    text = README.read_text()
    start = text.index("## Operating the hub")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    shown = [rule for block in blocks for rule in yaml.safe_load(block)]
    assert len(shown) >= 3, "the README shows no example alert rules"
    by_name = {
        rule["alert"]: rule
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    }
    for rule in shown:
        assert rule == by_name.get(rule["alert"]), f"README's {rule['alert']} differs"
    for name in by_name:
        assert f"`{name}`" in section, f"the README does not mention {name}"


# against the real endpoints


def exposition(text: str) -> tuple[dict[str, str], dict[str, list[dict[str, str]]]]:
    """Family name -> type (from ``# TYPE``), and sample name -> label sets."""
    families: dict[str, str] = {}
    samples: dict[str, list[dict[str, str]]] = defaultdict(list)
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            families[name] = kind
        elif line and not line.startswith("#"):
            match = re.match(r"([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s", line)
            assert match, f"not a sample line: {line!r}"
            labels = re.findall(r'([A-Za-z_]\w*)="((?:\\.|[^"\\])*)"', match.group(2) or "")
            samples[match.group(1)].append(dict(labels))
    return families, samples


def exported(name: str, families: dict[str, str]) -> bool:
    """Whether ``name`` is a series these families produce: a counter or gauge by its name,
    a histogram only through _bucket/_sum/_count (a summary through _sum/_count)."""
    if families.get(name) in ("counter", "gauge", "untyped"):
        return True
    for suffix, kinds in HISTOGRAM_SUFFIXES.items():
        if name.endswith(suffix) and families.get(name.removesuffix(suffix)) in kinds:
            return True
    return False


def test_exported_handles_histogram_suffixes():
    families = {"a_seconds": "histogram", "b_total": "counter", "c": "summary"}
    assert exported("a_seconds_bucket", families) and exported("a_seconds_count", families)
    assert not exported("a_seconds", families)
    assert exported("b_total", families) and not exported("b_total_count", families)
    assert exported("c_sum", families) and not exported("c_bucket", families)


async def dispatched(temporal: Client, workflow_id: str) -> DispatchResult:
    handle = temporal.get_workflow_handle_for(DispatchEventWorkflow.run, workflow_id)
    return await asyncio.wait_for(handle.result(), 60)


async def scrape_worker(port: int, process: asyncio.subprocess.Process) -> str:
    """The worker's endpoint, as ``curl localhost:$HUB_METRICS_PORT/metrics`` reads it."""
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(100):
            assert process.returncode is None, "the worker exited"
            try:
                response = await client.get(f"http://127.0.0.1:{port}/metrics")
            except httpx.TransportError:
                await asyncio.sleep(0.1)
                continue
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            return response.text
    raise AssertionError(f"nothing answered on the worker's metrics port {port}")


async def through_the_api(api: httpx.AsyncClient, temporal: Client, unique: str) -> None:
    """An event delivered, one dead-lettered (opening its one-failure circuit), and a replay
    of that dead letter, which the open circuit holds until its max hold expires."""
    outcomes = []
    for name in (f"{unique}.ok", f"{unique}.bad"):
        response = await api.post("/events", json={"name": name, "data": {"n": 1}})
        assert response.status_code == 202, response.text
        outcomes.append((await dispatched(temporal, response.json()["workflow_id"])).outcome)
    assert outcomes == [Outcome.DELIVERED, Outcome.DEAD_LETTERED]
    [row] = (await api.get("/dlq", params={"event": f"{unique}.bad"})).json()
    replay = await api.post(f"/dlq/{row['id']}/replay", params={"wait": True})
    assert replay.status_code == 200, replay.text


async def worker_and_api_metrics(
    settings: Settings, temporal: Client, store: Store, unique: str
) -> tuple[str, str]:
    """(worker exposition, API exposition) after ``through_the_api``, with a real
    ``python worker.py`` on its own task queue and HUB_METRICS_PORT."""
    queue = f"{settings.task_queue}-{unique}"
    port = free_port()
    env = hub_env(settings, task_queue=queue) | {"HUB_METRICS_PORT": str(port)}
    process = await spawn_worker(env, stderr=asyncio.subprocess.PIPE)
    own = settings.model_copy(update={"task_queue": queue, "api_token": SecretStr(API_TOKEN)})
    app = create_app(own, store=store, temporal=temporal)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://hub", headers=auth
            ) as api,
        ):
            await through_the_api(api, temporal, unique)
            worker_text = await scrape_worker(port, process)
            response = await api.get("/metrics")
            assert response.status_code == 200
    finally:
        if process.returncode is None:
            process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 40)
        # Schedules are per namespace: give them back to the session's worker.
        await ensure_schedules(temporal, settings)
    assert b"Traceback" not in stderr, stderr.decode()
    return worker_text, response.text


def counted_elsewhere(service: str) -> str:
    """The counters this run cannot reach (a database outage, AMQP response queues), from
    the calls the activities make, so their label names are checked too."""
    metrics = HubMetrics()
    metrics.wait(service)
    metrics.response(service, poisoned=False)
    metrics.response(service, poisoned=True)
    return generate_latest(metrics.registry).decode()


async def test_every_metric_the_dashboard_and_rules_query_is_exported(
    settings, temporal, store, sink, make_service, make_rule, unique
):
    """Every metric a panel, a variable or a rule names is in the worker's or the API's
    exposition, with the labels it filters on and, for an exact match, a value that occurs."""
    good = await make_service()
    # The replay of its dead letter is held by the open circuit, then expires (max_hold).
    bad = await make_service(max_attempts=1, cb_threshold=1, cb_cooldown=600, max_hold=1)
    sink.script("/broken", then=Reply(status=500))
    await make_rule(f"{unique}.ok", good, endpoint="/fine")
    await make_rule(f"{unique}.bad", bad, endpoint="/broken")
    worker_text, api_text = await worker_and_api_metrics(settings, temporal, store, unique)

    # What a new user's curl on the worker shows: deliveries and Temporal's own metrics.
    families, samples = exposition(worker_text)
    delivered = {"service": good.name, "transport": "http", "outcome": "delivered"}
    assert delivered in samples["hub_deliveries_total"]
    assert samples["temporal_workflow_task_schedule_to_start_latency_bucket"]
    for text in (api_text, counted_elsewhere(bad.name)):
        more_families, more_samples = exposition(text)
        families |= more_families
        for name, series in more_samples.items():
            samples[name].extend(series)

    dashboard = json.loads(DASHBOARD.read_text())
    named = [(f"variable {v}", Selector(m, ())) for v, m in variable_metrics(dashboard)]
    named += [(where, s) for where, expr in queries() for s in selectors(expr)]
    for where, selector in named:
        if selector.name == "up":  # Prometheus's own, one per target
            continue
        assert exported(selector.name, families), f"{where}: {selector.name} is not exported"
        series = samples.get(selector.name)
        assert series, f"{where}: {selector.name} has no sample"
        labels = set().union(*series) | SCRAPE_LABELS
        for label, op, value in selector.matchers:
            assert label in labels, f"{where}: {selector.name} has no label {label!r}"
            if op == "=" and label not in SCRAPE_LABELS:
                values = {s.get(label) for s in series}
                assert value in values, f"{where}: {selector.name}{{{label}={value!r}}}: {values}"


def test_queried_metrics_all_have_a_hub_or_temporal_name():
    """The live test above skips nothing but ``up``: no third-party exporter is assumed."""
    assert queried_names()
    for name in queried_names():
        assert name == "up" or name.startswith(("hub_", "temporal_")), name


def test_schedule_to_start_thresholds_sit_on_bucket_boundaries(rules):
    """histogram_quantile interpolates inside a bucket: a threshold on a boundary (of the
    buckets the hub sets for Temporal's latencies) is exact."""
    checked = 0
    for rule in rules:
        for selector in selectors(rule["expr"]):
            base = selector.name.removeprefix("temporal_").removesuffix("_bucket")
            if selector.name.startswith("temporal_") and base in BUCKET_OVERRIDES:
                threshold = float(rule["expr"].rsplit(">", 1)[1])
                assert threshold in BUCKET_OVERRIDES[base], f"{rule['alert']}: {threshold}"
                checked += 1
    assert checked >= 2
