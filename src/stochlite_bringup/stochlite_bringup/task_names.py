"""Names of the training tasks, importable without loading any simulator."""

LEG_TASK_NAME = "leg"
STOCHLITE_TASK_NAME = "stochlite"
GYM_TASK_NAMES = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5")
TASK_NAMES = (LEG_TASK_NAME, STOCHLITE_TASK_NAME, *GYM_TASK_NAMES)
OBSERVED_REWARD_TASKS = (LEG_TASK_NAME,)  # their observation determines the reward: tasks.observed_reward_fn


def robot_namespace(robot: str) -> str:
    """The ROS namespace of a robot's topics and services: ``leg``, ``stochlite``; ``HalfCheetah-v5`` -> ``halfcheetah``.

    Gymnasium ids are no valid ROS names ('-'), so their version suffix is dropped and they are lower-cased.
    """
    if robot not in TASK_NAMES:
        raise ValueError(f"unknown robot {robot!r}; valid names: {', '.join(TASK_NAMES)}")
    return robot.split("-")[0].lower()
