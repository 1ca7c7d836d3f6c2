"""The workstation's side of a split graph: the SAC learner, the model trainer, the DMD-MPC planner, the recorder.

    ros2 launch launch/robot.launch.py sim:=none port:=/dev/ttyACM0       # on the robot's computer
    ros2 launch launch/workstation.launch.py                              # on the workstation

Both take every argument of stochlite_bringup's train.launch.py (give both the same robot, epochs,
steps_per_epoch and seed); this file sets part:=workstation. The project's launcher does the same with
`mdemorl train part:=workstation ...`. DDS settings for two hosts: README, "Robot and workstation".
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def generate_launch_description():
    train = os.path.join(get_package_share_directory("stochlite_bringup"), "launch", "train.launch.py")
    return LaunchDescription([IncludeLaunchDescription(PythonLaunchDescriptionSource(train),
                                                       launch_arguments={"part": "workstation"}.items())])
