"""The learning nodes' compute settings: the ``device`` parameter and its resolution with the node's dtype."""
from stochlite_bringup.node_parameters import Param, one_of, parameter_error

from .compute import DEVICES, ComputeChoice, resolve_compute

DEVICE_PARAMETER = Param(str, "where this node computes: auto (CUDA when torch sees a GPU, else the CPU), cpu or "
                         "cuda", one_of(*DEVICES))


def node_compute(node_name: str, params: dict, dtype_key: str) -> ComputeChoice:
    """Resolve ``params``' device and compute_dtype, the node's own dtype (``dtype_key``: sac_dtype, model_dtype or
    planner_dtype; the others resolve as ``auto``, unused); a device that cannot be had is a parameter error."""
    try:
        return resolve_compute(params["device"], **{dtype_key: params["compute_dtype"]})
    except ValueError as err:
        raise parameter_error(node_name, "device", str(err)) from err
