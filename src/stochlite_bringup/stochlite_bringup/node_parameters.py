"""Typed node parameters whose defaults live in ``config/*.yaml`` (one definition of each default).

A node lists its parameters as ``ParameterDescriptor`` s with a type and a description;
:func:`declare_parameters_from_config` declares them with the defaults of the node's
section in the YAML file. Overrides (``--params-file``, ``-p name:=value``, a launch
file's parameters, ``parameter_overrides``) still win, as for any ROS 2 parameter.
"""

from typing import Any

import yaml
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from .package_files import package_file


def config_defaults(config_name: str, section: str) -> dict[str, Any]:
    """The ``ros__parameters`` of ``section`` in ``config/<config_name>``."""
    path = package_file("config", config_name)
    with path.open() as stream:
        content = yaml.safe_load(stream)
    try:
        return dict(content[section]["ros__parameters"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: expected the layout '{section}: ros__parameters: {{name: value}}'") from error


def declare_parameters_from_config(
    node: Node, config_name: str, section: str, descriptors: dict[str, ParameterDescriptor]
) -> dict[str, Any]:
    """Declare ``descriptors`` on ``node`` with defaults from ``config/<config_name>``; return the values.

    Raises ValueError if the file and the descriptors disagree on the names or a default's type.
    """
    defaults = config_defaults(config_name, section)
    missing, unknown = sorted(set(descriptors) - set(defaults)), sorted(set(defaults) - set(descriptors))
    if missing or unknown:
        raise ValueError(
            f"config/{config_name} section {section!r}: missing {missing}, unknown {unknown}; "
            f"it must set exactly {sorted(descriptors)}"
        )
    for name, descriptor in descriptors.items():
        default_type = Parameter.Type.from_parameter_value(defaults[name])
        if default_type.value != descriptor.type:
            raise ValueError(
                f"config/{config_name}: {name}={defaults[name]!r} is {default_type.name}, "
                f"but {section} declares it {Parameter.Type(descriptor.type).name}"
            )
    declared = node.declare_parameters(
        "", [(name, defaults[name], descriptor) for name, descriptor in descriptors.items()]
    )
    return {parameter.name: parameter.value for parameter in declared}
