"""Names of the training tasks, importable without loading any simulator."""

LEG_TASK_NAME = "leg"
GYM_TASK_NAMES = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5")
TASK_NAMES = (LEG_TASK_NAME, *GYM_TASK_NAMES)
