"""Declares a node's parameters (params.py) with typed ROS descriptors and guards later changes:

- every parameter gets a descriptor: type, description, allowed values (`additional_constraints`, and
  integer/floating-point ranges that `ros2 param describe` shows and rclpy enforces), read_only where a change
  needs a restart (rclpy then rejects `ros2 param set` with "read-only");
- start-up values are checked the same way: a bad one is one line `error: ... (fix: ...)`, exit 2;
- `ros2 param set` of a live parameter goes through `on_set`: rejected with the reason when not allowed,
  else applied by the node's `apply(changes)` once rclpy has stored it.

An integer given for a float parameter (`-p rate:=30`) is taken as 30.0, at start-up and at run time."""
from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.parameter import Parameter

from slt_deploy.errors import SltError

from .params import by_name

ROS_TYPE = {str: ParameterType.PARAMETER_STRING, int: ParameterType.PARAMETER_INTEGER,
            float: ParameterType.PARAMETER_DOUBLE, bool: ParameterType.PARAMETER_BOOL}
PARAM_TYPE = {str: Parameter.Type.STRING, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
              bool: Parameter.Type.BOOL}


def descriptor(s) -> ParameterDescriptor:
    d = ParameterDescriptor(name=s.name, type=ROS_TYPE[s.type], description=s.description,
                            additional_constraints=s.constraints(), read_only=s.read_only)
    if s.range and s.type is int:
        d.integer_range = [IntegerRange(from_value=int(s.range[0]), to_value=int(s.range[1]), step=1)]
    elif s.range and s.type is float:
        d.floating_point_range = [FloatingPointRange(from_value=float(s.range[0]), to_value=float(s.range[1]),
                                                     step=0.0)]
    return d


def declare_all(node, specs, apply=None) -> dict:
    """Declare `specs` on `node` (start-up values from -p / --params-file), check them, install the set-parameters
    guard. -> {name: value}. `apply(dict of changed live values)` is called after a successful change."""
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps -p/--params-file values here
    values = {}
    for s in specs:
        v = overrides[s.name].value if s.name in overrides else s.default
        if s.type is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        why = s.check(v)
        if why:
            raise SltError(f"parameter {why}",
                           f"pass -p {s.name}:=<{s.type.__name__}>"
                           + (f" ({s.constraints()})" if s.constraints() else "") + f", default {s.default!r}")
        values[s.name] = node.declare_parameter(s.name, v, descriptor(s), ignore_override=True).value
    table = by_name(specs)

    def pre_set(params):  # an integer for a float parameter: convert, as at start-up
        out = []
        for p in params:
            s = table.get(p.name)
            if s is not None and s.type is float and p.type_ == Parameter.Type.INTEGER:
                p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
            out.append(p)
        return out

    def on_set(params):
        for p in params:
            s = table.get(p.name)
            if s is None:
                continue  # rclpy's own (use_sim_time, ...)
            if s.read_only:  # rclpy checks this first; kept for parameters set with new descriptors
                return SetParametersResult(successful=False, reason=f"{s.name} is read-only: restart the node "
                                                                    "with the new value")
            why = s.check(p.value)
            if why:
                return SetParametersResult(successful=False, reason=why)
        return SetParametersResult(successful=True, reason="")

    def post_set(params):
        changed = {p.name: p.value for p in params if p.name in table}
        if changed and apply is not None:
            apply(changed)

    node.add_pre_set_parameters_callback(pre_set)
    node.add_on_set_parameters_callback(on_set)
    node.add_post_set_parameters_callback(post_set)
    return values
