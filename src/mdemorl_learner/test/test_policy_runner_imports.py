"""The policy runner, its numpy actor and the leg's observation and reward run without torch, ROS or simulators."""
import subprocess
import sys
import textwrap

HEAVY = ("torch", "rclpy", "gymnasium", "pybullet", "mujoco")

# A fresh interpreter: the leg's task turns synthetic joint states into samples, a runner with a random numpy
# actor acts on them through random, sampled and evaluation episodes.
LEG_EPISODES = textwrap.dedent(f"""
    import sys

    import numpy as np

    from mdemorl_learner.numpy_actor import NumpyActor
    from mdemorl_learner.policy_runner import PolicyRunner, TaskSample
    from stochlite_bringup.tasks.leg_task import ACT_DIM, OBS_DIM, LegTask

    rng = np.random.default_rng(0)
    sizes = [OBS_DIM, 32, 32, 2 * ACT_DIM]
    actor = NumpyActor([0.3 * rng.standard_normal((n_out, n_in)) for n_in, n_out in zip(sizes, sizes[1:])],
                       [0.1 * rng.standard_normal(n_out) for n_out in sizes[1:]])
    task, runner = LegTask(), PolicyRunner(ACT_DIM, episode_steps=20, steps_per_epoch=30, epochs=2, start_steps=10,
                                           transitions_per_batch=8, seed=0)
    ends, transitions = [], 0
    while not runner.finished:
        runner.start_episode()
        q, qdot, t = np.array([0.3, -1.2]), np.zeros(2), 0.0
        while True:
            leg = task.sample(q, qdot, t)
            step = runner.step(TaskSample(leg.obs, leg.reward, t, False, leg.foot_position,
                                          leg.desired_foot_position), actor, 1)
            transitions += sum(len(batch.data["reward"]) for batch in
                               runner.take_batches(flush=step.episode_end is not None))
            if step.episode_end is not None:
                ends.append(step.episode_end)
                break
            assert step.action.shape == (ACT_DIM,) and np.all(np.abs(step.action) <= 1.0)
            qdot = qdot + 0.002 * 50.0 * step.action  # a toy torque response, 2 ms steps
            q, t = q + 0.002 * qdot, t + 0.002
    assert [(end.evaluation, end.epoch) for end in ends] == [(False, 0), (False, 0), (True, 1),
                                                             (False, 1), (False, 1), (True, 2)], ends
    assert transitions == runner.env_steps == 60 and ends[2].foot.shape == (20, 2)
    assert np.isfinite([end.episode_return for end in ends]).all()
    loaded = [name for name in {HEAVY!r} if name in sys.modules]
    assert not loaded, f"imported {{loaded}}"
""")


def test_runner_actor_and_leg_task_run_without_torch_ros_or_simulators():
    proc = subprocess.run([sys.executable, "-c", LEG_EPISODES], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
