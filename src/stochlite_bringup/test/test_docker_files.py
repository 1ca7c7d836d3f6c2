"""docker/ kept honest without a Docker engine: the Dockerfile runs only commands the README gives, and the
compose files start launch files that exist with arguments the node table accepts."""
import json
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from stochlite_bringup.node_table import check_argument_names, resolve_arguments, training_nodes

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
IMAGE_ROOT = "/mdemorl"  # the Dockerfile's WORKDIR: the repository's root inside the image
HOUSEKEEPING = {"rm -rf /var/lib/apt/lists/*"}  # image size only; no user runs it
LAUNCH_PARTS = {"robot.launch.py": "robot", "workstation.launch.py": "workstation"}  # top-level launch/


def readme_commands(text: str) -> set[str]:
    """Every command of the README's bash blocks, split at `&&`."""
    commands = set()
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            commands.update(part.strip() for part in line.split("&&") if part.strip())
    return commands


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in joined.splitlines() if line.strip()]


def image_commands(text: str) -> list[str]:
    """The commands the image runs (RUN split at `&&`, then CMD), with the build arguments' defaults in."""
    args: dict[str, str] = {}
    seen_from = False
    commands = []
    for instruction, rest in dockerfile_instructions(text):
        if instruction == "FROM":
            seen_from = True
        elif instruction == "ARG" and seen_from:  # ARGs before FROM only parameterise FROM
            name, _, default = rest.partition("=")
            args[name] = default
        elif instruction == "RUN":
            for name, value in args.items():
                rest = rest.replace("${" + name + "}", value).replace("$" + name, value)
            commands += [c.strip() for c in rest.split("&&") if c.strip() not in HOUSEKEEPING]
        elif instruction == "CMD":
            commands.append(" ".join(json.loads(rest)))
    return commands


def commands_missing_from_readme(dockerfile: str, readme: str) -> list[str]:
    known = readme_commands(readme)
    return [c for c in image_commands(dockerfile) if c not in known]


def test_every_command_of_the_dockerfile_is_one_the_readme_gives():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert len(image_commands(dockerfile)) >= 6  # apt, rosdep, torch, requirements, colcon, CMD
    assert commands_missing_from_readme(dockerfile, (ROOT / "README.md").read_text()) == []


def test_the_check_catches_a_command_the_readme_does_not_give():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    extra = dockerfile + "\nRUN python3 -m pip install something-else\n"
    assert commands_missing_from_readme(extra, readme) == ["python3 -m pip install something-else"]
    changed = dockerfile.replace("TORCH_INDEX=https://download.pytorch.org/whl/cpu",
                                 "TORCH_INDEX=https://download.pytorch.org/whl/cu128")
    assert commands_missing_from_readme(changed, readme) == [
        "python3 -m pip install --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0"]


def test_the_image_uses_the_official_ros_image_torch_cpu_by_default_and_the_pinned_torch():
    instructions = dockerfile_instructions((DOCKER / "Dockerfile").read_text())
    assert ("FROM", "ros:${ROS_DISTRO}-ros-base") in instructions
    assert ("ARG", "ROS_DISTRO=kilted") in instructions
    assert ("ARG", "TORCH_INDEX=https://download.pytorch.org/whl/cpu") in instructions
    pins = {line.split("==")[0]: line.split("==")[1] for line in (ROOT / "requirements-common.txt").read_text()
            .splitlines() if "==" in line and not line.startswith("#")}
    assert f"torch=={pins['torch']}" in " ".join(rest for _, rest in instructions)
    for instruction, rest in instructions:
        if instruction == "COPY":
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    entrypoint = json.loads(next(rest for i, rest in instructions if i == "ENTRYPOINT"))[0]
    script = ROOT / Path(entrypoint).relative_to(IMAGE_ROOT)
    assert os.access(script, os.X_OK) and "source /mdemorl/install/setup.bash" in script.read_text()


def test_the_build_context_leaves_out_the_hosts_environment_and_outputs():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "build", "install", "log", "runs"} <= ignored


def launch_arguments(command: list[str]) -> dict[str, str]:
    """Resolve a compose service's `ros2 launch` command against the repository; its launch arguments."""
    assert command[:2] == ["ros2", "launch"], command
    words = command[2:]
    if words[0].endswith(".launch.py"):  # a path inside the image
        path = ROOT / Path(words[0]).relative_to(IMAGE_ROOT)
        fixed = {"part": LAUNCH_PARTS[path.name]}
        words = words[1:]
    else:  # package and launch file
        path = ROOT / "src" / words[0] / "launch" / words[1]
        fixed = {}
        words = words[2:]
    assert path.is_file(), f"{command}: {path} does not exist"
    given = dict(word.split(":=", 1) for word in words)
    check_argument_names(given, fixed)  # as the launch file checks them
    return {**given, **fixed}


def compose_services(name: str) -> dict[str, dict]:
    return yaml.safe_load((DOCKER / name).read_text())["services"]


@pytest.mark.parametrize("name", ["compose.sim.yaml", "compose.split.yaml"])
def test_compose_services_build_this_image_and_launch_what_the_node_table_accepts(name):
    for service in compose_services(name).values():
        build = service["build"]
        assert (DOCKER / build["context"]).resolve() == ROOT and (ROOT / build["dockerfile"]).is_file()
        assert service["network_mode"] == "host"
        assert service["environment"]["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
        args = resolve_arguments(launch_arguments(service["command"]))  # ValueError on a bad argument
        assert training_nodes(args)
        assert args["run_dir"].startswith("runs/")  # inside the volume below
        assert f"../runs:{IMAGE_ROOT}/runs" in service["volumes"]


def test_the_sim_compose_trains_the_simulated_leg_with_foxglove():
    (service,) = compose_services("compose.sim.yaml").values()
    args = resolve_arguments(launch_arguments(service["command"]))
    assert (args["robot"], args["sim"], args["part"], args["foxglove"]) == ("leg", "pybullet", "all", "true")
    assert service["environment"]["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"


def test_the_split_compose_puts_the_driver_on_the_robot_and_learning_on_the_workstation():
    services = compose_services("compose.split.yaml")
    robot = resolve_arguments(launch_arguments(services["robot"]["command"]))
    workstation = resolve_arguments(launch_arguments(services["workstation"]["command"]))
    assert [n.name for n in training_nodes(robot)] == ["hw_interface"]  # the driver runs the policy
    assert [n.name for n in training_nodes(workstation)] == ["learner", "model_trainer", "planner", "recorder"]
    device = services["robot"]["devices"][0].rsplit(":", 1)[1]
    assert robot["port"] == device and "dialout" in services["robot"]["group_add"]
    for service in services.values():  # two hosts: discovery beyond localhost, the same domain
        assert service["environment"]["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
        assert service["environment"]["ROS_DOMAIN_ID"] == "${ROS_DOMAIN_ID:-0}"
    for name in ("compose.sim.yaml", "compose.split.yaml"):  # the usage lines name files that exist
        for line in (DOCKER / name).read_text().splitlines():
            if "docker compose -f" in line:
                assert (ROOT / shlex.split(line[line.index("docker compose"):])[3]).is_file(), line
