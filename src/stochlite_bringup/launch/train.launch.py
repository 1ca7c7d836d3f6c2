"""The M-DeMoRL training graph on a ROS 2 install.

    ros2 launch stochlite_bringup train.launch.py robot:=leg sim:=pybullet epochs:=20
    ros2 launch stochlite_bringup train.launch.py sim:=none port:=/dev/ttyACM0     # the real leg
    ros2 launch stochlite_bringup train.launch.py robot:=HalfCheetah-v5 sim:=mujoco
    ros2 launch stochlite_bringup train.launch.py rviz:=true   # + robot_state_publisher and rviz2
    ros2 launch stochlite_bringup train.launch.py robot:=stochlite rviz:=true   # the quadruped walking uphill

The nodes and their parameters come from stochlite_bringup.node_table, which the project's own
launcher (`mdemorl train name:=value ...`) reads too, and the same rules hold: an unknown argument fails
before any node starts; the launch exits 0 when the learner finishes, and 1, naming the node, when any node
exits non-zero. Every launch configuration in scope must be an argument of this file, so a launch file with
arguments of its own includes it in a GroupAction(scoped=True, forwarding=False).
"""
from stochlite_bringup.launch_actions import training_launch_description


def generate_launch_description():
    return training_launch_description()
