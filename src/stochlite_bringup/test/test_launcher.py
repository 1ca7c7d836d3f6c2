"""The node table, the process supervision and the `mdemorl` command line, with real processes."""
import subprocess
import sys
import time
from xml.etree import ElementTree

import pytest
import torch
import yaml

from stochlite_bringup.node_parameters import config_defaults
from stochlite_bringup.package_files import package_file
from stochlite_bringup.launcher import (COMMANDS, HELP_FLAGS, health_problems, node_command, parameter_text,
                                        resolve_compute_choice, summary, write_run_config)
from stochlite_bringup.node_table import (COMPUTE_NODES, CONFIG_FILE, HEALTH_FILE, LAUNCH_ARGUMENTS,
                                          ROBOT_DESCRIPTIONS, STALLS_FILE, resolve_arguments, training_nodes)
from stochlite_bringup.process_group import ProcessGroup
from stochlite_bringup.run_health import HealthProblem, clear_health_records, read_problems, record_problem
from stochlite_bringup.task_names import LEG_TASK_NAME, STOCHLITE_TASK_NAME
from stochlite_bringup.tasks.leg_task import JOINT_NAMES as LEG_JOINT_NAMES
from stochlite_bringup.tasks.stochlite_simulation import JOINT_NAMES as STOCHLITE_JOINT_NAMES

TRAIN_LAUNCH_ARGUMENTS = ("robot", "sim", "port", "rviz", "epochs", "steps_per_epoch", "seed", "run_dir", "foxglove",
                          "part", "device", "pacing", "resume")


def test_launch_arguments_are_exactly_those_of_train_launch():
    assert tuple(a.name for a in LAUNCH_ARGUMENTS) == TRAIN_LAUNCH_ARGUMENTS
    assert all(a.description for a in LAUNCH_ARGUMENTS)


def test_defaults_train_the_simulated_leg():
    args = resolve_arguments({})
    assert args["robot"] == "leg" and args["sim"] == "pybullet"
    nodes = training_nodes(args)
    assert [n.name for n in nodes] == ["sim_bridge", "agent", "learner", "model_trainer", "planner", "recorder"]
    assert [n.name for n in nodes if n.ends_run] == ["learner"]
    agent = next(n for n in nodes if n.name == "agent")
    assert agent.parameters["epochs"] == 20 and agent.parameters["steps_per_epoch"] == 1000


def test_sim_none_swaps_in_the_serial_driver_on_the_port():
    nodes = training_nodes(resolve_arguments({"sim": "none", "port": "/dev/ttyACM0"}))
    assert nodes[0].package == "leg_driver" and nodes[0].executable == "hw_interface_node"
    assert nodes[0].parameters["port"] == "/dev/ttyACM0"
    assert "sim_bridge" not in [n.name for n in nodes]


def test_stochlite_sim_none_runs_its_driver_profile_and_the_estimator_on_the_robot_side():
    args = {"robot": "stochlite", "sim": "none", "port": "/dev/ttyUSB0"}
    nodes = training_nodes(resolve_arguments(args))
    assert [n.name for n in nodes[:3]] == ["stochlite_hw_interface", "stochlite_estimator", "learner"]  # no agent
    driver = nodes[0].parameters
    assert nodes[0].executable == "hw_interface_node" and driver["policy_runner"] is True
    assert (driver["robot"], driver["port"], driver["run_dir"]) == ("stochlite", "/dev/ttyUSB0", "runs/graph")
    assert driver["runner.pacing"] == "episode"  # a robot pauses between episodes, never between commands
    assert nodes[1].executable == "stochlite_estimator_node"
    robot_side = training_nodes(resolve_arguments({**args, "part": "robot"}))
    assert [n.name for n in robot_side] == ["stochlite_hw_interface", "stochlite_estimator"]
    assert [n.name for n in robot_side if n.ends_run] == ["stochlite_hw_interface"]
    assert not any(n.idle for n in robot_side) and all(n.idle for n in nodes if n.side == "workstation")


def test_a_mujoco_task_runs_the_same_graph_in_its_own_namespace():
    nodes = training_nodes(resolve_arguments({"robot": "HalfCheetah-v5", "sim": "mujoco", "seed": "4"}))
    assert [n.name for n in nodes] == ["sim_bridge", "agent", "learner", "model_trainer", "planner", "recorder"]
    assert all(n.parameters.get("robot", "HalfCheetah-v5") == "HalfCheetah-v5" for n in nodes)
    assert nodes[0].parameters == {"robot": "HalfCheetah-v5", "seed": 4}


def test_device_goes_to_the_nodes_that_learn_and_their_dtypes_default_to_auto():
    nodes = training_nodes(resolve_arguments({"device": "cpu"}))
    assert {n.name for n in nodes if "device" in n.parameters} == set(COMPUTE_NODES)
    assert all(n.parameters["device"] == "cpu" for n in nodes if n.name in COMPUTE_NODES)
    assert all(config_defaults(f"{name}.yaml", name)["compute_dtype"] == "auto" for name in COMPUTE_NODES)
    assert all(config_defaults(f"{name}.yaml", name)["device"] == "auto" for name in COMPUTE_NODES)


def test_the_run_config_and_summary_name_the_compute_choice_and_any_stall(tmp_path):
    args = resolve_arguments({"run_dir": str(tmp_path), "device": "cpu"})
    compute = resolve_compute_choice(training_nodes(args), args["device"])
    assert compute.device == "cpu" and compute.cpu_capability == torch.backends.cpu.get_cpu_capability()
    write_run_config(tmp_path, args, compute)
    config = yaml.safe_load((tmp_path / CONFIG_FILE).read_text())
    assert config["launch"]["device"] == "cpu" and config["resolved"] == compute.as_dict()
    assert set(config["resolved"]) == {"device", "sac_dtype", "model_dtype", "planner_dtype", "cpu_capability",
                                       "float32_gflops", "bfloat16_gflops"}
    assert resolve_compute_choice(training_nodes({**args, "part": "robot"}), "cpu") is None  # learns nothing

    (tmp_path / "progress.csv").write_text("epoch,env_steps,eval_return,sac_updates,mpc_transitions,wall_s\n"
                                           "1,1000,10.0,0,0,20\n2,2000,50.0,800,3000,41\n")
    line = summary(tmp_path, compute)
    assert "eval return 10.0 after epoch 1 -> 50.0 after epoch 2" in line
    assert f"Compute: {compute.describe()}." in line and f"SAC {compute.sac_dtype}" in line
    assert "WARNING" not in line and line.endswith("No fault, stall or update-ratio shortfall was recorded.")
    (tmp_path / STALLS_FILE).write_text("learner: epoch 2: 0.10 SAC updates per real step against 1 configured\n"
                                        "agent: learning stalled: waiting 31 s\n")
    line = summary(tmp_path, compute)
    assert ("WARNING: the run was not healthy: learning stalled 2 time(s), first learner: epoch 2: 0.10 SAC "
            "updates per real step") in line


def test_the_summary_names_every_health_problem_of_the_run(tmp_path):
    (tmp_path / "progress.csv").write_text("epoch,env_steps,eval_return,sac_updates,mpc_transitions,wall_s\n"
                                           "1,1000,10.0,145,0,20\n")
    for problem in (HealthProblem("hw_interface", "watchdog_trips", 3, "in the 1.0 s period"),
                    HealthProblem("learner", "update ratio behind", 1, "0.15 SAC updates per real step against 1"),
                    HealthProblem("hw_interface", "watchdog_trips", 4, "in the 1.0 s period"),
                    HealthProblem("hw_interface", "fault", 1, "link fault: link closed")):
        record_problem(tmp_path, problem)
    line = summary(tmp_path)
    assert line.startswith("1 epochs, 1000 env steps, 145 SAC updates")
    assert line.endswith(
        "WARNING: the run was not healthy: hw_interface watchdog_trips x7 over 2 reports (first: in the 1.0 s "
        "period); learner update ratio behind x1 (first: 0.15 SAC updates per real step against 1); hw_interface "
        f"fault x1 (first: link fault: link closed) (all in {tmp_path / HEALTH_FILE}).")
    assert health_problems(tmp_path) == [line[line.index("hw_interface watchdog"):-1]]


def test_a_new_run_starts_without_the_health_records_of_the_last_and_a_resumed_one_keeps_them(tmp_path):
    record_problem(tmp_path, HealthProblem("learner", "update ratio behind", 1, "0.5 against 1"))
    clear_health_records(tmp_path, resume=True)
    assert read_problems(tmp_path) == [HealthProblem("learner", "update ratio behind", 1, "0.5 against 1")]
    clear_health_records(tmp_path, resume=False)
    assert read_problems(tmp_path) == [] and not (tmp_path / HEALTH_FILE).exists()
    clear_health_records(tmp_path / "new", resume=False)  # a run_dir not made yet


def test_the_robot_and_workstation_parts_split_the_graph():
    args = {"sim": "none", "port": "/dev/ttyACM0"}
    robot = training_nodes(resolve_arguments({**args, "part": "robot"}))
    workstation = training_nodes(resolve_arguments({**args, "part": "workstation", "foxglove": "true"}))
    # the leg's driver runs the policy itself, and ends a robot-side run
    assert [n.name for n in robot] == [n.name for n in robot if n.ends_run] == ["hw_interface"]
    assert [n.name for n in workstation] == ["learner", "model_trainer", "planner", "recorder", "foxglove_bridge"]
    assert [n.name for n in workstation if n.ends_run] == ["learner"]


def test_the_rviz_config_shows_what_the_graph_publishes():
    """rviz/train.rviz (installed): the agent's latched foot-path markers in the URDF's root frame."""
    config = yaml.safe_load(package_file("rviz", "train.rviz").read_text())
    manager = config["Visualization Manager"]
    displays = {d["Class"]: d for d in manager["Displays"]}
    markers = [d["Topic"] for d in manager["Displays"] if d["Class"] == "rviz_default_plugins/Marker"]
    assert sorted(t["Value"] for t in markers) == ["/leg/foot_path", "/leg/foot_path_desired"]
    assert all(t["Durability Policy"] == "Transient Local" for t in markers)  # graph_topics.MARKER_QOS
    assert displays["rviz_default_plugins/RobotModel"]["Description Topic"]["Value"] == "/robot_description"
    root = ElementTree.parse(package_file("urdf", "leg_2r.urdf")).getroot()
    children = {j.find("child").get("link") for j in root.iter("joint")}
    [root_link] = [link.get("name") for link in root.iter("link") if link.get("name") not in children]
    frame = manager["Global Options"]["Fixed Frame"]
    assert frame == root_link == config_defaults("agent.yaml", "agent")["marker_frame"]


@pytest.mark.parametrize("robot, joint_names", [(LEG_TASK_NAME, LEG_JOINT_NAMES),
                                                 (STOCHLITE_TASK_NAME, STOCHLITE_JOINT_NAMES)])
def test_rviz_shows_the_robots_urdf_with_the_joints_its_joint_states_name(robot, joint_names):
    """train.launch.py's robot_state_publisher reads ROBOT_DESCRIPTIONS[robot], fed by <ns>/joint_states."""
    assert resolve_arguments({"robot": robot, "rviz": "true"})["rviz"] == "true"
    root = ElementTree.parse(package_file("urdf", ROBOT_DESCRIPTIONS[robot])).getroot()
    moving = {j.get("name") for j in root.iter("joint") if j.get("type") != "fixed"}
    assert moving == set(joint_names)
    children = {j.find("child").get("link") for j in root.iter("joint")}
    [root_link] = [link.get("name") for link in root.iter("link") if link.get("name") not in children]
    rviz = yaml.safe_load(package_file("rviz", "train.rviz").read_text())
    assert root_link == rviz["Visualization Manager"]["Global Options"]["Fixed Frame"]


@pytest.mark.parametrize("given, message", [
    ({"robots": "leg"}, "unknown argument 'robots'"),
    ({"sim": "gazebo"}, "sim:=gazebo is not one of pybullet, mujoco, none"),
    ({"sim": "none"}, "needs port:="),
    ({"robot": "Hopper-v5"}, "use sim:=mujoco"),
    ({"robot": "stochlite", "sim": "mujoco"}, "robot:=stochlite is simulated in PyBullet: use sim:=pybullet"),
    ({"robot": "leg", "sim": "mujoco"}, "use sim:=pybullet"),
    ({"robot": "Ant-v5", "sim": "none", "port": "/dev/ttyACM0"}, "no hardware; use sim:=mujoco"),
    ({"robot": "Ant-v5", "sim": "mujoco", "rviz": "true"}, "robot:=Ant-v5 has no URDF: watch /mdemorl/status"),
    ({"robot": "leg", "sim": "mujoco"}, "robot:=leg is simulated in PyBullet"),
    ({"epochs": "ten"}, "epochs:=ten must be a positive integer"),
    ({"steps_per_epoch": "0"}, "steps_per_epoch:=0 must be a positive integer"),
    ({"device": "gpu"}, "device:=gpu is not one of auto, cpu, cuda"),
])
def test_bad_arguments_name_the_argument_and_the_fix(given, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        resolve_arguments(given)


def python(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


@pytest.mark.integration
def test_a_dead_node_is_reported_with_its_last_lines_and_the_rest_stop(tmp_path):
    echo = open(tmp_path / "echo.txt", "w")
    group = ProcessGroup(tmp_path / "logs", echo=echo)
    group.start("steady", python("import time\nprint('up')\nwhile True: time.sleep(0.1)"))
    group.start("crasher", python("import time\nfor i in range(30): print('line', i)\ntime.sleep(0.5)\nraise SystemExit(3)"))
    dead = group.wait_any()
    assert dead.name == "crasher" and dead.exit_code == 3
    assert list(dead.tail)[-1] == "line 29" and len(dead.tail) == 20
    start = time.monotonic()
    assert group.stop_all(timeout_s=10.0) == []  # SIGINT was enough
    assert time.monotonic() - start < 5.0
    assert all(n.exit_code is not None for n in group.nodes)
    assert (tmp_path / "logs" / "crasher.log").read_text().count("line") == 30
    echo.close()
    assert "[steady] up" in (tmp_path / "echo.txt").read_text()


@pytest.mark.integration
def test_a_node_that_ignores_sigint_is_escalated_within_the_timeout(tmp_path):
    group = ProcessGroup(tmp_path / "logs", echo=open(tmp_path / "echo.txt", "w"))
    stubborn = group.start("stubborn", python(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('ready')\n"
        "while True: time.sleep(0.1)"))
    while not stubborn.tail:
        time.sleep(0.05)
    start = time.monotonic()
    assert group.stop_all(timeout_s=2.0) == ["stubborn (SIGTERM)"]
    assert time.monotonic() - start < 2.5 and stubborn.exit_code is not None


def mdemorl(*words: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stochlite_bringup.launcher", *words], capture_output=True,
                          text=True, timeout=60)


def test_mdemorl_help_lists_every_argument():
    proc = mdemorl("train", "--help")
    assert proc.returncode == 0
    for name in TRAIN_LAUNCH_ARGUMENTS:
        assert f"{name}:=" in proc.stdout


@pytest.mark.parametrize("words", [[flag] for flag in HELP_FLAGS] + [[command, flag] for command in COMMANDS
                                                                     for flag in HELP_FLAGS], ids=" ".join)
def test_every_mdemorl_command_prints_its_usage_on_help(words):
    proc = mdemorl(*words)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: mdemorl {words[0] if words[0] in COMMANDS else ''}".rstrip())
    assert "error" not in proc.stderr


@pytest.mark.parametrize("words, message", [
    (["train", "sim:=gazebo"], "sim:=gazebo is not one of"),
    (["train", "epoch:=1"], "unknown argument 'epoch' (did you mean epochs?); valid arguments: robot, sim,"),
    (["train", "epochs=3"], "not of the form name:=value"),
    (["fly"], "unknown command 'fly'"),
    (["report", "/no/such/run"], "/no/such/run/record.mcap does not exist"),
])
def test_mdemorl_bad_input_is_one_error_line_and_exit_2(words, message):
    proc = mdemorl(*words)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr


@pytest.mark.integration
def test_nodes_do_not_outlive_a_killed_launcher(tmp_path):
    """SIGKILL on the supervising process still ends its nodes (parent-death signal)."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from stochlite_bringup.process_group import ProcessGroup\n"
        f"group = ProcessGroup(Path({str(tmp_path)!r}) / 'logs', echo=open('/dev/null', 'w'))\n"
        "node = group.start('sleeper', [sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(node.popen.pid, flush=True)\n"
        "time.sleep(60)\n")
    supervisor = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(supervisor.stdout.readline())
    supervisor.kill()
    supervisor.wait()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().split()[2] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"node {child} outlived its killed launcher")


def test_string_parameters_reach_the_nodes_as_strings():
    """ROS reads `-p name:=text` as YAML: `pacing:=off` would arrive as false and the node would refuse it."""
    assert [parameter_text(v) for v in ("off", "episode", "", "on", "0.5", "runs/graph")] == [
        "'off'", "episode", "''", "'on'", "'0.5'", "runs/graph"]
    assert [parameter_text(v) for v in (True, 3, 0.5)] == ["True", "3", "0.5"]
    spec = next(n for n in training_nodes(resolve_arguments({"pacing": "off"})) if n.name == "agent")
    assert "pacing:='off'" in node_command(spec)
