"""The training graph as data: its launch arguments and which nodes run for them.

One definition, read by the launch files through ``launch_actions`` (ROS installs) and by the ``mdemorl``
launcher (installs without ``launch``/``launch_ros``), so both start exactly the same graph and reject the
same arguments.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Mapping

from .task_names import LEG_TASK_NAME, STOCHLITE_TASK_NAME, TASK_NAMES


@dataclass(frozen=True)
class LaunchArgument:
    """A ``name:=value`` argument of ``train.launch.py`` and ``mdemorl train``."""

    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


SIMULATORS = ("pybullet", "mujoco", "none")
ROBOT_DESCRIPTIONS = {LEG_TASK_NAME: "leg_2r.urdf", STOCHLITE_TASK_NAME: "stochlite.urdf"}  # urdf/ files for rviz:=true
RECORD_FILE = "record.mcap"  # in run_dir: the recorder's MCAP file
STALLS_FILE = "stalls.log"  # in run_dir: one line per learning stall, written by the learner and the agent
HEALTH_FILE = "health.log"  # in run_dir: one line per health problem (run_health), written by the driver and learner
CONFIG_FILE = "config.yaml"  # in run_dir: the launch arguments and the resolved compute choices
IDLE_PREFIX = ("chrt", "--idle", "0")  # the command prefix of a node that runs in SCHED_IDLE (NodeSpec.idle)

LAUNCH_ARGUMENTS = (
    LaunchArgument("robot", LEG_TASK_NAME, "robot or task: leg, stochlite, or a gymnasium MuJoCo id", TASK_NAMES),
    LaunchArgument("sim", "pybullet", "simulator that replaces the hardware; none drives the robot on `port`",
                   SIMULATORS),
    LaunchArgument("port", "", "serial port of the robot's microcontroller when sim:=none, e.g. /dev/ttyACM0"),
    LaunchArgument("rviz", "false", "leg or stochlite: open rviz2 with rviz/train.rviz and start "
                   "robot_state_publisher on the robot's URDF (needs a ROS 2 install)", ("true", "false")),
    LaunchArgument("epochs", "20", "training epochs"),
    LaunchArgument("steps_per_epoch", "1000", "real environment steps per epoch"),
    LaunchArgument("seed", "0", "random seed of every node"),
    LaunchArgument("run_dir", "runs/graph", "directory for progress.csv, checkpoints, plots and node logs"),
    LaunchArgument("foxglove", "false", "serve the graph's topics to Foxglove on ws://127.0.0.1:8765",
                   ("true", "false")),
    LaunchArgument("part", "all", "which side of the graph to start: all; robot (the simulator or driver and the "
                   "agent, on the robot's computer); workstation (learner, model trainer, planner, recorder)",
                   ("all", "robot", "workstation")),
    LaunchArgument("device", "auto", "where the learner, model trainer and planner compute: auto (CUDA when torch "
                   "sees a GPU, else the CPU), cpu or cuda; each compute dtype then resolves on it (config/*.yaml "
                   "compute_dtype, auto by default)", ("auto", "cpu", "cuda")),
    LaunchArgument("pacing", "auto", "how the robot keeps Algorithm 1's SAC updates per real step: step (the lockstep "
                   "simulator waits for the learner before each command), episode (the robot is homed and held "
                   "between episodes until the learner has caught up), off (never wait; the learner warns when its "
                   "ratio falls behind); auto: step in simulation, episode on hardware",
                   ("auto", "step", "episode", "off")),
    LaunchArgument("resume", "false", "continue the run in run_dir after a crash or a kill: D_ENV from its log, SAC "
                   "and the epoch count from its last checkpoint", ("true", "false")),
)

ARGUMENTS_BY_NAME = {a.name: a for a in LAUNCH_ARGUMENTS}
LAUNCH_TOOL_CONFIGURATIONS = ("launch-prefix", "launch-prefix-filter", "emulate_tty")  # read by launch itself


def arguments_to_give(fixed: Collection[str] = ()) -> tuple[LaunchArgument, ...]:
    """The launch arguments a user gives: all but those a launch file sets itself (part in robot.launch.py)."""
    return tuple(a for a in LAUNCH_ARGUMENTS if a.name not in fixed)


def check_argument_names(names: Iterable[str], fixed: Mapping[str, str] | None = None) -> None:
    """ValueError on the first name that is not a launch argument, naming its closest match and the valid
    ones; ``fixed`` maps the arguments a launch file sets itself to their values."""
    fixed = fixed or {}
    valid = [a.name for a in arguments_to_give(fixed)]
    for name in sorted(names):
        if name in fixed:
            raise ValueError(f"this launch file sets {name}:={fixed[name]} itself: leave {name}:= out, or choose "
                             f"the {name} with train.launch.py")
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unknown argument {name!r}{hint}; valid arguments: {', '.join(valid)}")


def check_launch_configurations(names: Iterable[str], fixed: Mapping[str, str] | None = None) -> None:
    """check_argument_names for a launch file's launch configurations: every ``name:=value`` given to
    ``ros2 launch``, the declared arguments, and the configurations launch reads itself (``--launch-prefix``)."""
    check_argument_names(set(names) - set(LAUNCH_TOOL_CONFIGURATIONS), fixed)


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph: an executable of a package, its parameter file and overrides."""

    package: str
    executable: str
    name: str
    parameter_file: str  # a file in stochlite_bringup/config
    parameters: dict[str, object] = field(default_factory=dict)
    ends_run: bool = False  # the run is complete when this node exits with code 0
    side: str = "workstation"  # robot: runs next to the hardware (part:=robot); workstation: learning
    # SCHED_IDLE (`chrt --idle 0`): runs only on CPU time nothing else wants. Beside real hardware the learning
    # nodes do: the kernel's tty workers, which carry every serial byte at normal priority, were delayed by 20 ms
    # and more by learners at equal (and even at 19) niceness on 2 busy cores
    idle: bool = False


def resolve_arguments(given: Mapping[str, str]) -> dict[str, str]:
    """Defaults filled in and every value checked; ValueError names the argument and the fix."""
    check_argument_names(given)
    args = {a.name: given.get(a.name, a.default) for a in LAUNCH_ARGUMENTS}
    for a in LAUNCH_ARGUMENTS:
        if a.choices and args[a.name] not in a.choices:
            raise ValueError(f"{a.name}:={args[a.name]} is not one of {', '.join(a.choices)}")
    for name in ("epochs", "steps_per_epoch", "seed"):
        if not args[name].isdigit() or (name != "seed" and int(args[name]) < 1):
            raise ValueError(f"{name}:={args[name]} must be a {'non-negative' if name == 'seed' else 'positive'} integer")
    robot, sim = args["robot"], args["sim"]
    in_pybullet = robot in (LEG_TASK_NAME, STOCHLITE_TASK_NAME)
    if sim == "none" and not args["port"]:
        raise ValueError("sim:=none drives the real robot and needs port:=<serial device>, e.g. port:=/dev/ttyACM0")
    if sim == "pybullet" and not in_pybullet:
        raise ValueError(f"robot:={robot} is a MuJoCo task: use sim:=mujoco")
    if sim == "mujoco" and in_pybullet:
        raise ValueError(f"robot:={robot} is simulated in PyBullet: use sim:=pybullet")
    if args["rviz"] == "true" and robot not in ROBOT_DESCRIPTIONS:
        raise ValueError(f"rviz:=true shows the model of the leg or StochLite; robot:={robot} has no URDF: watch "
                         "/mdemorl/status in rqt_plot instead")
    if sim == "none" and not in_pybullet:
        raise ValueError(f"robot:={robot} is a simulated benchmark with no hardware; use sim:=mujoco")
    if sim == "none" and args["pacing"] == "step":
        raise ValueError("pacing:=step holds each command, which only a lockstep simulator can wait for; a robot "
                         "cannot pause between two commands: use pacing:=episode (or auto)")
    if args["pacing"] == "auto":
        args["pacing"] = "episode" if sim == "none" else "step"
    return args


COMPUTE_NODES = {"learner": "sac_dtype", "model_trainer": "model_dtype", "planner": "planner_dtype"}  # node: its dtype


def training_nodes(args: Mapping[str, str]) -> list[NodeSpec]:
    """The nodes for resolved arguments: robot side (simulator or serial driver, agent), the learning nodes, the
    recorder; ``part`` keeps one side. The learner ends a whole or workstation run, the agent a robot-side run."""
    robot, seed = args["robot"], int(args["seed"])
    epochs, steps = int(args["epochs"]), int(args["steps_per_epoch"])
    resume = args["resume"] == "true"
    runner = {"epochs": epochs, "steps_per_epoch": steps, "seed": seed, "resume": resume, "pacing": args["pacing"]}
    agent = {"robot": robot, "run_dir": args["run_dir"], **runner}
    d_env_log = {"resume_log": str(Path(args["run_dir"]) / "d_env")} if resume else {}  # the learner's log
    device = {"device": args["device"]}
    estimator = []
    # on hardware the driver runs the policy in its loop (no agent node) and ends a robot-side run
    driver = {"robot": robot, "port": args["port"], "run_dir": args["run_dir"], "policy_runner": True,
              **{f"runner.{name}": value for name, value in runner.items()}}
    if args["sim"] == "none" and robot == STOCHLITE_TASK_NAME:  # its estimator node shows torso_rpy and task_step
        robot_side = NodeSpec("leg_driver", "hw_interface_node", "stochlite_hw_interface", "stochlite_hw_interface.yaml",
                              driver, ends_run=args["part"] == "robot", side="robot")
        estimator = [NodeSpec("leg_driver", "stochlite_estimator_node", "stochlite_estimator",
                              "stochlite_estimator.yaml", side="robot")]
    elif args["sim"] == "none":
        robot_side = NodeSpec("leg_driver", "hw_interface_node", "hw_interface", "hw_interface.yaml", driver,
                              ends_run=args["part"] == "robot", side="robot")
    else:
        robot_side = NodeSpec("stochlite_bringup", "sim_bridge_node", "sim_bridge", "sim_bridge.yaml",
                              {"robot": robot, "seed": seed}, side="robot")
    agents = [] if args["sim"] == "none" else [NodeSpec("mdemorl_learner", "agent_node", "agent", "agent.yaml", agent,
                                          ends_run=args["part"] == "robot", side="robot")]
    nodes = [
        robot_side,
        *estimator,
        *agents,
        NodeSpec("mdemorl_learner", "learner_node", "learner", "learner.yaml",
                 {"robot": robot, "epochs": epochs, "steps_per_epoch": steps, "seed": seed, "pacing": args["pacing"],
                  "run_dir": args["run_dir"], "resume": resume, **device}, ends_run=args["part"] != "robot"),
        NodeSpec("mdemorl_planner", "model_trainer_node", "model_trainer", "model_trainer.yaml",
                 {"seed": seed, "train_every_steps": steps, "min_steps": steps, **d_env_log, **device}),  # per epoch
        NodeSpec("mdemorl_planner", "planner_node", "planner", "planner.yaml",
                 {"robot": robot, "steps_per_epoch": steps, "seed": seed, **d_env_log, **device}),
        NodeSpec("stochlite_bringup", "recorder_node", "recorder", "recorder.yaml",
                 {"robot": robot, "output": str(Path(args["run_dir"]) / RECORD_FILE)}),
    ] + ([NodeSpec("stochlite_bringup", "foxglove_bridge_node", "foxglove_bridge", "foxglove_bridge.yaml",
                   {"robot": robot})] if args["foxglove"] == "true" else [])
    if args["sim"] == "none":  # beside real hardware, learning yields the CPU to the serial link's kernel workers
        nodes = [dataclasses.replace(node, idle=True) if node.side == "workstation" else node for node in nodes]
    return [node for node in nodes if args["part"] in ("all", node.side)]
