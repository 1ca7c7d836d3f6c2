"""The training graph as a ROS 2 launch description, for ``train.launch.py`` and the robot and workstation
launch files (needs ``launch`` and ``launch_ros``; the ``mdemorl`` launcher starts the same graph without).

It applies the launcher's rules: an unknown argument fails before any node starts, naming it
(``node_table.check_launch_configurations``), and any node exiting non-zero stops the launch, which then
exits 1 naming the node (``process_group.exit_decision``).
"""
from __future__ import annotations

import functools
import os
from typing import Mapping

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.events.process import ProcessExited
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from .graph_topics import JOINT_STATES_TOPIC
from .node_table import (IDLE_PREFIX, ROBOT_DESCRIPTIONS, arguments_to_give, check_launch_configurations,
                         resolve_arguments, training_nodes)
from .process_group import exit_decision
from .run_health import clear_health_records
from .task_names import robot_namespace


class NodeDied(RuntimeError):
    """A node of the graph exited non-zero; raised from its exit handler, so that launch exits 1."""


def training_launch_description(fixed: Mapping[str, str] | None = None) -> LaunchDescription:
    """Every launch argument but those in ``fixed`` (which this launch file sets), and the graph they give."""
    fixed = dict(fixed or {})
    return LaunchDescription([
        *(DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                choices=list(a.choices) or None) for a in arguments_to_give(fixed)),
        OpaqueFunction(function=_graph, kwargs={"fixed": fixed}),
    ])


def _graph(context: LaunchContext, fixed: dict[str, str]) -> list:
    check_launch_configurations(context.launch_configurations, fixed)
    given = {a.name: LaunchConfiguration(a.name).perform(context) for a in arguments_to_give(fixed)}
    args = resolve_arguments({**given, **fixed})
    clear_health_records(args["run_dir"], args["resume"] == "true")
    share = get_package_share_directory("stochlite_bringup")
    nodes = []  # (name, action, whether its clean exit ends the run)
    if args["rviz"] == "true":  # leg or stochlite (resolve_arguments refuses the rest); first, so that a
        robot = args["robot"]  # missing rviz2 fails before training starts
        with open(os.path.join(share, "urdf", ROBOT_DESCRIPTIONS[robot])) as urdf:
            description = urdf.read()
        nodes.append(("robot_state_publisher", Node(
            package="robot_state_publisher", executable="robot_state_publisher", name="robot_state_publisher",
            output="screen", parameters=[{"robot_description": description}],
            remappings=[("joint_states", f"/{robot_namespace(robot)}/{JOINT_STATES_TOPIC}")]), False))
        nodes.append(("rviz2", Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                                    arguments=["-d", os.path.join(share, "rviz", "train.rviz")]), False))
    for spec in training_nodes(args):
        nodes.append((spec.name, Node(package=spec.package, executable=spec.executable, name=spec.name,
                                      output="screen", parameters=[os.path.join(share, "config", spec.parameter_file),
                                                                   spec.parameters],
                                      prefix=" ".join(IDLE_PREFIX) if spec.idle else None), spec.ends_run))
    actions = []
    for name, node, ends_run in nodes:
        actions += [node, RegisterEventHandler(OnProcessExit(target_action=node,
                                                             on_exit=functools.partial(on_node_exit, name, ends_run)))]
    return actions


def on_node_exit(name: str, ends_run: bool, event: ProcessExited, context: LaunchContext) -> list | None:
    """Launch's side of ``exit_decision``: a clean end shuts the launch down (exit 0); a failure raises, which
    launch logs ("Caught exception in launch ...: node 'NAME' died with exit code N") before it stops every
    node and exits 1."""
    decision = exit_decision(name, event.returncode, ends_run, stopping=context.is_shutdown)
    if decision.failed:
        raise NodeDied(decision.reason)
    return [LogInfo(msg=decision.reason), Shutdown(reason=decision.reason)] if decision.ends_run else None
