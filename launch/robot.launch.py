"""The robot's side of a split graph: the simulator or serial driver, and the agent (policy at the control rate).

    ros2 launch launch/robot.launch.py sim:=none port:=/dev/ttyACM0       # on the robot's computer
    ros2 launch launch/workstation.launch.py                              # on the workstation

Both take every argument of stochlite_bringup's train.launch.py but part, which each file sets (part:=robot
here); give both the same robot, epochs, steps_per_epoch and seed. The project's launcher does the same with
`mdemorl train part:=robot ...`. DDS settings for two hosts: README, "Robot and workstation".
"""
from stochlite_bringup.launch_actions import training_launch_description


def generate_launch_description():
    return training_launch_description(fixed={"part": "robot"})
