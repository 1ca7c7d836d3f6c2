"""Message definitions as rosbag2 stores them in MCAP (schema encoding ``ros2msg``), from the installed .msg files.

A definition is the type's own .msg text followed, once per nested type (depth first), by a line of 80
``=`` and ``MSG: pkg/Type`` with that type's .msg text, so that a reader without the packages can decode.
"""
from __future__ import annotations

import re
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

PRIMITIVES = frozenset({"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
                        "uint32", "int64", "uint64", "string", "wstring"})
SEPARATOR = "=" * 80
_FIELD = re.compile(r"^\s*([A-Za-z_][\w/]*)(?:<=\d+)?(?:\[[^\]]*\])?\s+([A-Za-z_]\w*)")


def msg_file(type_name: str) -> Path:
    """The .msg file of ``pkg/msg/Type`` (or ``pkg/Type``); ValueError naming the type if it is not installed."""
    package, _, name = _split(type_name)
    try:
        path = Path(get_package_share_directory(package)) / "msg" / f"{name}.msg"
    except PackageNotFoundError:
        raise ValueError(f"message package {package!r} of {type_name} is not installed") from None
    if not path.is_file():
        raise ValueError(f"no definition of {type_name}: {path} is missing")
    return path


def nested_types(text: str, package: str) -> list[str]:
    """The non-primitive field types of a .msg text, as ``pkg/Type``, in order (constants are skipped)."""
    types = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        match = _FIELD.match(line)
        if not match or _is_constant(line):
            continue
        field_type = match.group(1)
        if field_type in PRIMITIVES:
            continue
        types.append(field_type if "/" in field_type else f"{package}/{field_type}")
    return types


def message_definition(type_name: str) -> str:
    """The ros2msg schema text of ``type_name`` (e.g. ``sensor_msgs/msg/JointState``)."""
    package, _, name = _split(type_name)
    text = msg_file(type_name).read_text()
    parts, seen = [text.rstrip("\n")], set()

    def add_nested(of_text: str, of_package: str) -> None:
        for nested in nested_types(of_text, of_package):
            nested_package, _, nested_name = _split(nested)
            key = f"{nested_package}/{nested_name}"
            if key in seen:
                continue
            seen.add(key)
            nested_text = msg_file(key).read_text()
            parts.append(f"{SEPARATOR}\nMSG: {key}\n{nested_text.rstrip(chr(10))}")
            add_nested(nested_text, nested_package)

    add_nested(text, package)
    return "\n".join(parts) + "\n"


def _split(type_name: str) -> tuple[str, str, str]:
    parts = type_name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], "msg", parts[2]
    if len(parts) == 2:
        return parts[0], "msg", parts[1]
    raise ValueError(f"{type_name!r} is not a message type name like 'sensor_msgs/msg/JointState'")


def _is_constant(line: str) -> bool:
    """``TYPE NAME=value`` declares a constant, not a field."""
    tokens = line.split(None, 1)
    return len(tokens) == 2 and "=" in tokens[1] and tokens[1].split("=", 1)[0].strip().isupper()
