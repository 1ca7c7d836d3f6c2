"""Names and QoS of the training graph's topics and services, one definition each."""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# The robot's interface, under its namespace (task_names.robot_namespace): <ns>/joint_states, ...
JOINT_STATES_TOPIC = "joint_states"
EFFORT_COMMANDS_TOPIC = "effort_commands"
JOINT_COMMANDS_TOPIC = "joint_commands"  # StochLite: 12 servo position targets [rad]
IMU_TOPIC = "imu"  # StochLite: sensor_msgs/Imu of the base
TORSO_RPY_TOPIC = "torso_rpy"  # StochLite: geometry_msgs/Vector3Stamped, base roll, pitch, yaw [rad]
GAIT_COMMAND_TOPIC = "gait_command"  # StochLite: the agent's decoded generator command (shifts, step length)
ENABLE_SERVICE = "enable"
RESET_SERVICE = "reset"
TASK_STEP_TOPIC = "task_step"  # MuJoCo tasks and StochLite: mdemorl_msgs/TaskStep
CLOCK_TOPIC = "/clock"

ENV_TOPIC = "/mdemorl/transitions/env"
MPC_TOPIC = "/mdemorl/transitions/mpc"
POLICY_TOPIC = "/mdemorl/policy"
DYNAMICS_TOPIC = "/mdemorl/dynamics"
STATUS_TOPIC = "/mdemorl/status"
EVAL_RETURN_TOPIC = "/mdemorl/eval_return"  # one std_msgs/Float64 per evaluation: the n-th closes epoch n
TRAIN_RETURN_TOPIC = "/mdemorl/train_return"  # one std_msgs/Float64 per finished training episode
SAVE_CHECKPOINT_SERVICE = "/mdemorl/save_checkpoint"
DIAGNOSTICS_TOPIC = "/diagnostics"

# Every message counts: none may be dropped.
EVERY_MESSAGE_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
# Only the latest message counts, and a late joiner still gets it.
LATEST_MESSAGE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
STREAM_QOS = 10  # keep the last 10: a late or slow reader may miss older messages

TRANSITIONS_QOS = EVERY_MESSAGE_QOS  # bursts of transitions
RETURNS_QOS = EVERY_MESSAGE_QOS  # episode returns: the learner counts epochs by them
SNAPSHOT_QOS = LATEST_MESSAGE_QOS  # policy and dynamics snapshots
MARKER_QOS = LATEST_MESSAGE_QOS  # foot-path markers: a late rviz still gets the last one
ROBOT_QOS = STREAM_QOS  # joint states, task steps, effort commands and the clock
STATUS_QOS = STREAM_QOS
DIAGNOSTICS_QOS = STREAM_QOS
