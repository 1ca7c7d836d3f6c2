"""ros2msg schemas from the installed .msg files, as rosbag2 writes them into MCAP."""
import pytest

from stochlite_bringup.message_definitions import SEPARATOR, message_definition, nested_types


def test_a_definition_holds_each_nested_type_once_after_its_own_text():
    text = message_definition("visualization_msgs/msg/Marker")
    sections = text.split(SEPARATOR + "\n")
    assert sections[0].rstrip().endswith("bool mesh_use_embedded_materials")
    names = [section.splitlines()[0] for section in sections[1:]]
    assert names[:3] == ["MSG: std_msgs/Header", "MSG: builtin_interfaces/Time", "MSG: geometry_msgs/Pose"]
    assert len(names) == len(set(names)) and "MSG: std_msgs/ColorRGBA" in names


def test_own_messages_and_constants_and_bad_names():
    assert "MSG: std_msgs/Header" in message_definition("mdemorl_msgs/msg/TaskStep")
    assert nested_types("uint8 OK=0\nstd_msgs/Header header  # comment\nPoint[] points\nfloat64[3] x\n",
                        "geometry_msgs") == ["std_msgs/Header", "geometry_msgs/Point"]
    with pytest.raises(ValueError, match="'no_such_msgs' of no_such_msgs/msg/Thing is not installed"):
        message_definition("no_such_msgs/msg/Thing")
    with pytest.raises(ValueError, match="is not a message type name"):
        message_definition("JointState")
