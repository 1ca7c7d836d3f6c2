"""``agent_node``: runs pi_theta on the robot and publishes what it experiences (Algorithm 1, line 4).

Event-driven: each state the robot reports (in lockstep simulation: one per command) gives the
reward of the previous action and the next observation; the next action goes out on
``<ns>/effort_commands``. The leg reports ``<ns>/joint_states``, from which the agent computes the
observation and eq. 15's reward, and takes torques (action * ``max_torque`` N*m); a MuJoCo task
reports ``<ns>/task_step`` (mdemorl_msgs/TaskStep: the task's observation, reward and termination)
and takes its action box (``agent_feedback``); StochLite reports ``<ns>/task_step`` too and takes 12 servo
targets on ``<ns>/joint_commands`` from the trot generator the action shapes, and the agent publishes the
decoded generator command on ``<ns>/gait_command``; ``<ns>`` is ``task_names.robot_namespace``. The robot
is armed only once the learner subscribes to ``/mdemorl/transitions/env``, so that no transition is
lost; they go there in batches. A robot whose ``<ns>/enable`` answers no (it cannot arm: its driver says
why) is asked again, ``ENABLE_ATTEMPTS`` times in all, then the node stops with exit code 1 and the reason.
After every ``steps_per_epoch`` env steps a deterministic evaluation episode runs, its return goes to
``/mdemorl/eval_return`` and its leg's foot path to ``<ns>/foot_path`` / ``foot_path_desired`` markers
and ``run_dir/foot_path.npz``.
Pacing (``pacing``: ``step`` in lockstep simulation, ``episode``, or ``off``): a command (``step``) or an
episode's first command (``episode``) is held while the loaded policy lags the env steps too far
(``PolicyRunner.must_wait``), the batch so far is flushed so the learner can train on it, and the held command
goes out once a newer snapshot has been loaded (a guard condition brings the loader's swap back to the
executor). On the real leg the hardware interface runs the policy itself (``leg_driver.onboard_runner``).
The episodes, actions and batches are the ROS-free policy runner's (``policy_runner``), with the actor's
forward pass in numpy (``numpy_actor``). Policy snapshots from ``/mdemorl/policy`` are checked and
converted on a worker thread and swapped in as one reference, so loading never blocks control; a
single-threaded executor runs everything else (it steps about 2x faster than rclpy's multi-threaded one).
After the last evaluation the robot is disarmed and the node exits 0. Parameters: ``stochlite_bringup/config/agent.yaml``.
"""

import collections
import enum
import math
import time

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from mdemorl_msgs.msg import Snapshot, TaskStep, TrainingStatus
from mdemorl_planner.cpu_setup import configure_cpu
from mdemorl_planner.messages import bytes_to_state_dict, msg_to_payload
from mdemorl_planner.snapshots import load_policy
from rclpy.task import Future
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from stochlite_bringup.graph_topics import (DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, ENABLE_SERVICE, ENV_TOPIC, GAIT_COMMAND_TOPIC,
                                            JOINT_STATES_TOPIC, POLICY_TOPIC, RESET_SERVICE, ROBOT_QOS, SNAPSHOT_QOS,
                                            STATUS_QOS, STATUS_TOPIC, TASK_STEP_TOPIC)
from stochlite_bringup.node_diagnostics import LOG_THROTTLE_S, diagnostics_message
from stochlite_bringup.node_main import run_node
from stochlite_bringup.node_parameters import AT_LEAST_1, POSITIVE, Param, declare_parameters, one_of
from stochlite_bringup.node_worker import WorkerNode
from stochlite_bringup.task_names import LEG_TASK_NAME, STOCHLITE_TASK_NAME, TASK_NAMES, robot_namespace

from .agent_feedback import LegFeedback, StochliteFeedback, TaskSample, TaskStepFeedback
from .episode_reports import EpisodeReporter, gait_message
from .numpy_actor import NumpyActor
from .policy_runner import Batch, EpisodeEnd, PolicyRunner
from .runner_parameters import RUNNER_PARAMETERS, check_pacing
from .stalls import record_stall

NODE_NAME = "agent"
SERVICE_POLL_S = 0.2
NS_PER_S = 1_000_000_000
ARRIVALS_KEPT = 8  # policy snapshots (time, version) the learner's update rate is measured over
ENABLE_ATTEMPTS = 3  # <ns>/enable true answered no this often (the robot cannot arm): the run fails, naming why
ENABLE_RETRY_S = 2.0  # between two attempts (a robot whose link is still coming up arms on a later one)


PARAMETERS = {
    "robot": Param(str, "robot: leg, or a gymnasium MuJoCo id driven through the sim bridge; its namespace "
                   "prefixes the topics (<ns>/joint_states, ...)", one_of(*TASK_NAMES)),
    **RUNNER_PARAMETERS,
    "enable_on_start": Param(bool, "arm the robot (<ns>/enable true) before the first episode"),
    "torch_threads": Param(int, "torch intra-op threads for checking policy snapshots", AT_LEAST_1),
    "diagnostics_period_s": Param(float, "seconds between two /diagnostics messages", POSITIVE),
    "disarm_timeout_s": Param(float, "seconds to wait for <ns>/enable false when stopping", POSITIVE),
    "run_dir": Param(str, "directory for foot_path.npz (the last evaluation's foot path: foot and foot_desired "
                     "[T, 2] in m, dt in s); empty: not written"),
}


def _stamp_ns(stamp: Time) -> int:
    return stamp.sec * NS_PER_S + stamp.nanosec


def actor_from_snapshot(msg: Snapshot, obs_dim: int, act_dim: int) -> tuple[NumpyActor, str]:
    """The actor of a policy snapshot for a task of these dims, in numpy, and where the learner computes (its
    ``compute`` entry, "unknown" if absent); ValueError if it is corrupt or unusable."""
    if msg.kind != "policy":
        raise ValueError(f"snapshot kind is {msg.kind!r}, expected 'policy'")
    payload = bytes_to_state_dict(msg_to_payload(msg))
    policy = load_policy(payload)
    if (policy.obs_dim, policy.act_dim) != (obs_dim, act_dim):
        raise ValueError(f"policy is for obs/act dims {policy.obs_dim}/{policy.act_dim}, the task has "
                         f"{obs_dim}/{act_dim}")
    actor = NumpyActor.from_state_dict(policy.actor.state_dict())
    if not np.isfinite(actor.mean_action(np.zeros(obs_dim, np.float32))).all():
        raise ValueError("policy produces non-finite actions")
    compute = payload.get("compute")
    return actor, compute if isinstance(compute, str) else "unknown"


class Phase(enum.Enum):
    WAITING = "waiting for the robot's services"
    ENABLING = "arming the robot"
    RESETTING = "resetting the robot"
    RUNNING = "running an episode"
    STOPPING = "disarming the robot"


class AgentNode(WorkerNode):
    """The agent; ``exit_code`` is set once it has stopped (0: all epochs done or interrupted).

    Spin it on a single-threaded executor: control, service answers and timers share that thread.
    """

    def __init__(self, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        p = check_pacing(NODE_NAME, declare_parameters(self, NODE_NAME, PARAMETERS))
        configure_cpu(p["torch_threads"])
        self.params = p
        robot, ns = p["robot"], robot_namespace(p["robot"])
        self.feedback = (LegFeedback(p["max_torque"]) if robot == LEG_TASK_NAME
                         else StochliteFeedback(robot) if robot == STOCHLITE_TASK_NAME else TaskStepFeedback(robot))
        self.core = PolicyRunner(self.feedback.act_dim, p["episode_steps"], p["steps_per_epoch"], p["epochs"],
                                 p["start_steps"], p["transitions_per_batch"], p["seed"], p["pacing"],
                                 p["max_policy_lag"])
        self.exit_code: int | None = None
        self.policy_errors = 0
        self.malformed_states = 0  # joint states or task steps
        self._policy: tuple[NumpyActor | None, int] = (None, 0)  # swapped as one reference
        self._snapshots: collections.deque[Snapshot] = collections.deque(maxlen=1)  # latest one not loaded yet
        self._phase = Phase.WAITING
        self._episode_start_ns = 0
        self._reset_state: JointState | TaskStep | None = None
        self._reset_answered = False
        self._stop_code = 0
        self._stop_timer = None
        self._enable_attempts = 0
        self._steps_since_diagnostics = 0
        self._hold_started = 0.0  # time.monotonic() when the current pacing hold began
        self._holds = 0
        self._recorded_hold = 0  # the hold whose stall is in stalls.log
        self._arrivals: collections.deque[tuple[float, int]] = collections.deque(maxlen=ARRIVALS_KEPT)
        self._learner_compute = "unknown"  # where the learner computes, from its last snapshot
        self._held_time_s = 0.0  # episode time of the state a pacing hold is answering

        self._effort_pub = self.create_publisher(Float64MultiArray, f"{ns}/{self.feedback.command_topic}", ROBOT_QOS)
        self._gait_pub = (self.create_publisher(Float64MultiArray, f"{ns}/{GAIT_COMMAND_TOPIC}", ROBOT_QOS)
                          if isinstance(self.feedback, StochliteFeedback) else None)
        self.reports = EpisodeReporter(self, ns, p["marker_frame"], p["run_dir"])
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self._enable = self.create_client(SetBool, f"{ns}/{ENABLE_SERVICE}")
        self._reset = self.create_client(Trigger, f"{ns}/{RESET_SERVICE}")
        if robot == LEG_TASK_NAME:
            self.create_subscription(JointState, f"{ns}/{JOINT_STATES_TOPIC}", self._on_state, ROBOT_QOS)
        else:
            self.create_subscription(TaskStep, f"{ns}/{TASK_STEP_TOPIC}", self._on_state, ROBOT_QOS)
        self.create_subscription(Snapshot, POLICY_TOPIC, self._on_policy, SNAPSHOT_QOS)
        self._resume_status: TrainingStatus | None = None
        if p["resume"]:
            self.create_subscription(TrainingStatus, STATUS_TOPIC, self._on_status, STATUS_QOS)
        self._start_timer = self.create_timer(SERVICE_POLL_S, self._start)
        self._enable_retry = self.create_timer(ENABLE_RETRY_S, self._arm)
        self._enable_retry.cancel()  # started by a refusal
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        self._loader = self.start_worker(self._load_policy)
        # the loader thread triggers it after each swap: the held command goes out on this executor
        self._policy_swapped = self.create_guard_condition(self._resume)

    @property
    def policy_version(self) -> int:
        return self._policy[1]

    def request_stop(self) -> None:
        """Stop early (SIGINT/SIGTERM): zero torque, disarm, exit 0."""
        self._stop(0, "interrupted")


    # --- start, reset and stop: service calls answered asynchronously -------------------------

    def _start(self) -> None:
        if self._phase is not Phase.WAITING:
            return
        if not (self._enable.service_is_ready() and self._reset.service_is_ready()):
            self.get_logger().info(f"waiting for {self._enable.service_name} and {self._reset.service_name}",
                                   throttle_duration_sec=LOG_THROTTLE_S)
            return
        if not self.reports.learner_listening():
            # transitions published before the learner subscribed would be lost (volatile topic), and
            # pacing would then wait for updates on them forever; the robot stays disarmed meanwhile
            self.get_logger().info(f"waiting for the learner (the publisher of {POLICY_TOPIC}) to subscribe to "
                                   f"{ENV_TOPIC}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        if self.params["resume"] and not self._resumed():
            return
        self._start_timer.cancel()
        if self.params["enable_on_start"]:
            self._arm()
        else:
            self._request_reset()

    def _on_status(self, msg: TrainingStatus) -> None:
        self._resume_status = msg

    def _resumed(self) -> bool:
        """Resume from the learner's first status; False while none has arrived."""
        status = self._resume_status
        if status is None:
            self.get_logger().info(f"resume: waiting for the learner's {STATUS_TOPIC}",
                                   throttle_duration_sec=LOG_THROTTLE_S)
            return False
        self.core.resume_at(status.env_steps, status.epoch)
        self.get_logger().info(f"resuming at {status.env_steps} env steps after epoch {status.epoch}")
        if self.core.finished:
            self._stop(0, f"nothing to resume: all {self.core.epochs} epochs are done")
            return False
        return True

    def _call(self, client, request, on_answer, on_refusal=None) -> None:
        """Call ``client``; then ``on_answer()`` on success, ``on_refusal(message)`` on a "no" (default: stop)."""
        future = client.call_async(request)
        future.add_done_callback(lambda done: self._answered(client, done, on_answer, on_refusal))

    def _answered(self, client, future: Future, on_answer, on_refusal) -> None:
        error = future.exception()
        response = future.result() if error is None else None
        if error is not None or not response.success:
            problem = error if error is not None else response.message
            if self._phase is Phase.STOPPING:
                self.get_logger().warning(f"{client.service_name} failed while stopping: {problem}")
            elif error is None and on_refusal is not None:
                on_refusal(problem)
            else:
                self._stop(1, f"{client.service_name} failed: {problem}")
            return
        on_answer()

    def _arm(self) -> None:
        """Ask the robot to arm (again after a refusal)."""
        self._enable_retry.cancel()
        if self._phase is Phase.STOPPING:
            return
        self._phase = Phase.ENABLING
        self._enable_attempts += 1
        self._call(self._enable, SetBool.Request(data=True), self._on_enabled, self._enable_refused)

    def _enable_refused(self, reason: str) -> None:
        """The robot cannot arm: try again a few times, then stop the run naming the robot's reason."""
        service, attempt = self._enable.service_name, self._enable_attempts
        if attempt >= ENABLE_ATTEMPTS:
            self._stop(1, f"{service} refused to arm {attempt} times, last: {reason}")
            return
        self.get_logger().warning(f"{service} refused to arm (attempt {attempt} of {ENABLE_ATTEMPTS}): {reason}; "
                                  f"trying again in {ENABLE_RETRY_S:g} s")
        self._enable_retry.reset()

    def _on_enabled(self) -> None:
        if self._phase is Phase.ENABLING:
            self._request_reset()

    def _request_reset(self) -> None:
        self._phase = Phase.RESETTING
        self._reset_state = None
        self._reset_answered = False
        self._call(self._reset, Trigger.Request(), self._on_reset)

    def _on_reset(self) -> None:
        """The reset is done; the episode starts on the first joint state sent since it was requested.

        A lockstep simulator publishes that state itself while resetting, so it may arrive before
        or after this answer.
        """
        if self._phase is not Phase.RESETTING:
            return
        self._reset_answered = True
        if self._reset_state is not None:
            self._begin(self._reset_state)

    def _stop(self, code: int, reason: str) -> None:
        if self._phase is Phase.STOPPING or self.exit_code is not None:
            return
        (self.get_logger().info if code == 0 else self.get_logger().error)(f"stopping: {reason}")
        self._phase = Phase.STOPPING
        self._stop_code = code
        self._start_timer.cancel()
        self._enable_retry.cancel()
        self._publish_batches(self.core.take_batches(flush=True))
        self._effort_pub.publish(Float64MultiArray(data=self.feedback.idle_command()))
        self._stop_timer = self.create_timer(self.params["disarm_timeout_s"], self._disarm_timed_out)
        if self._enable.service_is_ready():
            self._call(self._enable, SetBool.Request(data=False), self._finish)
        else:
            self._finish()

    def _disarm_timed_out(self) -> None:
        if self.exit_code is None:
            self.get_logger().warning(f"no answer from {self._enable.service_name}; the robot may still be armed")
        self._finish()

    def _finish(self) -> None:
        self._stop_timer.cancel()
        if self.exit_code is None:
            self.reports.await_delivery()
            self.exit_code = self._stop_code

    # --- control --------------------------------------------------------------------------------

    def _on_state(self, msg: JointState | TaskStep) -> None:
        if self._phase is Phase.RUNNING:
            self._control(msg)
        elif self._phase is Phase.RESETTING:
            self._reset_state = msg
            if self._reset_answered:
                self._begin(msg)

    def _begin(self, msg: JointState | TaskStep) -> None:
        self._phase = Phase.RUNNING
        self.core.start_episode()
        self._episode_start_ns = _stamp_ns(msg.header.stamp)
        self._control(msg)

    def _sample(self, msg: JointState | TaskStep) -> TaskSample:
        elapsed_s = (_stamp_ns(msg.header.stamp) - self._episode_start_ns) / NS_PER_S
        if isinstance(msg, JointState):
            return self.feedback.sample(msg.name, msg.position, msg.velocity, elapsed_s)
        return self.feedback.sample(msg.observation, msg.reward, msg.terminated, elapsed_s)

    def _control(self, msg: JointState | TaskStep) -> None:
        try:
            sample = self._sample(msg)
        except ValueError as error:
            self.malformed_states += 1
            self.get_logger().warning(f"ignored robot state ({self.malformed_states} so far): {error}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            return
        actor, version = self._policy
        was_holding = self.core.holding
        step = self.core.step(sample, actor, version)
        if step.held:
            if not was_holding:  # else a state that came without a command (not lockstep): ignored
                self._held_time_s = sample.time_s
                self._hold(version)
            return
        if step.action is not None:
            self._send(step.action, sample.time_s)
        self._publish_batches(self.core.take_batches(flush=step.episode_end is not None))
        if step.episode_end is not None:
            self._end_episode(step.episode_end)

    def _send(self, action, time_s: float) -> None:
        self._effort_pub.publish(Float64MultiArray(data=self.feedback.command(action, time_s)))
        if self._gait_pub is not None:
            self._gait_pub.publish(gait_message(self.feedback.gait(action)))
        self._steps_since_diagnostics += 1

    def _hold(self, version: int) -> None:
        """Pacing: no command until a newer policy; the learner gets every transition so far to train on."""
        self._publish_batches(self.core.take_batches(flush=True))
        self._hold_started = time.monotonic()
        self._holds += 1
        self.get_logger().debug(f"holding at {self.core.env_steps} env steps for a policy newer than v{version}")
        self._resume()  # a snapshot loaded since _control read the policy

    def _resume(self) -> None:
        if self._phase is not Phase.RUNNING or not self.core.holding:
            return
        actor, version = self._policy
        action = self.core.resume(actor, version)
        if action is not None:
            self._send(action, self._held_time_s)

    def _publish_batches(self, batches: list[Batch]) -> None:
        self.reports.publish_batches(batches)

    def _end_episode(self, end: EpisodeEnd) -> None:
        self.reports.publish_end(end)
        if end.evaluation:
            self.get_logger().info(f"epoch {end.epoch}: eval return {end.episode_return:.2f} "
                                   f"(policy v{self.policy_version}, {self.core.env_steps} env steps)")
        if self.core.finished:
            self._stop(0, f"done: {self.core.epoch} epochs, {self.core.env_steps} env steps")
        else:
            self._request_reset()

    # --- policy snapshots: loaded on the worker thread, never in the control path ----------------

    def _on_policy(self, msg: Snapshot) -> None:
        self._snapshots.append(msg)  # replaces one that is still waiting
        self._loader.poke()

    def _load_policy(self) -> None:
        try:
            msg = self._snapshots.popleft()
        except IndexError:
            return
        try:
            actor, self._learner_compute = actor_from_snapshot(msg, self.feedback.obs_dim, self.feedback.act_dim)
        except ValueError as error:
            self.policy_errors += 1
            self.get_logger().warning(
                f"kept policy v{self.policy_version}, rejected snapshot v{msg.version} "
                f"({self.policy_errors} rejected so far): {error}", throttle_duration_sec=LOG_THROTTLE_S)
            return
        self._policy = (actor, msg.version)
        self._arrivals.append((time.monotonic(), msg.version))
        self._policy_swapped.trigger()

    def _learner_updates_per_s(self) -> float:
        """SAC updates per second over the last policy snapshots (versions count updates); nan before two."""
        if len(self._arrivals) < 2:
            return math.nan
        (t0, v0), (t1, v1) = self._arrivals[0], self._arrivals[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else math.nan

    def _publish_diagnostics(self) -> None:
        rate = self._steps_since_diagnostics / self.params["diagnostics_period_s"]
        self._steps_since_diagnostics = 0
        values = {"phase": self._phase.value, "control_rate_hz": round(rate, 1),
                  "env_steps": self.core.env_steps, "epoch": self.core.epoch,
                  "policy_version": self.policy_version, "rejected_policies": self.policy_errors,
                  "holding": self.core.holding, "policy_lag": self.core.policy_lag(self.policy_version),
                  "pacing_holds": self._holds,
                  "malformed_states": self.malformed_states,
                  "nonfinite_actions": self.core.nonfinite_actions}
        problems = [f"{n} {what}" for n, what in ((self.policy_errors, "policy snapshots rejected"),
                                                 (self.malformed_states, "malformed robot states"),
                                                 (self.core.nonfinite_actions, "non-finite actions zeroed")) if n]
        held_s = time.monotonic() - self._hold_started
        if self.core.holding and held_s > self.params["policy_wait_warning_s"]:
            problems.append(f"learning stalled: waiting {held_s:.0f} s for a policy newer than v{self.policy_version} "
                            f"(max_policy_lag {self.params['max_policy_lag']}); the learner made "
                            f"{self._learner_updates_per_s():.1f} SAC updates/s over its last snapshots "
                            f"({self._learner_compute}); is it running, and on a dtype this host computes fast?")
            self.get_logger().warning(problems[-1], throttle_duration_sec=LOG_THROTTLE_S)
            if self._recorded_hold != self._holds and self.params["run_dir"]:
                self._recorded_hold = self._holds  # one stalls.log line per hold
                record_stall(self.params["run_dir"], NODE_NAME, problems[-1])
        self._diagnostics_pub.publish(diagnostics_message(self, values, "; ".join(problems)))


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run mdemorl_learner agent_node``."""
    return run_node(AgentNode, NODE_NAME, args)


if __name__ == "__main__":
    raise SystemExit(main())
