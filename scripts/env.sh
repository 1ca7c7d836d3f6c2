# Source this to enter the project environment: the venv, the colcon workspace and safe DDS settings.
_mdemorl_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
source "$_mdemorl_root/.venv/bin/activate"
# shellcheck disable=SC1091
source "$_mdemorl_root/install/setup.bash"
# install/setup.bash replaces AMENT_PREFIX_PATH (the venv has no local_setup file): add the wheels back.
export AMENT_PREFIX_PATH="$AMENT_PREFIX_PATH:$VIRTUAL_ENV"
# The project's launcher, `mdemorl`.
export PATH="$_mdemorl_root/bin:$PATH"
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
unset _mdemorl_root
