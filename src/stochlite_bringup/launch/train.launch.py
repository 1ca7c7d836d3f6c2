"""The M-DeMoRL training graph on a ROS 2 install.

    ros2 launch stochlite_bringup train.launch.py robot:=leg sim:=pybullet epochs:=20
    ros2 launch stochlite_bringup train.launch.py sim:=none port:=/dev/ttyACM0     # the real leg
    ros2 launch stochlite_bringup train.launch.py robot:=HalfCheetah-v5 sim:=mujoco
    ros2 launch stochlite_bringup train.launch.py rviz:=true   # + robot_state_publisher and rviz2
    ros2 launch stochlite_bringup train.launch.py robot:=stochlite rviz:=true   # the quadruped walking uphill

The nodes and their parameters come from stochlite_bringup.node_table, which the project's own
launcher (`mdemorl train name:=value ...`) reads too. The launch ends when the learner finishes.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from stochlite_bringup.graph_topics import JOINT_STATES_TOPIC
from stochlite_bringup.node_table import LAUNCH_ARGUMENTS, ROBOT_DESCRIPTIONS, resolve_arguments, training_nodes
from stochlite_bringup.task_names import robot_namespace


def _graph(context):
    args = resolve_arguments({a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGUMENTS})
    share = get_package_share_directory("stochlite_bringup")
    actions = []
    if args["rviz"] == "true":  # leg or stochlite (resolve_arguments refuses the rest); first, so that a
        robot = args["robot"]  # missing rviz2 fails before training starts
        with open(os.path.join(share, "urdf", ROBOT_DESCRIPTIONS[robot])) as urdf:
            description = urdf.read()
        actions.append(Node(package="robot_state_publisher", executable="robot_state_publisher",
                            name="robot_state_publisher", output="screen",
                            parameters=[{"robot_description": description}],
                            remappings=[("joint_states", f"/{robot_namespace(robot)}/{JOINT_STATES_TOPIC}")]))
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                            arguments=["-d", os.path.join(share, "rviz", "train.rviz")]))
    for spec in training_nodes(args):
        node = Node(package=spec.package, executable=spec.executable, name=spec.name, output="screen",
                    parameters=[os.path.join(share, "config", spec.parameter_file), spec.parameters])
        actions.append(node)
        if spec.ends_run:
            actions.append(RegisterEventHandler(OnProcessExit(
                target_action=node, on_exit=[Shutdown(reason=f"{spec.name} finished: training complete")])))
    return actions


def generate_launch_description():
    return LaunchDescription([
        *(DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                choices=list(a.choices) or None) for a in LAUNCH_ARGUMENTS),
        OpaqueFunction(function=_graph),
    ])
