"""The policy runner's settings, shared by the nodes that host it: the agent (behind ROS, the lockstep
simulation's path) and the leg's hardware interface (inside its loop process). Their defaults are the agent's,
in ``config/agent.yaml``; the hardware interface declares them as ``runner.<name>``. Imports no torch.
"""
from stochlite_bringup.node_parameters import (AT_LEAST_1, NON_NEGATIVE, POSITIVE, Param, one_of, parameter_error,
                                               positive_up_to)
from stochlite_bringup.tasks.leg_simulation import STALL_TORQUE_NM

from .policy_runner import PACING_MODES, pacing_can_progress

RUNNER_SECTION = "agent"  # config/agent.yaml holds the defaults

RUNNER_PARAMETERS = {
    "epochs": Param(int, "training epochs; after the last evaluation the robot is disarmed and the run ends",
                    AT_LEAST_1),
    "steps_per_epoch": Param(int, "env steps (training transitions) per epoch, each epoch followed by one "
                             "deterministic evaluation episode", AT_LEAST_1),
    "start_steps": Param(int, "uniform random actions for the first N env steps", NON_NEGATIVE),
    "episode_steps": Param(int, "control steps per episode (leg: 1000 = 2 s at 500 Hz; MuJoCo tasks also end on "
                           "a terminal state)", AT_LEAST_1),
    "transitions_per_batch": Param(int, "transitions per TransitionBatch; partial batches go out at episode end",
                                   AT_LEAST_1),
    "seed": Param(int, "seed of the random actions and of the policy's sampling noise", NON_NEGATIVE),
    "max_torque": Param(float, "leg: joint torque [N*m] of action 1.0 (the action scale); MuJoCo tasks map "
                        "[-1, 1] onto their action box", positive_up_to(STALL_TORQUE_NM)),
    "marker_frame": Param(str, "frame_id of the leg's foot-path markers (its hip frame)"),
    "policy_wait_warning_s": Param(float, "a pacing hold longer than this is a learning stall: a WARN in the log "
                                   "and /diagnostics, and a line in run_dir/stalls.log", POSITIVE),
    "pacing": Param(str, "how the robot keeps Algorithm 1's update ratio: step (hold each command while the "
                    "policy lags; lockstep simulation only), episode (hold the homed robot before each episode "
                    "while the policy lags; hardware), off (never wait; the learner warns when its ratio falls "
                    "behind)", one_of(*PACING_MODES)),
    "max_policy_lag": Param(int, "pacing: wait while (env_steps - start_steps) - policy_version > max_policy_lag, "
                            "until a newer policy snapshot arrives; at least policy_period_updates", NON_NEGATIVE),
    "policy_period_updates": Param(int, "the learner's policy_period_updates (SAC updates between two policy "
                                   "snapshots); only checks max_policy_lag", AT_LEAST_1),
    "resume": Param(bool, "continue a run: wait for the learner's /mdemorl/status and carry on from its env steps "
                    "and epoch"),
}


def check_pacing(node_name: str, params: dict, prefix: str = "") -> dict:
    """``params`` if max_policy_lag suits policy_period_updates; else ValueError naming it and the fix."""
    lag, period = params["max_policy_lag"], params["policy_period_updates"]
    if params["pacing"] != "off" and not pacing_can_progress(lag, period):
        raise parameter_error(node_name, f"{prefix}max_policy_lag", f"is {lag} but must be >= "
                              f"policy_period_updates ({period}) while pacing is {params['pacing']}: the learner "
                              "publishes a snapshot only every policy_period_updates updates, so a smaller lag "
                              "could wait forever")
    return params
