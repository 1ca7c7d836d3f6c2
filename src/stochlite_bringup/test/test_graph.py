"""The whole training graph as a user starts it: `mdemorl train`, separate processes, real DDS.

A watcher node in this process checks the topics, that transitions flow from both the robot side
and the planner, that the policy version rises and that the learner reports updates.
"""
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

DOMAIN_ID = str(150 + os.getpid() % 80)
os.environ["ROS_DOMAIN_ID"] = DOMAIN_ID
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import rclpy  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from mdemorl_msgs.msg import Snapshot, TrainingStatus, TransitionBatch  # noqa: E402

pytestmark = pytest.mark.integration

EXPECTED_TOPICS = {
    "/leg/joint_states": "sensor_msgs/msg/JointState",
    "/leg/effort_commands": "std_msgs/msg/Float64MultiArray",
    "/clock": "rosgraph_msgs/msg/Clock",
    "/mdemorl/transitions/env": "mdemorl_msgs/msg/TransitionBatch",
    "/mdemorl/transitions/mpc": "mdemorl_msgs/msg/TransitionBatch",
    "/mdemorl/policy": "mdemorl_msgs/msg/Snapshot",
    "/mdemorl/dynamics": "mdemorl_msgs/msg/Snapshot",
    "/mdemorl/status": "mdemorl_msgs/msg/TrainingStatus",
}


PREEXISTING: set[int] = set()  # processes of this domain there before the test's graphs started (this
# session's own helpers, e.g. multiprocessing's resource tracker, inherit the domain id too); see `watcher`


def start_graph(run_dir: Path, *arguments: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stochlite_bringup.launcher", "train", f"run_dir:={run_dir}",
                             *arguments], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def run_to_completion(run_dir: Path, *arguments: str, timeout_s: float) -> list[dict[str, str]]:
    """Run the graph until it ends; assert it completed and return the rows of its progress.csv."""
    graph = start_graph(run_dir, *arguments)
    try:
        out, _ = graph.communicate(timeout=timeout_s)
    finally:
        if graph.poll() is None:
            os.killpg(graph.pid, signal.SIGKILL)
    assert graph.returncode == 0, out[-4000:]
    assert "the run is complete" in out
    with open(run_dir / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


def graph_processes() -> list[int]:
    """PIDs of the processes the graphs of this test started that are still in its DDS domain."""
    return [pid for pid in domain_processes() if pid not in PREEXISTING]


def domain_processes() -> list[int]:
    """PIDs of processes other than this one that run in this test's DDS domain."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"ROS_DOMAIN_ID={DOMAIN_ID}".encode() in environ:
            pids.append(int(entry.name))
    return pids


class Watcher:
    """Records what the graph publishes."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("graph_watcher", context=self.context)
        keep_all = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.sources: dict[str, int] = {"env": 0, "mpc": 0}
        self.terminated: dict[str, int] = {"env": 0, "mpc": 0}
        self.policy_versions: list[int] = []
        self.status: list[TrainingStatus] = []
        self.node.create_subscription(TransitionBatch, "/mdemorl/transitions/env", self._batch, keep_all)
        self.node.create_subscription(TransitionBatch, "/mdemorl/transitions/mpc", self._batch, keep_all)
        self.node.create_subscription(Snapshot, "/mdemorl/policy", lambda m: self.policy_versions.append(m.version),
                                      latched)
        self.node.create_subscription(TrainingStatus, "/mdemorl/status", self.status.append, 10)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.seen_topics: dict[str, str] = {}
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.running = True
        self.thread.start()

    def _batch(self, msg: TransitionBatch) -> None:
        self.sources[msg.source] = self.sources.get(msg.source, 0) + msg.count
        self.terminated[msg.source] = self.terminated.get(msg.source, 0) + int(sum(msg.terminated))

    def _spin(self) -> None:
        next_look = 0.0
        while self.running:
            self.executor.spin_once(timeout_sec=0.1)
            if time.monotonic() > next_look:  # the graph's topics, while its nodes are up
                self.seen_topics.update((n, t[0]) for n, t in self.node.get_topic_names_and_types())
                next_look = time.monotonic() + 1.0

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def watcher():
    PREEXISTING.clear()
    PREEXISTING.update(domain_processes())
    w = Watcher()
    try:
        yield w
    finally:
        w.close()


def test_tiny_run_flows_every_way_and_completes(tmp_path, watcher):
    run_dir = tmp_path / "run"
    rows = run_to_completion(run_dir, "epochs:=3", "steps_per_epoch:=600", "seed:=1", timeout_s=400)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert int(rows[-1]["env_steps"]) == 1800
    assert int(rows[-1]["sac_updates"]) > 0 and int(rows[-1]["mpc_transitions"]) > 0
    assert (run_dir / "checkpoints" / "latest.pt").is_file()
    # what flowed, seen by an independent subscriber (which may join after the first batches)
    assert 0 < watcher.sources["env"] <= 1800
    assert watcher.sources["mpc"] > 0
    assert len(watcher.policy_versions) >= 2 and watcher.policy_versions[-1] > watcher.policy_versions[0]
    assert max(s.sac_updates for s in watcher.status) > 0
    for name, kind in EXPECTED_TOPICS.items():
        assert watcher.seen_topics.get(name) == kind, (name, watcher.seen_topics.get(name))
    assert graph_processes() == []
    check_recording_and_report(run_dir)


def check_recording_and_report(run_dir: Path) -> None:
    """record.mcap decodes with the schemas it carries; 500 Hz joint states are thinned to 50 Hz; the report
    rebuilds the plots from it alone; the learner's TensorBoard scalars are there."""
    from mcap_ros2.reader import read_ros2_messages

    topics: dict[str, list] = {}
    for item in read_ros2_messages(str(run_dir / "record.mcap")):
        topics.setdefault(item.channel.topic, []).append((item.log_time_ns, item.ros_msg))
    assert max(m.epoch for _, m in topics["/mdemorl/status"]) == 3
    assert [round(m.data, 3) for _, m in topics["/mdemorl/eval_return"]] == [
        round(float(r["eval_return"]), 3) for r in csv.DictReader(open(run_dir / "progress.csv"))]
    states = topics["/leg/joint_states"]
    assert len(states) > 20 and list(states[0][1].name) == ["hip", "knee"]
    assert min(np.diff([t for t, _ in states])) >= 20_000_000  # at most 50 Hz of the 500 Hz stream
    assert len(topics["/leg/foot_path"][-1][1].points) == len(topics["/leg/foot_path_desired"][-1][1].points) > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("progress/eval_return")] == [600, 1200, 1800]
    report = subprocess.run([sys.executable, "-m", "stochlite_bringup.launcher", "report", str(run_dir)],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    for name in ("learning_curve", "foot_path", "joint_states"):
        assert (run_dir / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_a_mujoco_task_runs_through_the_graph_with_its_terminations(tmp_path, watcher):
    run_dir = tmp_path / "hopper"
    # 3 epochs: past start_steps (1000) by more than the agent's max_policy_lag (250), so the pacing makes the
    # last epoch wait for SAC updates (with 2, the 200 eligible steps could all arrive before the first update).
    rows = run_to_completion(run_dir, "robot:=Hopper-v5", "sim:=mujoco", "epochs:=3", "steps_per_epoch:=600",
                             timeout_s=300)
    assert [int(r["env_steps"]) for r in rows] == [600, 1200, 1800] and int(rows[-1]["sac_updates"]) > 0
    # Hopper falls under random actions: episodes end early and their last transitions say so
    assert 0 < watcher.terminated["env"] < watcher.sources["env"] <= 1800
    assert watcher.seen_topics.get("/hopper/task_step") == "mdemorl_msgs/msg/TaskStep"
    assert watcher.seen_topics.get("/hopper/joint_states") == "sensor_msgs/msg/JointState"
    assert "/leg/joint_states" not in watcher.seen_topics and not (run_dir / "foot_path.png").exists()
    assert graph_processes() == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_every_node_within_10_s(tmp_path, watcher, sig):
    graph = start_graph(tmp_path / "run", "epochs:=50")
    try:
        deadline = time.monotonic() + 60
        while watcher.sources["env"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert watcher.sources["env"] > 0, "the graph never produced transitions"
        assert len(graph_processes()) >= 6  # the launcher and its five nodes
        start = time.monotonic()
        graph.send_signal(sig)
        out, _ = graph.communicate(timeout=15)
        assert time.monotonic() - start < 10.0
    finally:
        if graph.poll() is None:
            os.killpg(graph.pid, signal.SIGKILL)
    assert "stopping every node" in out
    assert "Traceback" not in out, out[-3000:]
    time.sleep(0.5)
    assert graph_processes() == []


def wait_for_epochs(run_dir: Path, epochs: int, graph: subprocess.Popen, timeout_s: float = 300) -> None:
    """Poll progress.csv until it has ``epochs`` rows (the graph must still be running)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert graph.poll() is None, graph.communicate()[0][-3000:]
        progress = run_dir / "progress.csv"
        if progress.is_file() and len(progress.read_text().splitlines()) > epochs:
            return
        time.sleep(0.2)
    raise AssertionError(f"no epoch {epochs} within {timeout_s} s")


def d_env_log(run_dir: Path) -> bytes:
    return (run_dir / "d_env" / "transitions.f32").read_bytes()


def test_resume_after_kill_9_of_the_learner_then_of_the_whole_graph_loses_and_repeats_nothing(tmp_path, watcher):
    run_dir, args = tmp_path / "run", ("epochs:=3", "steps_per_epoch:=600", "seed:=2")
    graph = start_graph(run_dir, *args)
    try:
        wait_for_epochs(run_dir, 1, graph)
        [learner] = [pid for pid in graph_processes() if b"learner_node" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(learner, signal.SIGKILL)
        out, _ = graph.communicate(timeout=30)
    finally:
        if graph.poll() is None:
            os.killpg(graph.pid, signal.SIGKILL)
    assert graph.returncode == 1 and "node 'learner' died" in out
    time.sleep(0.5)
    assert graph_processes() == []
    first = d_env_log(run_dir)

    graph = start_graph(run_dir, *args, "resume:=true")
    try:
        wait_for_epochs(run_dir, 2, graph)
        for pid in graph_processes():  # the launcher and every node at once, as a power cut would
            os.kill(pid, signal.SIGKILL)
        graph.wait(timeout=10)
    finally:
        if graph.poll() is None:
            os.killpg(graph.pid, signal.SIGKILL)
    time.sleep(0.5)
    assert graph_processes() == []
    second = d_env_log(run_dir)
    assert second[:len(first)] == first and len(second) > len(first)  # appended, never rewritten

    rows = run_to_completion(run_dir, *args, "resume:=true", timeout_s=400)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    final = d_env_log(run_dir)
    assert final[:len(second)] == second
    records = np.frombuffer(final, dtype="<f4").reshape(1800, -1)  # exactly the run's 3 x 600 transitions
    assert len(np.unique(records, axis=0)) == 1800  # none twice
    assert graph_processes() == []


def test_robot_and_workstation_parts_train_together_as_two_launches(tmp_path, watcher):
    """The two-machine split on one machine: `part:=robot` and `part:=workstation` as separate launchers."""
    args = ("epochs:=2", "steps_per_epoch:=600", "seed:=3")
    workstation = start_graph(tmp_path / "workstation", *args, "part:=workstation")
    robot = start_graph(tmp_path / "robot", *args, "part:=robot")
    try:
        robot_out, _ = robot.communicate(timeout=300)
        # the learner ends the workstation side once its updates have caught up with the robot's last epoch,
        # which on a loaded machine can be a minute or more after the robot side ended
        workstation_out, _ = workstation.communicate(timeout=300)
    finally:
        for graph in (robot, workstation):
            if graph.poll() is None:
                os.killpg(graph.pid, signal.SIGKILL)
    assert robot.returncode == 0 and "agent finished: the run is complete" in robot_out, robot_out[-3000:]
    assert workstation.returncode == 0 and "learner finished" in workstation_out, workstation_out[-3000:]
    assert "starting 2 nodes (sim_bridge, agent)" in robot_out
    assert "starting 4 nodes (learner, model_trainer, planner, recorder)" in workstation_out
    with open(tmp_path / "workstation" / "progress.csv", newline="") as f:
        assert [int(r["env_steps"]) for r in csv.DictReader(f)] == [600, 1200]
    assert (tmp_path / "robot" / "foot_path.npz").is_file()  # the agent's side of the run directory
    assert graph_processes() == []
