"""The launch files' rules, shared with `mdemorl train`: unknown arguments fail, a node's exit decides the
launch's end and exit code, the robot and workstation files fix `part`, and package.xml declares what they
import. The rules are checked as functions; with launch and launch_ros importable, also through real launch."""
import ast
import functools
import importlib.util
import sys
import types
from pathlib import Path
from xml.etree import ElementTree

import pytest

from stochlite_bringup.node_table import (LAUNCH_ARGUMENTS, LAUNCH_TOOL_CONFIGURATIONS, arguments_to_give,
                                          check_argument_names, check_launch_configurations, resolve_arguments,
                                          training_nodes)
from stochlite_bringup.process_group import exit_decision

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parents[1]
TRAIN_LAUNCH = PACKAGE / "launch" / "train.launch.py"
PART_LAUNCH_FILES = {"robot": ROOT / "launch" / "robot.launch.py",
                     "workstation": ROOT / "launch" / "workstation.launch.py"}
ALL_NAMES = [a.name for a in LAUNCH_ARGUMENTS]


def test_an_unknown_argument_is_named_with_its_closest_match_and_the_valid_ones():
    with pytest.raises(ValueError) as error:
        check_argument_names({"epoch", "seed"})
    assert str(error.value) == ("unknown argument 'epoch' (did you mean epochs?); valid arguments: "
                                + ", ".join(ALL_NAMES))
    with pytest.raises(ValueError, match=r"^unknown argument 'flux'; valid"):  # nothing close: no guess
        check_argument_names({"flux"})
    with pytest.raises(ValueError, match=r"unknown argument 'epoch' \(did you mean epochs\?\)"):
        resolve_arguments({"epoch": "1"})  # what `mdemorl train` runs: the same rule
    check_argument_names(ALL_NAMES)


def test_launch_configurations_may_hold_what_launch_reads_itself_and_nothing_else():
    check_launch_configurations([*ALL_NAMES, *LAUNCH_TOOL_CONFIGURATIONS])
    with pytest.raises(ValueError, match="unknown argument 'epoch'"):
        check_launch_configurations([*ALL_NAMES, "epoch"])
    with pytest.raises(ValueError, match="unknown argument 'launch-prefix'"):  # mdemorl train has no such option
        check_argument_names(["launch-prefix"])


def test_a_launch_file_that_fixes_part_neither_offers_nor_takes_it():
    assert [a.name for a in arguments_to_give({"part"})] == [n for n in ALL_NAMES if n != "part"]
    check_launch_configurations([n for n in ALL_NAMES if n != "part"], fixed={"part": "robot"})
    with pytest.raises(ValueError, match=r"sets part:=robot itself: leave part:= out, or choose the part with "
                                         r"train.launch.py"):
        check_launch_configurations(["robot", "part"], fixed={"part": "robot"})
    with pytest.raises(ValueError) as error:
        check_launch_configurations(["epoch"], fixed={"part": "robot"})
    assert "part" not in str(error.value).split("valid arguments: ")[1].split(", ")


def load_launch_file(path: Path, launch_actions: types.ModuleType) -> types.ModuleType:
    """The launch file as a module, importing ``launch_actions`` in place of stochlite_bringup.launch_actions."""
    saved = sys.modules.get("stochlite_bringup.launch_actions")
    sys.modules["stochlite_bringup.launch_actions"] = launch_actions
    try:
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["stochlite_bringup.launch_actions"]
        else:
            sys.modules["stochlite_bringup.launch_actions"] = saved
    return module


@pytest.mark.parametrize("path, fixed", [(TRAIN_LAUNCH, {}),
                                         *((path, {"part": part}) for part, path in PART_LAUNCH_FILES.items())])
def test_each_launch_file_is_the_training_graph_with_its_part_fixed(path, fixed):
    """robot.launch.py and workstation.launch.py set part and declare the rest; train.launch.py fixes nothing."""
    recording = types.ModuleType("stochlite_bringup.launch_actions")
    recording.training_launch_description = lambda fixed=None: {"fixed": dict(fixed or {})}
    assert load_launch_file(path, recording).generate_launch_description() == {"fixed": fixed}


@pytest.mark.parametrize("node, code, ends_run, stopping, decision", [
    ("sim_bridge", -9, False, False, (True, "node 'sim_bridge' died with exit code -9 (SIGKILL)", True)),
    ("learner", -9, True, False, (True, "node 'learner' died with exit code -9 (SIGKILL)", True)),
    ("learner", 1, True, False, (True, "node 'learner' died with exit code 1", True)),
    ("learner", 0, True, False, (True, "learner finished: the run is complete", False)),
    ("agent", 0, False, False, (False, "agent finished its part", False)),
    ("agent", -2, False, True, (False, "agent stopped with exit code -2", False)),  # the launch stopped it
])
def test_a_nodes_exit_decides_whether_and_how_the_run_ends(node, code, ends_run, stopping, decision):
    outcome = exit_decision(node, code, ends_run, stopping=stopping)
    assert (outcome.ends_run, outcome.reason, outcome.failed) == decision


def package_exec_depends() -> set[str]:
    return {e.text for e in ElementTree.parse(PACKAGE / "package.xml").getroot().iter("exec_depend")}


def imported_packages(path: Path) -> set[str]:
    """The top-level modules a Python file imports, less the standard library's."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__"}


def test_package_xml_declares_what_ros2_launch_needs_to_run_the_launch_files():
    declared = package_exec_depends()
    assert {"launch", "launch_ros", "ros2launch"} <= declared
    launch_code = [TRAIN_LAUNCH, *PART_LAUNCH_FILES.values(), PACKAGE / "stochlite_bringup" / "launch_actions.py"]
    needed = set().union(*map(imported_packages, launch_code)) - {"stochlite_bringup"}
    assert needed == {"ament_index_python", "launch", "launch_ros"}
    assert needed <= declared


# With launch and launch_ros (a ROS 2 install; not in the project's venv).

def real_launch():
    """launch, its log going to this test's captured output; skips the test without launch_ros."""
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (the project's venv has no ROS 2 launch)")
    import launch
    launch.logging.reset()
    return launch


@pytest.mark.parametrize("path, expected", [(TRAIN_LAUNCH, ALL_NAMES),
                                            *((path, [n for n in ALL_NAMES if n != "part"])
                                              for path in PART_LAUNCH_FILES.values())])
def test_real_launch_shows_every_argument_but_a_fixed_part(path, expected):
    launch = real_launch()
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    description = get_launch_description_from_python_launch_file(str(path))
    assert isinstance(description, launch.LaunchDescription)
    assert [a.name for a in description.get_launch_arguments()] == expected


@pytest.mark.parametrize("fixed, given", [({}, {}), ({"part": "robot"}, {"sim": "none", "port": "/dev/ttyACM0"}),
                                          ({}, {"rviz": "true", "foxglove": "true"})])
def test_real_launch_starts_the_node_tables_nodes_each_under_the_exit_rule(fixed, given):
    launch = real_launch()
    from launch.actions import RegisterEventHandler
    from launch_ros.actions import Node
    from stochlite_bringup.launch_actions import training_launch_description
    context = launch.LaunchContext()
    context.launch_configurations.update(given)
    *declarations, graph = training_launch_description(fixed).entities
    for declaration in declarations:
        declaration.visit(context)
    actions = graph.visit(context)
    nodes, handlers = actions[::2], actions[1::2]
    expected = [spec.executable for spec in training_nodes(resolve_arguments({**given, **fixed}))]
    if given.get("rviz") == "true":
        expected = ["robot_state_publisher", "rviz2", *expected]
    assert all(isinstance(node, Node) for node in nodes) and [n.node_executable for n in nodes] == expected
    assert all(isinstance(handler, RegisterEventHandler) for handler in handlers) and len(handlers) == len(nodes)


@pytest.mark.parametrize("path, arguments, message", [
    (TRAIN_LAUNCH, {"epoch": "1"}, "unknown argument 'epoch' (did you mean epochs?)"),
    (PART_LAUNCH_FILES["robot"], {"part": "workstation"}, "sets part:=robot itself"),
])
def test_real_launch_rejects_a_bad_argument_before_any_node_starts(path, arguments, message, capsys):
    launch = real_launch()
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    service = launch.LaunchService()
    service.include_launch_description(launch.LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(path)), launch_arguments=arguments.items())]))
    assert service.run() == 1
    screen = capsys.readouterr().out
    assert message in screen and "process started" not in screen


def exit_rule_launch(launch, exits: dict[str, tuple[str, bool]]) -> "launch.LaunchDescription":
    """Processes named by ``exits`` (name: (python code, ends_run)) under the launch files' exit handler."""
    from launch.actions import ExecuteProcess, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from stochlite_bringup.launch_actions import on_node_exit
    actions = []
    for name, (code, ends_run) in exits.items():
        process = ExecuteProcess(cmd=[sys.executable, "-c", code], name=name, output="screen")
        actions += [process, RegisterEventHandler(OnProcessExit(
            target_action=process, on_exit=functools.partial(on_node_exit, name, ends_run)))]
    return launch.LaunchDescription(actions)


STEADY = "import time\nwhile True: time.sleep(0.1)"


@pytest.mark.integration
@pytest.mark.parametrize("exits, code, message", [
    ({"sim_bridge": ("raise SystemExit(3)", False), "learner": (STEADY, True)}, 1,
     "node 'sim_bridge' died with exit code 3"),
    ({"sim_bridge": (STEADY, False), "learner": ("import os; os.kill(os.getpid(), 9)", True)}, 1,
     "node 'learner' died with exit code -9 (SIGKILL)"),
    ({"sim_bridge": (STEADY, False), "agent": ("pass", False), "learner": ("import time; time.sleep(1)", True)}, 0,
     "learner finished: the run is complete"),
])
def test_real_launch_ends_on_a_nodes_exit_with_its_exit_code(exits, code, message, capsys):
    launch = real_launch()
    service = launch.LaunchService()
    service.include_launch_description(exit_rule_launch(launch, exits))
    assert service.run() == code
    assert message in capsys.readouterr().out
