"""Typed, checked, read-only node parameters whose defaults live in ``config/<node>.yaml``.

A node lists its parameters as ``{name: Param(type, description, rule)}``; :func:`declare_parameters`
declares them with the defaults of the node's section in ``config/<node>.yaml`` (one definition of
each default) and checks every value against its :class:`Rule`. Overrides (``--params-file``,
``-p name:=value``, a launch file's parameters, ``parameter_overrides``) still win, as for any
ROS 2 parameter, and are checked the same way.
"""
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter

from .package_files import package_file


@dataclass(frozen=True)
class Rule:
    """A constraint on a parameter value, and its wording for the descriptor and errors.

    With ``float_range`` (inclusive) ROS itself refuses values outside it too, on every set.
    """

    test: Callable[[Any], bool]
    text: str
    float_range: tuple[float, float] | None = None


def one_of(*choices: str) -> Rule:
    return Rule(lambda v: v in choices, "one of " + ", ".join(choices))


def positive_up_to(high: float) -> Rule:
    return Rule(lambda v: 0 < v <= high, f"in (0, {high}]")


def within(low: float, high: float) -> Rule:
    """``low <= v <= high``, also declared as the parameter's floating-point range."""
    return Rule(lambda v: low <= v <= high, f"in [{low}, {high}]", (low, high))


AT_LEAST_1 = Rule(lambda v: v >= 1, ">= 1")
NON_NEGATIVE = Rule(lambda v: v >= 0, ">= 0")
POSITIVE = Rule(lambda v: v > 0, "> 0")
UNIT_OPEN_LOW = positive_up_to(1)
UNIT_CLOSED = Rule(lambda v: 0 <= v <= 1, "in [0, 1]")
UNIT_OPEN_HIGH = Rule(lambda v: 0 <= v < 1, "in [0, 1)")

_PARAMETER_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                    float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
                    list[str]: ParameterType.PARAMETER_STRING_ARRAY, list[float]: ParameterType.PARAMETER_DOUBLE_ARRAY}


@dataclass(frozen=True)
class Param:
    """A read-only node parameter: its type, description and rule (its default is in config/<node>.yaml)."""

    type: type  # bool, int, float, str, list[str] or list[float]
    description: str
    rule: Rule | None = None

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(type=_PARAMETER_TYPES[self.type], description=self.description,
                                         read_only=True)
        if self.rule is not None:
            descriptor.additional_constraints = self.rule.text
            if self.rule.float_range is not None:
                low, high = self.rule.float_range
                descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high)]
        return descriptor


def config_defaults(config_name: str, section: str) -> dict[str, Any]:
    """The ``ros__parameters`` of ``section`` in ``config/<config_name>``."""
    path = package_file("config", config_name)
    with path.open() as stream:
        content = yaml.safe_load(stream)
    try:
        return dict(content[section]["ros__parameters"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: expected the layout '{section}: ros__parameters: {{name: value}}'") from error


def parameter_error(node_name: str, name: str, problem: str) -> ValueError:
    """ValueError naming the parameter, what is wrong and where to fix it."""
    return ValueError(f"parameter '{name}' {problem}; fix it in stochlite_bringup/config/{node_name}.yaml "
                      f"or pass -p {name}:=<value>")


def declare_parameters(node: Node, node_name: str, parameters: dict[str, Param], section: str = "",
                       prefix: str = "") -> dict[str, Any]:
    """Declare ``parameters`` on ``node`` with defaults from ``config/<node_name>.yaml``; return the values.

    With ``section``, the parameters are another node's, a subset of those in ``config/<section>.yaml`` (one
    definition of their defaults), declared here under ``prefix`` (``runner.epochs``); the values come back
    without it. Raises ValueError if the file and ``parameters`` disagree on the names or a default's type, or
    if a value breaks its rule.
    """
    section = section or node_name
    config_name = f"{section}.yaml"
    defaults = config_defaults(config_name, section)
    missing = sorted(set(parameters) - set(defaults))
    unknown = sorted(set(defaults) - set(parameters)) if section == node_name else []
    if missing or unknown:
        raise ValueError(
            f"config/{config_name} section {section!r}: missing {missing}, unknown {unknown}; "
            f"it must set exactly {sorted(parameters)}"
        )
    descriptors = {name: param.descriptor() for name, param in parameters.items()}
    for name, descriptor in descriptors.items():
        default_type = Parameter.Type.from_parameter_value(defaults[name])
        if default_type.value != descriptor.type:
            raise ValueError(
                f"config/{config_name}: {name}={defaults[name]!r} is {default_type.name}, "
                f"but {section} declares it {Parameter.Type(descriptor.type).name}"
            )
    declared = node.declare_parameters(
        "", [(prefix + name, defaults[name], descriptor) for name, descriptor in descriptors.items()]
    )
    values = {parameter.name[len(prefix):]: parameter.value for parameter in declared}
    for name, param in parameters.items():
        if param.rule is not None and not param.rule.test(values[name]):
            raise parameter_error(section, prefix + name, f"is {values[name]!r} but must be {param.rule.text}")
    return values
