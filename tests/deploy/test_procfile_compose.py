"""The deployment files agree with each other: Procfile, docker/compose.yaml, the Dockerfiles,
scripts/run-local.sh and the Colab notebook. Text and structure only: nothing is built or run
here (tests/deploy/test_honcho.py runs the Procfile for real)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from honcho.environ import parse_procfile

from emotions.constants import INFERENCE_QUEUE, RESULTS_QUEUE

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
PROCESSES = {"redis", "worker", "results", "producer", "flower"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_DEFAULT = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}")


def procfile() -> dict[str, str]:
    """The Procfile as honcho itself parses it."""
    return dict(parse_procfile((ROOT / "Procfile").read_text()).processes)


def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())  # type: ignore[no-any-return]


def argv(command: str | list[str]) -> list[str]:
    """A command as the program receives it: words, without ``exec`` and ``NAME=value``
    prefixes (those set the environment, which compose does in ``environment:``)."""
    words = list(command) if isinstance(command, list) else shlex.split(command)
    while words and (words[0] == "exec" or _ASSIGNMENT.match(words[0])):
        words.pop(0)
    return words


def with_defaults(words: list[str]) -> list[str]:
    """``${NAME:-default}`` replaced by its default, as with an empty environment."""
    return [_DEFAULT.sub(r"\1", w) for w in words]


def option(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def dockerfile_instructions(name: str) -> list[str]:
    """Instructions of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DOCKER / name).read_text())
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


# --- Procfile ----------------------------------------------------------------------------------


def test_procfile_has_every_process_with_the_documented_commands() -> None:
    procs = procfile()
    assert set(procs) == PROCESSES
    worker, results = argv(procs["worker"]), argv(procs["results"])
    assert worker[:5] == ["celery", "-A", "worker", "worker", "-c"] and option(worker, "-c") == "1"
    assert option(worker, "-Q") == INFERENCE_QUEUE
    assert option(results, "-Q") == RESULTS_QUEUE and option(results, "-c") == "1"
    # Distinct node names: two workers with one name on one host confuse Flower and inspect.
    assert option(worker, "-n") != option(results, "-n")
    assert argv(procs["producer"]) == ["python", "-m", "producer"]
    assert argv(procs["flower"]) == ["celery", "-A", "worker", "flower"]
    # Flower on a laptop listens on the loopback only unless told otherwise.
    assert "FLOWER_ADDRESS=${FLOWER_ADDRESS:-127.0.0.1}" in procs["flower"]


def test_procfile_redis_persists_and_never_evicts() -> None:
    redis = procfile()["redis"]
    assert "--appendonly yes" in redis
    assert "--maxmemory-policy noeviction" in redis
    assert "--dir data/redis" in redis and "mkdir -p data/redis" in redis
    assert "--port ${REDIS_PORT:-6379}" in redis
    assert "--bind 127.0.0.1" in redis


def test_procfile_stops_in_order() -> None:
    """honcho SIGTERMs all at once: Redis waits for its clients (tests/deploy/test_honcho_stop.py
    runs it), and every other process is the program itself, not a shell that dies first."""
    procs = procfile()
    script = ROOT / "scripts" / "redis-stops-last.sh"
    assert argv(procs["redis"].split("&&")[-1])[0] == "scripts/redis-stops-last.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    for name in PROCESSES - {"redis"}:
        words = shlex.split(procs[name])
        while _ASSIGNMENT.match(words[0]):
            words.pop(0)
        assert words[0] == "exec", name


def test_flower_shows_chunk_arguments_and_keeps_its_api_closed() -> None:
    columns = {}
    for source, text in (
        ("Procfile", procfile()["flower"]),
        ("compose", compose()["services"]["flower"]["environment"]["FLOWER_TASKS_COLUMNS"]),
    ):
        found = re.search(r"\$\{FLOWER_TASKS_COLUMNS:-([^}]*)\}", text)
        assert found, source
        columns[source] = found.group(1).split(",")
    assert columns["Procfile"] == columns["compose"]
    flower_tasks = pytest.importorskip("flower.views.tasks")
    assert "args" in columns["Procfile"]
    assert set(columns["Procfile"]) <= set(flower_tasks.TASK_COLUMNS)  # Flower drops the rest
    # Without credentials Flower's API stays closed (it would also drop its cross-site checks).
    assert "FLOWER_UNAUTHENTICATED_API" not in (ROOT / "Procfile").read_text()
    assert "FLOWER_UNAUTHENTICATED_API" not in (DOCKER / "compose.yaml").read_text()


# --- compose -----------------------------------------------------------------------------------


def test_compose_has_every_service_and_a_second_gpu_worker_example() -> None:
    services = compose()["services"]
    assert set(services) >= PROCESSES
    assert services["worker-gpu1"]["profiles"] == ["multi-gpu"]
    for name in PROCESSES - {"redis"}:
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


@pytest.mark.parametrize("name", ["worker", "results", "producer", "flower"])
def test_compose_command_is_the_procfile_command(name: str) -> None:
    service = compose()["services"][name]
    assert argv(service["command"]) == argv(procfile()[name])


def seconds(duration: str) -> float:
    """A compose duration such as ``1m30s`` or ``30s``, in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_stops_producer_first_and_redis_last() -> None:
    """Compose stops in reverse dependency order, and SIGKILLs after ``stop_grace_period``."""
    services = compose()["services"]
    assert {"worker", "results", "redis"} <= set(services["producer"]["depends_on"])
    for name in ("worker", "worker-gpu1", "results", "flower"):
        assert "redis" in services[name]["depends_on"], name
    grace = float(
        with_defaults([services["worker"]["environment"]["EMOTIONS_STOP_GRACE_SECONDS"]])[0]
    )
    for name in ("worker", "worker-gpu1", "results"):
        # The chunk in hand gets its grace, then a hand-back and Celery's stop (a few seconds).
        assert seconds(services[name]["stop_grace_period"]) >= grace + 15, name
    assert seconds(services["redis"]["stop_grace_period"]) >= 10


def test_second_gpu_worker_differs_only_in_node_name_and_pinned_gpu() -> None:
    services = compose()["services"]
    first, second = argv(services["worker"]["command"]), argv(services["worker-gpu1"]["command"])
    i = first.index("-n")
    assert first[:i] == second[:i] and first[i + 2 :] == second[i + 2 :]
    assert first[i + 1] != second[i + 1]
    env = services["worker-gpu1"]["environment"]
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in services["worker"]["environment"]
    # Pinning by CUDA_VISIBLE_DEVICES=1 only works if the container sees more than one GPU.
    [device] = services["worker-gpu1"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["count"] == "all" and "device_ids" not in device


def test_compose_redis_persists_to_a_volume_and_never_evicts() -> None:
    spec = compose()
    redis = spec["services"]["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    directory = re.search(r"--dir (\S+)", command)
    assert directory, command
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == directory.group(1)
    assert volume in spec["volumes"]
    assert "--requirepass" in command and "REDIS_PASSWORD" in redis["environment"]
    assert "ports" not in redis  # not published by default


def test_gpu_worker_reserves_an_nvidia_gpu() -> None:
    worker = compose()["services"]["worker"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["count"] == 1
    assert "gpu" in device["capabilities"]
    assert worker["environment"]["EMOTIONS_DEVICE"] == "cuda"
    assert worker["build"]["dockerfile"] == "docker/worker.Dockerfile"


def test_slim_services_use_the_producer_image_and_share_the_data_volume() -> None:
    spec = compose()
    services = spec["services"]
    for name in ("results", "producer", "flower"):
        assert services[name]["build"]["dockerfile"] == "docker/producer.Dockerfile", name
        assert "deploy" not in services[name], name  # no GPU
    mounts = {name: services[name]["volumes"] for name in ("results", "producer")}
    assert mounts["results"] == mounts["producer"]
    volume, _, target = mounts["producer"][0].partition(":")
    assert volume in spec["volumes"]
    env = services["producer"]["environment"]
    for key in ("EMOTIONS_INPUT_DIR", "EMOTIONS_OUTPUT_DIR", "EMOTIONS_FAILED_DIR"):
        assert env[key].startswith(target + "/"), key
    # The results worker writes outputs where the producer expects them: the image default.
    producer_env = dict(
        kv.split("=", 1)
        for line in dockerfile_instructions("producer.Dockerfile")
        if line.startswith("ENV ")
        for kv in line[4:].split()
    )
    assert producer_env["EMOTIONS_OUTPUT_DIR"] == env["EMOTIONS_OUTPUT_DIR"]


def test_every_service_gets_the_same_broker_and_model() -> None:
    services = compose()["services"]
    shared = services["producer"]["environment"]
    for name in ("worker", "worker-gpu1", "results", "flower"):
        env = services[name]["environment"]
        for key in (
            "EMOTIONS_BROKER_URL",
            "EMOTIONS_MODEL",
            "EMOTIONS_VISIBILITY_TIMEOUT",
            "EMOTIONS_STOP_GRACE_SECONDS",
        ):
            assert env[key] == shared[key], (name, key)


def test_flower_requires_basic_auth_and_is_published_on_loopback_by_default() -> None:
    flower = compose()["services"]["flower"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert auth.startswith("${FLOWER_BASIC_AUTH:?"), auth  # compose refuses to start without it
    assert flower["environment"]["FLOWER_ADDRESS"] == "0.0.0.0"
    [port] = flower["ports"]
    assert port.startswith("${FLOWER_PUBLISH_ADDRESS:-127.0.0.1}:")
    assert port.endswith(f":{flower['environment']['FLOWER_PORT']}")


# --- Dockerfiles -------------------------------------------------------------------------------


def test_producer_image_does_not_install_torch() -> None:
    lines = dockerfile_instructions("producer.Dockerfile")
    assert not [line for line in lines if re.search(r"torch|transformers|cuda", line, re.I)]
    installs = [line for line in lines if "pip install" in line]
    assert installs == ['RUN pip install ".[flower]"'], installs
    # ... and the base package does not pull them in either.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert "torch" not in base and "transformers" not in base
    assert not any("torch" in dep for dep in project["optional-dependencies"]["flower"])


def test_worker_image_installs_torch_then_the_worker_extra_and_can_prefetch() -> None:
    lines = dockerfile_instructions("worker.Dockerfile")
    text = "\n".join(lines)
    assert lines[0].startswith("ARG CUDA_IMAGE=nvidia/cuda:")
    torch_line = next(i for i, line in enumerate(lines) if 'pip install "torch==' in line)
    extra_line = next(i for i, line in enumerate(lines) if 'pip install ".[worker]"' in line)
    assert torch_line < extra_line
    assert re.search(r"^ENV .*HF_HOME=/opt/hf", text, re.M)
    assert "ARG PREFETCH_MODEL=" in text and "snapshot_download" in text
    # The hf-cache volume of compose is mounted where the image keeps the model.
    worker = compose()["services"]["worker"]
    assert "hf-cache:/opt/hf" in worker["volumes"]
    # Same torch everywhere: the image, scripts/run-local.sh and scripts/setup.sh (CI).
    version = re.search(r"ARG TORCH_VERSION=(\S+)", text)
    assert version
    for script in ("setup.sh",):  # run-local.sh calls setup.sh
        source = (ROOT / "scripts" / script).read_text()
        assert f"${{EMOTIONS_TORCH_VERSION:-{version.group(1)}}}" in source, script


def test_worker_image_default_command_is_the_procfile_worker() -> None:
    [cmd] = [
        line for line in dockerfile_instructions("worker.Dockerfile") if line.startswith("CMD ")
    ]
    assert json.loads(cmd[4:]) == with_defaults(argv(procfile()["worker"]))


def test_images_copy_what_the_package_needs_and_nothing_else() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    readme = pyproject["project"]["readme"]
    # Every package the install takes (setuptools' find), the shared one included: an image
    # without emotions/ installs a package that cannot import.
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.removesuffix("*") for pattern in include}
    assert "emotions" in packages
    for name in ("worker.Dockerfile", "producer.Dockerfile"):
        copies = [
            line.split()[1:-1] for line in dockerfile_instructions(name) if line.startswith("COPY ")
        ]
        sources = {src.rstrip("/") for srcs in copies for src in srcs}
        assert sources == {"pyproject.toml", readme, *packages}, name
        for package in packages:
            assert (ROOT / package / "__init__.py").is_file()
        # A BuildKit per-Dockerfile ignore file keeps .venv, data/ and models out of the context.
        ignore = [
            line.strip().rstrip("/")
            for line in (DOCKER / f"{name}.dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert ignore[0] == "*", name  # everything out by default ...
        assert {f"!{src}" for src in sources} <= set(ignore), name  # ... but what is copied


IMPORTS = """
import os, sys, producer.cli, worker
root = os.environ["IMAGE_ROOT"]
ours = [m.__file__ for n, m in list(sys.modules.items())
        if n.split(".")[0] in ("emotions", "worker", "producer") and getattr(m, "__file__", None)]
outside = [f for f in ours if not f.startswith(root)]
print(len(ours), outside)
sys.exit(1 if outside or not ours else 0)
"""


@pytest.mark.parametrize("name", ["producer.Dockerfile", "worker.Dockerfile"])
def test_the_images_files_alone_import_the_processes(tmp_path: Path, name: str) -> None:
    """What an image copies, laid out as its COPY lines do, is enough for its processes to
    import every module of ours from there (the producer, and ``celery -A worker``): none is
    found in this checkout instead."""
    for line in dockerfile_instructions(name):
        if line.startswith("COPY "):
            *sources, dest = line.split()[1:]
            for src in sources:
                target = tmp_path / (dest.removeprefix("./") if len(sources) == 1 else src)
                if (ROOT / src).is_dir():
                    shutil.copytree(
                        ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy(ROOT / src, tmp_path / src)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"IMAGE_ROOT": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", IMPORTS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


# --- run-local.sh ------------------------------------------------------------------------------

SCRIPT = ROOT / "scripts" / "run-local.sh"


def test_run_local_script_is_valid_bash_and_ends_in_honcho() -> None:
    assert os.access(SCRIPT, os.X_OK)
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    assert '"$ROOT/scripts/setup.sh"' in SCRIPT.read_text()  # one set-up, shared with CI
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert setup.index('pip install -q "torch==$TORCH_VERSION"') < setup.index(
        'pip install -q -e ".[dev]"'
    )
    assert "apt-get install -y -qq redis-server" in setup
    assert (
        SCRIPT.read_text()
        .rstrip()
        .splitlines()[-1]
        .startswith('exec honcho start -f "$ROOT/Procfile"')
    )


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_run_local_without_gpu_refuses_and_names_the_setting(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "export EMOTIONS_DEVICE=cpu" in done.stderr
    assert "creating" not in done.stdout  # refused before touching anything


# --- Colab notebook ----------------------------------------------------------------------------

NOTEBOOK = ROOT / "examples" / "colab.ipynb"


def notebook_code() -> list[str]:
    nb = json.loads(NOTEBOOK.read_text())
    return ["".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "code"]


def test_colab_notebook_is_valid_nbformat_4() -> None:
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4 and isinstance(nb["nbformat_minor"], int)
    assert nb["metadata"]["accelerator"] == "GPU"
    assert nb["metadata"]["kernelspec"]["language"] == "python"
    assert nb["cells"]
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("code", "markdown")
        assert isinstance(cell["metadata"], dict)
        assert isinstance(cell["source"], list) and all(isinstance(s, str) for s in cell["source"])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_colab_notebook_cells_are_valid_python() -> None:
    """Every code cell compiles once IPython's ``!`` and ``%`` lines are set aside."""
    for source in notebook_code():
        if source.startswith("%%"):
            continue  # a whole-cell magic (%%bash): not Python
        python = "\n".join(
            line[: len(line) - len(line.lstrip())] + "pass"
            if line.lstrip().startswith(("!", "%"))
            else line
            for line in source.splitlines()
        )
        compile(python, "<cell>", "exec")


def test_colab_notebook_runs_redis_one_worker_and_a_polling_producer() -> None:
    code = "\n".join(notebook_code())
    assert "drive.mount(" in code
    assert "apt-get install -y redis-server" in code
    assert "--appendonly yes" in code and "--maxmemory-policy noeviction" in code
    assert "celery -A worker worker -c 1" in code
    assert re.search(r"python -m producer[^\n]*--poll", code)
    assert "python -m producer status" in code
    assert "nohup" in code
    # Everything it starts it also stops.
    assert "redis-cli" in code and "shutdown" in code
