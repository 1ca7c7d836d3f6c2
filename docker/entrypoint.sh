#!/usr/bin/env bash
# The image's entry point: the ROS install and the mdemorl workspace on the paths, then the command.
set -e
# shellcheck disable=SC1090
source "/opt/ros/$ROS_DISTRO/setup.bash"
# shellcheck disable=SC1091
source /mdemorl/install/setup.bash
exec "$@"
