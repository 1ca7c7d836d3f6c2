"""Topics, services and QoS that the learner package adds to the graph (the planner's are in node_support)."""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

STATUS_TOPIC = "/mdemorl/status"
EVAL_RETURN_TOPIC = "/mdemorl/eval_return"  # one std_msgs/Float64 per evaluation: the n-th closes epoch n
TRAIN_RETURN_TOPIC = "/mdemorl/train_return"  # one std_msgs/Float64 per finished training episode
SAVE_CHECKPOINT_SERVICE = "/mdemorl/save_checkpoint"

# Episode returns are counted by the learner (epochs), so none may be lost.
RETURNS_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
# Foot-path markers: a late rviz still gets the last one.
MARKER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
STATUS_QOS = 10
ROBOT_QOS = 10  # joint states and effort commands, as the robot side
