"""Benchmark: state -> command latency through the graph (sim bridge + agent as separate processes).

    scripts/run.sh python bench/graph_latency.py [--seconds 20]

A probe node in this process stands in for the learner: it publishes an untrained 2x256 policy (so
every command is a real policy forward pass) and takes the agent's transitions. It listens to <robot>/joint_states and <robot>/effort_commands, and stamps each on arrival
with one clock. Latency = arrival of a command - arrival of the joint state it answers (lockstep: each
command answers the newest state). Pacing is off (pacing:=off). Writes
bench/results/graph_latency.{csv,png}; the last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_DOMAIN_ID", str(180 + os.getpid() % 50))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import rclpy  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from stochlite_bringup.launcher import node_command  # noqa: E402
from stochlite_bringup.node_table import NodeSpec  # noqa: E402
from learner_stand_in import spin_in_background, stand_in_for_the_learner  # noqa: E402
from stochlite_bringup.process_group import ProcessGroup  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="measurement time after the first command that answers a joint state")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--name", default="graph_latency")
    args = parser.parse_args()
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)

    rclpy.init()
    probe = rclpy.create_node("latency_probe")
    states: list[int] = []
    commands: list[tuple[int, int]] = []  # (arrival ns, index of the newest state seen)
    probe.create_subscription(JointState, "/leg/joint_states", lambda _m: states.append(time.monotonic_ns()), 100)
    probe.create_subscription(Float64MultiArray, "/leg/effort_commands",
                              lambda _m: commands.append((time.monotonic_ns(), len(states) - 1)), 100)
    stand_in_for_the_learner(probe)
    stop_spinning = spin_in_background(probe)

    group = ProcessGroup(results / "tmp" / "logs", echo=open(os.devnull, "w"))
    specs = [NodeSpec("stochlite_bringup", "sim_bridge_node", "sim_bridge", "sim_bridge.yaml", {"robot": "leg"}),
             NodeSpec("mdemorl_learner", "agent_node", "agent", "agent.yaml",
                      {"robot": "leg", "start_steps": 0, "pacing": "off", "epochs": 1000, "run_dir": "''"})]
    for spec in specs:
        group.start(spec.name, node_command(spec))
    try:
        # The window starts once the probe has both a joint state and a command after it: its two
        # subscriptions are matched by discovery at different times, and a command before any state has no
        # latency to measure.
        def answered_a_state() -> bool:
            return bool(commands) and commands[-1][1] >= 0

        deadline = time.monotonic() + 60.0
        while not answered_a_state() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not answered_a_state():
            raise SystemExit("no effort command after a joint state within 60 s; see bench/results/tmp/logs/")
        first = len(commands)
        time.sleep(args.seconds)
        window = commands[first:]
    finally:
        group.stop_all()
        stop_spinning()
        probe.destroy_node()
        rclpy.shutdown()

    latency_ms = np.array([(t - states[i]) / 1e6 for t, i in window])
    if not len(latency_ms):
        raise SystemExit(f"no effort command in the {args.seconds:g} s window; see bench/results/tmp/logs/")
    rate = len(window) / args.seconds
    with open(results / f"{args.name}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["command", "state_to_command_ms"])
        writer.writerows(enumerate(latency_ms.round(4)))
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": date.today().isoformat(),
               "commands": int(len(latency_ms)), "steps_per_s": round(rate, 1),
               "latency_p50_ms": round(float(np.percentile(latency_ms, 50)), 3),
               "latency_p99_ms": round(float(np.percentile(latency_ms, 99)), 3),
               "latency_max_ms": round(float(latency_ms.max()), 3)}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(latency_ms, bins=100, log=True)
    ax.axvline(summary["latency_p50_ms"], color="k", ls="--", label=f"p50 {summary['latency_p50_ms']} ms")
    ax.axvline(summary["latency_p99_ms"], color="r", ls="--", label=f"p99 {summary['latency_p99_ms']} ms")
    ax.set(xlabel="joint state -> effort command [ms] (sim bridge -> agent -> probe)", ylabel="commands",
           title=f"lockstep leg, {rate:.0f} steps/s ({summary['date']}, {summary['machine']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(results / f"{args.name}.png", dpi=110)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
