"""docker-compose.yml, Dockerfile and .dockerignore checked against the code (no servers).

Nothing here runs Docker: the files are parsed and compared with what the hub really reads
(``hub.config.Settings``), the commands it really has (the Typer app that the ``hub`` console
script runs) and the packages pyproject.toml really installs.
"""

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import setuptools
import typer
import yaml

from hub.api import create_app
from hub.config import Settings
from hub.engine.worker import GRACEFUL_SHUTDOWN
from hub.main import app
from hub.runtime.embedded import DYNAMIC_CONFIG as DEV_DYNAMIC_CONFIG

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
TEMPORAL_DYNAMIC_CONFIG = ROOT / "deploy" / "temporal" / "dynamicconfig.yaml"

EXPECTED_SERVICES = {
    "temporal-db",
    "temporal",
    "temporal-ui",
    "hub-db",
    "rabbitmq",
    "migrate",
    "worker",
    "api",
}
HUB_SERVICES = ("migrate", "worker", "api")
OBSERVABILITY = {"prometheus", "grafana"}
# What the worker adds to the shared environment: its metrics endpoint, reachable from the
# observability profile's Prometheus (the default bind is loopback).
WORKER_METRICS_ENV = {"HUB_METRICS_PORT": "9464", "HUB_METRICS_HOST": "0.0.0.0"}
WITHOUT_HEALTHCHECK = {"migrate", "worker", "temporal-ui"}
SECRETS = ("HUB_API_TOKEN", "HUB_SECRET_KEY")
HUB_VARIABLE = re.compile(r"\bHUB_[A-Z0-9_]+\b")


# helpers


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def allowed_hub_variables() -> set[str]:
    """``HUB_`` + every Settings field, as pydantic-settings reads them from the environment."""
    prefix = Settings.model_config["env_prefix"]
    assert prefix == "HUB_"
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whichever Compose syntax (mapping or KEY=VALUE list) it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_args(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def parse_hub_command(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``hub SUBCOMMAND [options]`` with the real CLI (nothing runs); subcommand, params."""
    assert args and args[0] == "hub", f"not a hub command: {args}"
    assert len(args) > 1, "a bare `hub` only prints help"
    name, rest = args[1], args[2:]
    group = hub_commands()
    assert name in group.commands, f"`hub {name}` is not a command of hub.main.app"
    subcommand = group.commands[name]
    parent = group.context_class(group, info_name="hub")
    try:
        ctx = subcommand.make_context(name, list(rest), parent=parent)
    except Exception as error:  # click's (or Typer's vendored click's) usage errors
        format_message = getattr(error, "format_message", None)
        message = format_message() if format_message else str(error)
        pytest.fail(f"`{shlex.join(args)}` does not parse: {message}")
    return name, ctx.params


def hub_commands() -> Any:
    """The click group behind ``hub`` (Typer may vendor click, so no isinstance check)."""
    group = typer.main.get_command(app)
    assert isinstance(getattr(group, "commands", None), dict), "hub.main.app has no subcommands"
    return group


def option_names(subcommand: str) -> set[str]:
    group = hub_commands()
    return {opt for param in group.commands[subcommand].params for opt in param.opts}


def published_ports(service: dict[str, Any]) -> list[tuple[str | None, int]]:
    """(host port or None, container port) for each entry of ``ports``, short or long syntax."""
    result: list[tuple[str | None, int]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            result.append((None if published is None else str(published), int(entry["target"])))
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.split(":")
        target = int(parts[-1])
        host = parts[-2] if len(parts) >= 2 else None
        result.append((host, target))
    return result


def mounts(service: dict[str, Any]) -> dict[str, str | None]:
    """Container path -> source (volume name or host path) of each entry of ``volumes``."""
    result: dict[str, str | None] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            result[volume["target"]] = volume.get("source")
            continue
        parts = str(volume).split(":")
        if len(parts) == 1:  # anonymous volume
            result[parts[0]] = None
        else:
            result[parts[1]] = parts[0]
    return result


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependency -> condition (a plain list means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def duration(text: str) -> timedelta:
    """A Compose duration such as ``30s``, ``1m30s`` or ``500ms``."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return timedelta(seconds=sum(float(n) * units[u] for n, u in parts))


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT arguments as a list (JSON exec form, or shell form split)."""
    args = args.strip()
    if args.startswith("["):
        value = json.loads(args)
        assert all(isinstance(a, str) for a in value)
        return value
    return shlex.split(args)


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in instructions:
        if keyword != "ENV":
            continue
        tokens = shlex.split(args)
        if tokens and "=" not in tokens[0]:  # legacy form: ENV KEY value
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            key, _, value = token.partition("=")
            env[key] = value
    return env


def copied_sources(instructions: list[tuple[str, str]]) -> set[str]:
    """Build-context paths that COPY/ADD take (normalised: no ./ and no trailing /)."""
    sources: set[str] = set()
    for keyword, args in instructions:
        if keyword not in ("COPY", "ADD"):
            continue
        tokens = [t for t in shlex.split(args) if not t.startswith("--")]
        assert len(tokens) >= 2, f"{keyword} {args}"
        for source in tokens[:-1]:
            sources.add(source.removeprefix("./").rstrip("/") or ".")
    return sources


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops ``path`` (or a directory above it) from the build context."""
    result = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        globs = [pattern]
        if pattern.startswith("**/"):
            globs.append(pattern.removeprefix("**/"))
        if any(fnmatch.fnmatchcase(c, g) for c in candidates for g in globs):
            result = not negate
    return result


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# the services


def test_expected_services_exist(services):
    assert set(services) >= EXPECTED_SERVICES, EXPECTED_SERVICES - set(services)


def test_no_obsolete_version_key(compose):
    assert "version" not in compose


def test_every_service_but_the_one_shots_and_the_ui_has_a_healthcheck(services):
    for name, service in services.items():
        if name in WITHOUT_HEALTHCHECK:
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} disables its healthcheck"
        test = check.get("test")
        assert test and test not in (["NONE"], "NONE"), f"{name}: healthcheck without a test"
        if isinstance(test, list):
            assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test[0]!r}"
            assert len(test) > 1, f"{name}: empty healthcheck command"


def test_databases_and_rabbitmq_have_the_expected_healthchecks(services):
    def text(name: str) -> str:
        test = services[name]["healthcheck"]["test"]
        return test if isinstance(test, str) else " ".join(test)

    assert "pg_isready" in text("temporal-db")
    assert "pg_isready" in text("hub-db")
    assert "rabbitmq-diagnostics -q ping" in text("rabbitmq")
    assert "cluster health" in text("temporal")
    assert "temporal:7233" in text("temporal")


def test_the_worker_can_be_scaled(services):
    worker = services["worker"]
    assert "container_name" not in worker, "--scale needs distinct container names"
    for host, _ in published_ports(worker):
        assert host is None, f"worker publishes host port {host}: a second replica cannot bind"


def test_no_hub_service_has_a_fixed_container_name(services):
    for name in HUB_SERVICES:
        assert "container_name" not in services[name], name


def test_api_publishes_8000(services):
    assert ("8000", 8000) in published_ports(services["api"])


def test_ui_and_rabbitmq_publish_their_ports(services):
    assert ("8080", 8080) in published_ports(services["temporal-ui"])
    rabbit = published_ports(services["rabbitmq"])
    assert ("5672", 5672) in rabbit
    assert ("15672", 15672) in rabbit


def test_images_are_pinned(services):
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"{name} has neither image nor build"
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3")
    assert "management" in services["rabbitmq"]["image"]
    for name in ("temporal-db", "hub-db"):
        assert services[name]["image"].startswith("postgres:"), name


def test_hub_services_build_this_repository(services):
    for name in HUB_SERVICES:
        build = services[name].get("build")
        assert build is not None, f"{name} does not build the hub image"
        if isinstance(build, str):
            build = {"context": build}
        context = build.get("context", ".")
        dockerfile = build.get("dockerfile", "Dockerfile")
        assert (ROOT / context).resolve() == ROOT, f"{name}: build context {context!r}"
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE, name


def test_named_volumes_for_the_databases_and_rabbitmq(compose, services):
    declared = set(compose.get("volumes") or {})
    data_paths = {
        "temporal-db": "/var/lib/postgresql/data",
        "hub-db": "/var/lib/postgresql/data",
        "rabbitmq": "/var/lib/rabbitmq",
    }
    sources = {}
    for name, path in data_paths.items():
        mounted = mounts(services[name])
        assert path in mounted, f"{name} keeps no volume at {path}"
        assert mounted[path] in declared, f"{name}: {mounted[path]!r} is not a named volume"
        sources[name] = mounted[path]
    assert len(set(sources.values())) == len(sources), f"volumes shared: {sources}"


def test_every_named_volume_used_is_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for source in mounts(service).values():
            if source and not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{name} uses undeclared volume {source!r}"


# dependencies


def test_depends_on_names_existing_services_with_valid_conditions(services):
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown service {dependency!r}"
            assert condition in conditions, f"{name} -> {dependency}: {condition!r}"
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), (
                    f"{name} waits for {dependency} to be healthy, but it has no healthcheck"
                )
            if condition == "service_completed_successfully":
                restart = str(services[dependency].get("restart", "no"))
                assert restart == "no", f"{dependency} must run once to complete"


def test_startup_order(services):
    assert depends_on(services["temporal"]) == {"temporal-db": "service_healthy"}
    assert depends_on(services["migrate"]) == {"hub-db": "service_healthy"}
    expected = {
        "temporal": "service_healthy",
        "hub-db": "service_healthy",
        "rabbitmq": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert depends_on(services["worker"]) == expected
    assert depends_on(services["api"]) == expected
    assert "temporal" in depends_on(services["temporal-ui"])


def test_migrate_runs_once(services):
    assert str(services["migrate"].get("restart")) == "no"
    assert "deploy" not in services["migrate"]


def test_the_worker_gets_time_for_its_graceful_shutdown(services):
    grace = duration(str(services["worker"].get("stop_grace_period", "10s")))
    assert grace > GRACEFUL_SHUTDOWN, f"SIGKILL after {grace}, shutdown takes {GRACEFUL_SHUTDOWN}"


# environment


def test_every_hub_variable_is_one_the_hub_reads(compose, services):
    allowed = allowed_hub_variables()
    used: set[str] = set()
    for service in services.values():
        used |= {key for key in environment(service) if key.startswith("HUB_")}
    for key, value in compose.items():
        if key.startswith("x-") and isinstance(value, dict):
            used |= {k for k in value if isinstance(k, str) and k.startswith("HUB_")}
    # anything spelled HUB_... anywhere in the file (comments, interpolations) too
    used |= set(HUB_VARIABLE.findall(COMPOSE_FILE.read_text()))
    assert used, "the compose file sets no HUB_ variable"
    assert used <= allowed, f"not read by hub.config.Settings: {sorted(used - allowed)}"


def test_hub_services_share_one_environment(compose, services):
    shared = compose["x-hub-env"]
    required = {
        "HUB_DATABASE_URL",
        "HUB_TEMPORAL_ADDRESS",
        "HUB_TEMPORAL_NAMESPACE",
        "HUB_TASK_QUEUE",
        *SECRETS,
    }
    assert required <= set(shared), required - set(shared)
    expected = {k: str(v) for k, v in shared.items()}
    for name in HUB_SERVICES:
        extra = WORKER_METRICS_ENV if name == "worker" else {}
        assert environment(services[name]) == expected | extra, name


def test_the_worker_serves_its_metrics_inside_the_network_only(services):
    """Prometheus scrapes each replica over the compose network; no host port, so
    ``--scale worker=N`` still works (test_the_worker_can_be_scaled)."""
    worker = services["worker"]
    env = environment(worker)
    assert int(env["HUB_METRICS_PORT"]) > 0
    assert env["HUB_METRICS_HOST"] == "0.0.0.0"
    assert env["HUB_METRICS_PORT"] in [str(port) for port in worker.get("expose") or []]
    assert not published_ports(worker)


def test_secrets_come_from_the_host_and_are_required(compose):
    shared = compose["x-hub-env"]
    for key in SECRETS:
        assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", shared[key]), (
            f"{key} must be ${{{key}:?...}}: required from the host, never written here"
        )


def test_database_url_points_at_hub_db(compose, services):
    url = urlsplit(compose["x-hub-env"]["HUB_DATABASE_URL"])
    assert url.scheme in ("postgresql", "postgres")
    assert url.hostname == "hub-db", f"HUB_DATABASE_URL points at {url.hostname}, not hub-db"
    assert (url.port or 5432) == 5432
    db = environment(services["hub-db"])
    assert url.username == db["POSTGRES_USER"]
    assert url.password == db["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == db.get("POSTGRES_DB", db["POSTGRES_USER"])


def test_temporal_address_points_at_the_temporal_service(compose, services):
    host, _, port = compose["x-hub-env"]["HUB_TEMPORAL_ADDRESS"].rpartition(":")
    assert host == "temporal"
    assert port == "7233"
    assert 7233 in [target for _, target in published_ports(services["temporal"])]
    ui = environment(services["temporal-ui"])
    assert ui["TEMPORAL_ADDRESS"] == compose["x-hub-env"]["HUB_TEMPORAL_ADDRESS"]


def test_the_hub_namespace_is_the_one_auto_setup_creates(compose, services):
    temporal = environment(services["temporal"])
    namespace = compose["x-hub-env"]["HUB_TEMPORAL_NAMESPACE"]
    assert temporal.get("DEFAULT_NAMESPACE", "default") == namespace


def test_temporal_uses_its_own_database(services):
    temporal = environment(services["temporal"])
    db = environment(services["temporal-db"])
    assert temporal["DB"] == "postgres12"
    assert temporal["POSTGRES_SEEDS"] == "temporal-db"
    assert temporal["DB_PORT"] == "5432"
    assert temporal["POSTGRES_USER"] == db["POSTGRES_USER"]
    assert temporal["POSTGRES_PWD"] == db["POSTGRES_PASSWORD"]
    hub_db = environment(services["hub-db"])
    assert db.get("POSTGRES_DB", db["POSTGRES_USER"]) != hub_db.get("POSTGRES_DB")


def dynamic_config() -> dict[str, Any]:
    return yaml.safe_load(TEMPORAL_DYNAMIC_CONFIG.read_text())


def test_temporal_reads_the_hub_dynamic_config_file(services):
    temporal = services["temporal"]
    path = environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    assert path.startswith("/"), "the image's working directory is not ours to rely on"
    mounted = [str(v) for v in temporal["volumes"] if str(v).split(":")[1] == path]
    assert mounted == [f"./{TEMPORAL_DYNAMIC_CONFIG.relative_to(ROOT)}:{path}:ro"]
    assert mounts(temporal)[path] == "./deploy/temporal/dynamicconfig.yaml"


def test_the_temporal_server_is_one_with_fairness(services):
    """Task-queue fairness came with server 1.29; the auto-setup image's tag is its version."""
    tag = services["temporal"]["image"].rpartition(":")[2]
    assert tuple(int(part) for part in tag.split(".")[:2]) >= (1, 29)


def test_dynamic_config_turns_priority_and_fairness_on():
    config = dynamic_config()
    for key, entries in config.items():
        assert isinstance(entries, list) and entries, f"{key}: a list of values"
        for entry in entries:
            assert set(entry) <= {"value", "constraints"}, f"{key}: {entry}"
    assert config["matching.useNewMatcher"] == [{"value": True}]
    assert config["matching.enableFairness"] == [{"value": True}]
    assert config["matching.enableMigration"] == [{"value": True}]
    assert config["matching.numTaskqueueReadPartitions"] == [{"value": 1}]
    assert config["matching.numTaskqueueWritePartitions"] == [{"value": 1}]


def test_the_dev_server_sets_what_compose_sets():
    """``hub dev`` and the tests run the server the way compose does."""
    config = dynamic_config()
    assert DEV_DYNAMIC_CONFIG
    for setting in DEV_DYNAMIC_CONFIG:
        key, _, value = setting.partition("=")
        assert config[key] == [{"value": yaml.safe_load(value)}], setting


# commands


def test_the_hub_console_script_runs_the_app_checked_here():
    """``hub`` (the image runs it) is pyproject's script hub.main:main, running hub.main.app."""
    assert pyproject()["project"]["scripts"]["hub"] == "hub.main:main"
    run = subprocess.run(
        [sys.executable, "-c", "from hub.main import main; main()", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stderr
    listed = {line.strip("│ ").split(" ")[0] for line in run.stdout.splitlines()}
    assert set(hub_commands().commands) <= listed, run.stdout


def test_hub_service_commands_are_real_hub_commands(services):
    expected = {"migrate": "migrate", "worker": "worker", "api": "api"}
    for name, subcommand in expected.items():
        parsed, _ = parse_hub_command(command_args(services[name]))
        assert parsed == subcommand, f"{name} runs `hub {parsed}`"


def test_api_listens_on_all_interfaces_at_the_published_port(services):
    assert {"--host", "--port"} <= option_names("api")
    _, params = parse_hub_command(command_args(services["api"]))
    assert params["host"] == "0.0.0.0"
    assert params["port"] == 8000
    assert params["insecure_no_auth"] is False
    assert (str(params["port"]), params["port"]) in published_ports(services["api"])


def test_api_healthcheck_requests_a_route_the_api_serves(services):
    test = services["api"]["healthcheck"]["test"]
    text = test if isinstance(test, str) else " ".join(test)
    match = re.search(r"http://(localhost|127\.0\.0\.1):(\d+)(/[\w/]*)", text)
    assert match, f"the api healthcheck requests no local URL: {text}"
    assert int(match.group(2)) == 8000
    assert "curl" not in text and "wget" not in text, "python:*-slim has neither"
    assert "urllib" in text
    paths = create_app(Settings(api_token="compose-check-token-0123")).openapi()["paths"]
    assert "get" in paths.get(match.group(3), {}), f"the API serves no GET {match.group(3)}"


# the image


def test_dockerfile_base_is_a_slim_python_the_project_supports(dockerfile):
    bases = [args.split()[0] for keyword, args in dockerfile if keyword == "FROM"]
    assert bases, "no FROM"
    match = re.fullmatch(r"python:3\.(\d+)-slim(-[a-z]+)?", bases[-1])
    assert match, f"final stage is {bases[-1]!r}"
    minimum = re.search(r">=\s*3\.(\d+)", pyproject()["project"]["requires-python"])
    assert minimum and int(match.group(1)) >= int(minimum.group(1))


def test_dockerfile_default_command_is_the_worker(dockerfile):
    entrypoint = [exec_form(a) for k, a in dockerfile if k == "ENTRYPOINT"]
    cmd = [exec_form(a) for k, a in dockerfile if k == "CMD"]
    assert cmd, "no CMD"
    args = (entrypoint[-1] if entrypoint else []) + cmd[-1]
    parsed, _ = parse_hub_command(args)
    assert parsed == "worker"


def test_dockerfile_runs_as_a_non_root_user(dockerfile):
    users = [args.split(":")[0] for keyword, args in dockerfile if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1] not in ("root", "0")


def test_dockerfile_environment(dockerfile):
    env = dockerfile_env(dockerfile)
    assert env.get("PYTHONUNBUFFERED") == "1"
    hub_env = {key for key in env if key.startswith("HUB_")}
    assert hub_env <= allowed_hub_variables(), hub_env - allowed_hub_variables()


def test_dockerfile_bakes_no_secret(dockerfile):
    for keyword, args in dockerfile:
        if keyword in ("ENV", "ARG", "LABEL"):
            for secret in SECRETS:
                assert secret not in args, f"{keyword} {args}"
    sources = copied_sources(dockerfile)
    assert "." not in sources, "COPY . copies the whole context (secrets included)"
    assert not any(s == ".hub" or s.startswith(".hub/") or s.endswith(".env") for s in sources)


def test_dockerfile_installs_the_project_without_dev_extra(dockerfile):
    installs = [args for keyword, args in dockerfile if keyword == "RUN" and "pip install" in args]
    assert installs, "the Dockerfile installs nothing with pip"
    project_installs = [
        a for a in installs if re.search(r"pip install(\s+-[-\w]+(=\S+)?)*\s+\.(\s|$|&)", a)
    ]
    assert project_installs, f"no `pip install .` among {installs}"
    for args in installs:
        assert "[dev]" not in args and "-e " not in args, args


def test_dockerfile_copies_every_installed_package(dockerfile):
    config = pyproject()
    setuptools_config = config["tool"]["setuptools"]
    include = setuptools_config["packages"]["find"]["include"]
    packages = setuptools.find_packages(where=str(ROOT), include=include)
    top_level = {package.split(".")[0] for package in packages}
    assert {"hub", "workflows", "activities"} <= top_level
    modules = {f"{module}.py" for module in setuptools_config.get("py-modules", [])}
    assert "worker.py" in modules
    sources = copied_sources(dockerfile)
    needed = {"pyproject.toml", *top_level, *modules}
    readme = config["project"].get("readme")
    if isinstance(readme, str):
        needed.add(readme)
    missing = needed - sources
    assert not missing, f"the Dockerfile does not COPY {sorted(missing)}"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"


def test_dockerignore_keeps_secrets_and_local_state_out(dockerfile):
    patterns = dockerignore_patterns()
    for path in (".venv", ".hub", ".hub/secret.key", ".git", ".env", "hub/__pycache__/x.pyc"):
        assert ignored(path, patterns), f".dockerignore lets {path} into the build context"


def test_dockerignore_keeps_what_the_dockerfile_copies(dockerfile):
    patterns = dockerignore_patterns()
    for source in copied_sources(dockerfile):
        assert not ignored(source, patterns), f"COPY {source}, but .dockerignore drops it"
    for package in ("hub", "workflows", "activities"):
        for path in (ROOT / package).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            relative = path.relative_to(ROOT).as_posix()
            assert not ignored(relative, patterns), f".dockerignore drops {relative}"


# observability (the profile's own files are checked further in tests/test_dashboard.py)


def test_observability_runs_only_with_its_profile(services):
    """``docker compose up`` runs the hub alone; ``--profile observability`` adds these two."""
    for name, service in services.items():
        profiles = service.get("profiles") or []
        if name in OBSERVABILITY:
            assert profiles == ["observability"], f"{name}: profiles {profiles}"
        else:
            assert not profiles, f"{name} runs only with the profiles {profiles}"


def test_observability_mounts_files_of_this_repository(compose, services):
    declared = set(compose.get("volumes") or {})
    for name in OBSERVABILITY:
        sources = mounts(services[name])
        assert sources, f"{name} mounts nothing"
        for target, source in sources.items():
            assert source, f"{name}: anonymous volume at {target}"
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}: no such path"
            else:
                assert source in declared, f"{name}: {source!r} is not a named volume"
        assert any(s in declared for s in sources.values()), f"{name} keeps no data volume"


def test_observability_ports_are_published_on_loopback_only(services):
    """Prometheus has no login and shows every service's figures; Grafana starts as admin."""
    expected = {"prometheus": 9090, "grafana": 3000}
    for name, port in expected.items():
        entries = [str(entry) for entry in services[name].get("ports") or []]
        assert entries == [f"127.0.0.1:{port}:{port}"], f"{name}: {entries}"


def test_prometheus_is_given_its_configuration_and_rules(services):
    prometheus = services["prometheus"]
    args = command_args(prometheus)
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in args if "=" in arg)
    sources = mounts(prometheus)
    config = flags["config.file"]
    assert sources.get(config) == "./deploy/prometheus/prometheus.yml", sources
    assert flags["storage.tsdb.path"] in sources, "the TSDB is not on a volume"
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    for rule_file in scrape["rule_files"]:
        assert sources.get(rule_file) == "./deploy/prometheus/alerts.yml", rule_file


def test_prometheus_scrapes_the_compose_services_where_they_listen(services):
    """Each target is a compose service on the port it really listens on: the API's --port,
    and each worker replica's HUB_METRICS_PORT (found by DNS, one address per replica)."""
    _, api = parse_hub_command(command_args(services["api"]))
    listens = {
        "api": int(api["port"]),
        "worker": int(environment(services["worker"])["HUB_METRICS_PORT"]),
    }
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert set(jobs) == {"hub-api", "hub-worker"}
    found: dict[str, int] = {}
    for job in jobs.values():
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs") or []:
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                found[host] = int(port)
        for dns in job.get("dns_sd_configs") or []:
            assert dns.get("type", "SRV") == "A", "compose's DNS answers A records, not SRV"
            for host in dns["names"]:
                found[host] = int(dns["port"])
    assert found == listens
    assert jobs["hub-worker"].get("dns_sd_configs"), "a static target sees one worker replica"


def test_prometheus_reads_the_api_token_from_a_compose_secret(compose, services):
    """/metrics needs the token; it reaches Prometheus as a secret file made from the host's
    HUB_API_TOKEN, so it is neither in deploy/ nor public on the API's published port."""
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [api_job] = [job for job in scrape["scrape_configs"] if job["job_name"] == "hub-api"]
    authorization = api_job["authorization"]
    assert authorization.get("type", "Bearer") == "Bearer"
    assert "credentials" not in authorization
    granted = {}
    for secret in services["prometheus"]["secrets"]:
        spec = secret if isinstance(secret, dict) else {"source": secret}
        target = spec.get("target", spec["source"])
        granted[target if target.startswith("/") else f"/run/secrets/{target}"] = spec["source"]
    source = granted[authorization["credentials_file"]]
    assert compose["secrets"][source] == {"environment": "HUB_API_TOKEN"}
    for name in HUB_SERVICES:
        assert "HUB_METRICS_PUBLIC" not in environment(services[name]), name


def test_grafana_is_provisioned_with_the_dashboard(services):
    grafana = services["grafana"]
    sources = mounts(grafana)
    assert sources["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    [dashboard] = [target for target, src in sources.items() if src == "./deploy/grafana/hub.json"]
    provisioning = ROOT / "deploy/grafana/provisioning"
    [provider] = yaml.safe_load((provisioning / "dashboards/hub.yml").read_text())["providers"]
    assert provider["type"] == "file"
    assert Path(dashboard).parent == Path(provider["options"]["path"])
    assert environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == dashboard
    [source] = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    url = urlsplit(source["url"])
    assert (source["type"], url.hostname, url.port) == ("prometheus", "prometheus", 9090)
    assert "--web.listen-address" not in " ".join(command_args(services["prometheus"]))
    assert depends_on(grafana) == {"prometheus": "service_healthy"}
