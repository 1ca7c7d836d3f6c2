"""Benchmark: the serial driver's 500 Hz loop against the emulated MCU, with the agent answering each state.

    scripts/run.sh python bench/driver_loop.py --seconds 30 [--load] [--realtime-priority 50]

Processes: `mdemorl emulate robot:=leg` (the MCU on a pty), hw_interface_node (its own process,
`timing_log` on) and agent_node (an untrained 2x256 policy, published by a probe in this process that
stands in for the learner, so every command is a real policy forward pass). With ``--load``, the
single-process M-DeMoRL trainer learns the leg on the same machine for the whole window.

From the driver's log, over the measured window: each cycle's wake-up lateness against its absolute
deadline (the period error), the cycles skipped (missed), and state -> command latency (a command's
arrival at the driver minus the publication of the newest joint state). Writes
bench/results/<name>.{csv,png}; the last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_DOMAIN_ID", str(130 + os.getpid() % 50))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import rclpy  # noqa: E402
from mdemorl_planner.networks import SquashedGaussianActor  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from stochlite_bringup.launcher import node_command  # noqa: E402
from stochlite_bringup.node_table import NodeSpec  # noqa: E402
from learner_stand_in import spin_in_background, stand_in_for_the_learner  # noqa: E402
from stochlite_bringup.process_group import ProcessGroup  # noqa: E402
from stochlite_bringup.tasks.leg_task import ACT_DIM, OBS_DIM  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STARTUP_S = 90.0
LOAD_ARGS = ["--task", "leg", "--algo", "mdemorl", "--epochs", "1000", "--steps-per-epoch", "1000", "--seed", "0"]


def percentile_ms(values_ns: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values_ns, q)) / 1e6, 4) if len(values_ns) else float("nan")


def run_graph(args, work: Path):
    """Emulator, driver node and agent node as processes; the driver's timing log and the measured window."""
    link, timing = work / "leg.pty", work / "timing.npz"
    rclpy.init()
    probe = rclpy.create_node("driver_loop_probe")
    states: list[int] = []
    commands: list[int] = []
    probe.create_subscription(JointState, "/leg/joint_states", lambda _m: states.append(time.monotonic_ns()), 100)
    probe.create_subscription(Float64MultiArray, "/leg/effort_commands",
                              lambda _m: commands.append(time.monotonic_ns()), 100)
    stand_in_for_the_learner(probe)
    stop_spinning = spin_in_background(probe)

    group = ProcessGroup(work / "logs", echo=open(os.devnull, "w"))
    emulator = [sys.executable, "-m", "stochlite_bringup.launcher", "emulate", "robot:=leg", f"link:={link}",
                f"realtime_priority:={max(args.realtime_priority - 1, 0)}"]
    specs = [NodeSpec("leg_driver", "hw_interface_node", "hw_interface", "hw_interface.yaml",
                      {"port": str(link), "timing_log": str(timing), "realtime_priority": args.realtime_priority}),
             NodeSpec("mdemorl_learner", "agent_node", "agent", "agent.yaml",
                      {"robot": "leg", "start_steps": 0, "pacing": "off", "epochs": 1000, "run_dir": "''"})]
    window = (0, 0)
    try:
        group.start("emulator", emulator)
        for spec in specs:
            command = node_command(spec)
            if spec.name == "agent" and args.agent_priority > 0:
                command = ["chrt", "-f", str(args.agent_priority), *command]
            group.start(spec.name, command)
        if args.load:
            group.start("load", [sys.executable, "-m", "mdemorl_learner.train", *LOAD_ARGS, "--out", str(work / "load")])
        deadline = time.monotonic() + STARTUP_S
        while len(commands) < 500 and time.monotonic() < deadline:  # the agent is past its first reset
            time.sleep(0.1)
        if len(commands) < 500:
            raise SystemExit(f"{len(states)} joint states and {len(commands)} effort commands in {STARTUP_S} s; "
                             f"see {work}/logs/")
        window = (time.monotonic_ns(), time.monotonic_ns() + int(args.seconds * 1e9))
        time.sleep(args.seconds)
    finally:
        driver = next((n for n in group.nodes if n.name == "hw_interface"), None)
        if driver is not None and driver.exit_code is None:
            driver.popen.send_signal(signal.SIGINT)  # writes the timing log
            driver.popen.wait(timeout=10)
        group.stop_all()
        stop_spinning()
        probe.destroy_node()
        rclpy.shutdown()

    return dict(np.load(timing)), window


def run_in_process(args, work: Path):
    """The other design: the ROS-free loop with the policy inside it (rclpy not running in this process)."""
    import torch

    from leg_driver.control_loop import ControlLoop, LoopSettings, SafetyLimits
    from leg_driver.serial_link import SerialLink
    from stochlite_bringup.sim_bridge_node import start_joint_angles

    torch.set_num_threads(1)
    actor = SquashedGaussianActor(OBS_DIM, ACT_DIM, 256, 2)
    latencies: list[tuple[int, int]] = []
    loop: ControlLoop | None = None

    def act(sample) -> None:  # loop thread: the policy answers the state before the next cycle
        obs = np.zeros(OBS_DIM, dtype=np.float32)
        obs[:2], obs[2:4] = sample.state.position, np.asarray(sample.state.velocity) / 10.0
        with torch.no_grad():
            action = actor.mean_action(torch.from_numpy(obs)).numpy()
        now = time.monotonic_ns()
        loop.commands.offer((0.5 * action).tolist(), now)
        latencies.append((now, now - sample.received_ns))

    link = work / "leg.pty"
    emulator = subprocess.Popen([sys.executable, "-m", "stochlite_bringup.launcher", "emulate", "robot:=leg",
                                 f"link:={link}", f"realtime_priority:={max(args.realtime_priority - 1, 0)}"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    emulator.stdout.readline()
    load = None
    if args.load:
        load = subprocess.Popen([sys.executable, "-m", "mdemorl_learner.train", *LOAD_ARGS, "--out", str(work / "load")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loop = ControlLoop(SerialLink(str(link), 1_000_000, 100_000_000, 200_000_000),
                       SafetyLimits(10.0, 20.0, (-1.5, -2.55), (1.5, -0.05)),
                       LoopSettings(realtime_priority=args.realtime_priority), act, record_timing=True)
    try:
        loop.start()
        time.sleep(1.0)
        loop.set_armed(True)
        loop.start_home(start_joint_angles(), 5.0).done.wait(6.0)
        time.sleep(5.0 if args.load else 0.5)  # the trainer gets going
        window = (time.monotonic_ns(), time.monotonic_ns() + int(args.seconds * 1e9))
        time.sleep(args.seconds)
    finally:
        loop.stop()
        for proc in (emulator, load):
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=30)
    cycles, commands = np.asarray(loop.timing_log).reshape(-1, 3), np.asarray(latencies).reshape(-1, 2)
    return {"deadline_ns": cycles[:, 0], "lateness_ns": cycles[:, 1], "cycle": cycles[:, 2],
            "command_arrival_ns": commands[:, 0],
            "command_latency_ns": commands[:, 1]}, window


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window, after the first command")
    parser.add_argument("--load", action="store_true", help="train M-DeMoRL (single process) meanwhile")
    parser.add_argument("--realtime-priority", type=int, default=50,
                        help="SCHED_FIFO priority of the driver's loop thread (0: normal scheduling); the emulator "
                             "gets one less")
    parser.add_argument("--agent-priority", type=int, default=0,
                        help="run the agent node under SCHED_FIFO at this priority (chrt; 0: normal scheduling)")
    parser.add_argument("--in-process", action="store_true",
                        help="the other design: the ROS-free loop with the policy inside it, in this process")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--name", default="driver_loop")
    args = parser.parse_args()
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="driver_loop_") as work:  # node logs, pty link, the loop's log
        log, window = (run_in_process if args.in_process else run_graph)(args, Path(work))
    inside = (log["deadline_ns"] >= window[0]) & (log["deadline_ns"] < window[1])
    lateness, index = log["lateness_ns"][inside], log["cycle"][inside]
    expected = index[-1] - index[0] + 1  # the loop's deadlines move with its phase lock: count cycle indices
    arrivals = (log["command_arrival_ns"] >= window[0]) & (log["command_arrival_ns"] < window[1])
    latency = log["command_latency_ns"][arrivals]
    with open(results / f"{args.name}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cycle", "period_error_ms"])
        writer.writerows(zip((index - index[0]).tolist(), (lateness / 1e6).round(4)))
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": date.today().isoformat(),
        "design": "policy inside the loop" if args.in_process else "ROS graph",
        "load": "mdemorl trainer" if args.load else "none", "realtime_priority": args.realtime_priority,
        "agent_priority": args.agent_priority, "seconds": args.seconds, "cycles": int(len(lateness)),
        "rate_hz": round(len(lateness) / args.seconds, 1),
        "period_p50_ms": percentile_ms(lateness, 50), "period_p99_ms": percentile_ms(lateness, 99),
        "period_max_ms": round(float(lateness.max()) / 1e6, 4),
        "missed_pct": round(100.0 * (expected - len(lateness)) / expected, 3),
        "commands": int(len(latency)),
        "cmd_latency_p50_ms": percentile_ms(latency, 50), "cmd_latency_p99_ms": percentile_ms(latency, 99),
    }
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    ax0.hist(lateness / 1e6, bins=100, log=True)
    ax0.axvline(summary["period_p99_ms"], color="r", ls="--", label=f"p99 {summary['period_p99_ms']} ms")
    ax0.set(xlabel="wake-up after the deadline [ms]", ylabel="cycles",
            title=f"500 Hz loop: {summary['rate_hz']} Hz, {summary['missed_pct']} % missed")
    ax0.legend()
    ax1.hist(latency / 1e6, bins=100, log=True, color="tab:orange")
    ax1.axvline(summary["cmd_latency_p99_ms"], color="r", ls="--", label=f"p99 {summary['cmd_latency_p99_ms']} ms")
    ax1.set(xlabel="joint state published -> effort command received [ms]", ylabel="commands",
            title=f"load: {summary['load']} ({summary['date']}, {summary['machine']})")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(results / f"{args.name}.png", dpi=110)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
