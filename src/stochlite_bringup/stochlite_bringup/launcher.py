"""``mdemorl``: the project's launcher for installs without ``launch``/``launch_ros``.

    mdemorl train [robot:=leg] [sim:=pybullet] [epochs:=20] ...   # same arguments as train.launch.py
    mdemorl report RUN_DIR                                         # plots from RUN_DIR/record.mcap
    mdemorl emulate robot:=leg [faults:=...]                      # the leg's MCU on a pty (leg_driver)

Starts the nodes of ``node_table`` as separate processes, streams their output prefixed with the node's
name (and into RUN_DIR/logs/NODE.log), and ends every node within 10 s on Ctrl-C or SIGTERM. A node
that dies is reported by name with its last lines. The run is complete when the learner exits cleanly; its
final summary names every health problem the nodes recorded (``stalls.log``, ``health.log``).
"""
from __future__ import annotations

import csv
import os
import shutil
import signal
import sys
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory

import yaml

from .node_parameters import config_defaults
from .node_table import (COMPUTE_NODES, CONFIG_FILE, HEALTH_FILE, IDLE_PREFIX, LAUNCH_ARGUMENTS, STALLS_FILE,
                         NodeSpec, resolve_arguments, training_nodes)
from .process_group import ProcessGroup, exit_decision
from .run_health import clear_health_records, describe_problems, read_problems

COMMANDS = ("train", "report", "emulate")
HELP_FLAGS = ("-h", "--help")  # print a command's usage and exit 0
USAGE = ("usage: mdemorl train [name:=value ...]            (mdemorl train --help lists the arguments)\n"
         "       mdemorl report RUN_DIR                      (plots from the run's record.mcap)\n"
         "       mdemorl emulate robot:=leg [name:=value ...] (mdemorl emulate --help lists the faults)")


class LaunchError(Exception):
    """A problem the user can fix before any node starts."""


def parse_assignments(words: list[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    for word in words:
        name, sep, value = word.partition(":=")
        if not sep or not name:
            raise LaunchError(f"argument {word!r} is not of the form name:=value")
        given[name] = value
    return given


def node_command(spec: NodeSpec) -> list[str]:
    """The command line of one node, as `ros2 run` would build it, with its parameter file and overrides."""
    try:
        executable = Path(get_package_prefix(spec.package)) / "lib" / spec.package / spec.executable
        config = Path(get_package_share_directory("stochlite_bringup")) / "config" / spec.parameter_file
    except PackageNotFoundError as exc:
        raise LaunchError(f"package {exc.args[0]!r} is not in the workspace: run `make setup` "
                          "(or colcon build) and source scripts/env.sh") from None
    if not executable.is_file():
        raise LaunchError(f"node {spec.name!r}: executable {executable} is missing; rebuild with `make setup`")
    if not config.is_file():
        raise LaunchError(f"node {spec.name!r}: parameter file {config} is missing; rebuild with `make setup`")
    command = [str(executable), "--ros-args", "-r", f"__node:={spec.name}", "--params-file", str(config)]
    if spec.idle:
        if shutil.which(IDLE_PREFIX[0]) is None:
            raise LaunchError(f"node {spec.name!r} runs in SCHED_IDLE beside the hardware, through {IDLE_PREFIX[0]}, "
                              "which is not installed: install util-linux")
        command = [*IDLE_PREFIX, *command]
    for key, value in spec.parameters.items():
        command += ["-p", f"{key}:={parameter_text(value)}"]
    return command


def parameter_text(value: object) -> str:
    """``value`` as ``-p name:=<text>`` must spell it: ROS reads the text as YAML, so a string that YAML would read
    as something else (``off`` is false, ``0.5`` a number, nothing at all null) is quoted."""
    if isinstance(value, str) and (not value or not isinstance(yaml.safe_load(value), str)):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def print_help() -> None:
    print(USAGE)
    print("\narguments (the same as `ros2 launch stochlite_bringup train.launch.py`):")
    for a in LAUNCH_ARGUMENTS:
        choices = f" [{' | '.join(a.choices)}]" if a.choices else ""
        print(f"  {a.name}:={a.default or '<empty>'}{choices}\n      {a.description}")


def resolve_compute_choice(specs: list[NodeSpec], device: str):
    """The device and dtypes the learning nodes among ``specs`` will resolve (the same function and per-host
    probe cache as theirs, with their config files' compute_dtype); None when none of them runs here."""
    dtypes = {key: config_defaults(f"{node}.yaml", node)["compute_dtype"] for node, key in COMPUTE_NODES.items()
              if any(spec.name == node for spec in specs)}
    if not dtypes:
        return None
    from mdemorl_planner.compute import resolve_compute  # torch: only for a part that learns
    return resolve_compute(device, **dtypes)


def write_run_config(run_dir: Path, args: dict[str, str], compute) -> None:
    """run_dir/config.yaml: the launch arguments and what compute resolved to."""
    run_dir.mkdir(parents=True, exist_ok=True)
    content = {"launch": dict(args), "resolved": compute.as_dict()}
    (run_dir / CONFIG_FILE).write_text("# mdemorl train: the launch arguments and the resolved compute choices\n"
                                       + yaml.safe_dump(content, sort_keys=False))


def health_problems(run_dir: Path) -> list[str]:
    """Every health problem the run's nodes recorded: its learning stalls, then one phrase per node and kind of
    health.log (the driver's faults, the learner's update ratio behind)."""
    stalls_path, health_path = run_dir / STALLS_FILE, run_dir / HEALTH_FILE
    stalls = stalls_path.read_text().splitlines() if stalls_path.is_file() else []
    stalled = [f"learning stalled {len(stalls)} time(s), first {stalls[0]} (all in {stalls_path})"] if stalls else []
    recorded = describe_problems(read_problems(run_dir))
    return stalled + ([f"{'; '.join(recorded)} (all in {health_path})"] if recorded else [])


def progress_summary(run_dir: Path, compute=None) -> str:
    """The learner's last progress row, the compute choices, and the files a person looks at."""
    progress = run_dir / "progress.csv"
    if not progress.is_file():
        return f"no progress.csv in {run_dir}."
    with open(progress, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return f"{progress} has no epochs yet."
    last, first = rows[-1], rows[0]
    files = [p.name for p in (run_dir / "learning_curve.png", run_dir / "foot_path.png",
                              run_dir / "checkpoints" / "latest.pt") if p.is_file()]
    where = f" Compute: {compute.describe()}." if compute is not None else ""
    return (f"{len(rows)} epochs, {last['env_steps']} env steps, {last['sac_updates']} SAC updates, "
            f"{last['mpc_transitions']} imagined transitions in {float(last['wall_s']):.0f} s; eval return "
            f"{float(first['eval_return']):.1f} after epoch 1 -> {float(last['eval_return']):.1f} after epoch "
            f"{last['epoch']}.{where} In {run_dir}: progress.csv, {CONFIG_FILE}, {', '.join(files)}.")


def summary(run_dir: Path, compute=None) -> str:
    """The run's final line: its progress, then every health problem it had, or that none was recorded."""
    problems = health_problems(run_dir)
    health = (f"WARNING: the run was not healthy: {'; '.join(problems)}." if problems
              else "No fault, stall or update-ratio shortfall was recorded.")
    return f"{progress_summary(run_dir, compute)} {health}"


def train(words: list[str]) -> int:
    """Run the training graph until the learner finishes, a node dies, or we are told to stop."""
    args = resolve_arguments(parse_assignments(words))
    if args["rviz"] == "true":
        raise LaunchError("rviz:=true needs a ROS 2 install with rviz2: use `ros2 launch stochlite_bringup "
                          "train.launch.py rviz:=true` there")
    specs = training_nodes(args)
    commands = {spec.name: node_command(spec) for spec in specs}
    run_dir = Path(args["run_dir"])
    compute = resolve_compute_choice(specs, args["device"])
    if compute is not None:  # the robot side alone learns nothing (and must not overwrite the workstation's file)
        write_run_config(run_dir, args, compute)
    clear_health_records(run_dir, args["resume"] == "true")
    group = ProcessGroup(run_dir / "logs")
    stop = {"signal": None}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signal.Signals(signum).name
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT explicitly: it may have been inherited as ignored
        signal.signal(sig, on_signal)
    print(f"mdemorl: starting {len(specs)} nodes ({', '.join(commands)}); logs in {run_dir / 'logs'}", flush=True)
    if compute is not None:
        print(f"mdemorl: compute: {compute.describe()} (in {run_dir / CONFIG_FILE})", flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    code = 0
    try:
        for spec in specs:
            group.start(spec.name, commands[spec.name], env)
        ends_run = {spec.name: spec.ends_run for spec in specs}
        while True:
            node = group.wait_any()
            decision = exit_decision(node.name, node.exit_code, ends_run[node.name])
            if decision.failed:
                print(f"mdemorl: {decision.reason}; its last lines:", *(f"    {line}" for line in node.tail),
                      sep="\n", file=sys.stderr, flush=True)
                code = 1
                break
            if decision.ends_run:
                unhealthy = ", but not healthy (below)" if health_problems(run_dir) else ""
                print(f"mdemorl: {decision.reason}{unhealthy}", flush=True)
                print(f"mdemorl: {summary(run_dir, compute)}", flush=True)
                break
            group.nodes.remove(node)  # a node that ends its part cleanly (the agent) leaves the group
            node.log.close()
    except KeyboardInterrupt:
        print(f"mdemorl: {stop['signal'] or 'SIGINT'} received, stopping every node", file=sys.stderr, flush=True)
        code = 130
    finally:
        escalated = group.stop_all()
        if escalated:
            print(f"mdemorl: had to escalate: {', '.join(escalated)}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if not words or words[0] in HELP_FLAGS:
        print_help()
        return 0 if words else 2
    command, rest = words[0], words[1:]
    if command == "report":  # the learning package's plots, imported only for this command
        from mdemorl_learner.report import main as report_main
        return report_main(rest)
    if command == "emulate":
        from leg_driver.emulator_cli import main as emulate  # leg_driver builds on this package, not the reverse
        return emulate(rest)
    if command not in COMMANDS:
        print(f"mdemorl: unknown command {command!r}: the commands are {', '.join(COMMANDS)} (mdemorl --help)",
              file=sys.stderr)
        return 2
    if rest and rest[0] in HELP_FLAGS:
        print_help()
        return 0
    try:
        return train(rest)
    except (LaunchError, ValueError) as exc:
        print(f"mdemorl: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
