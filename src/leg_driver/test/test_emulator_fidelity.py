"""The emulated leg against the sim bridge's leg: the same physics for the same torques, and a reset that starts an
episode where the sim bridge's does.

The driver's torque loop drives the emulated MCU over a real pty on a stepped clock (``leg_rig``); the sim bridge's
:class:`~stochlite_bringup.sim_robots.SimulatedLeg`, built from ``sim_bridge.yaml``, gets the same torques.
"""
import numpy as np
import pytest
from stochlite_bringup.node_parameters import config_defaults
from stochlite_bringup.sim_robots import SimulatedLeg

from leg_driver.emulator_cli import parse

LEG = config_defaults("hw_interface.yaml", "hw_interface")
SIM = config_defaults("sim_bridge.yaml", "sim_bridge")
STEPS = 500  # 1 s at 500 Hz
PUSHES = 3  # resets, each after PUSH_CYCLES cycles of random torque
PUSH_CYCLES = 300
AGENT_LATENCY_CYCLES = 50  # the episode's first command comes 100 ms after the reset's answer
# the driver's joint window, clamps and speed limit may not cut any torque of the test's: it compares the physics
NO_CLAMPS = {"limits": {"max_velocity": 28.0, "joint_min": (-10.0, -10.0), "joint_max": (10.0, 10.0)}}


def sim_bridge_leg() -> SimulatedLeg:
    return SimulatedLeg(1.0 / SIM["physics_rate_hz"], SIM["max_torque"])


def test_the_emulator_the_driver_and_the_sim_bridge_run_the_leg_at_one_rate_and_torque_limit():
    emulate = parse(["robot:=leg"])
    assert int(emulate["rate_hz"]) == LEG["loop_rate_hz"] == SIM["physics_rate_hz"]  # physics step 2 ms each
    assert LEG["max_torque"] == SIM["max_torque"]  # the driver clamps where the sim bridge does


def run_side_by_side(rig, torques: np.ndarray):
    """Both legs from the start pose at rest, then ``torques`` in turn; (the emulator's STATE frames, the sim bridge's
    states, the torques the MCU applied)."""
    rig.start_armed()
    bridge = sim_bridge_leg()
    bridge.reset()
    rig.cycle(command=torques[0].tolist())
    rig.mcu.sim.set_state(*bridge.joint_state()[:2])  # the emulated MCU's next tick applies torques[0] from there
    start_ns = rig.clock()
    bridge_states = []
    for tau in torques[1:]:
        rig.cycle(command=tau.tolist())
    for _ in range(2):
        rig.cycle()  # the last command's cycle, and the cycle that reads its state
    emulated = [s.state for s in rig.samples if s.state.mcu_time_us * 1000 > start_ns][:len(torques)]
    for state in emulated:
        bridge.step(np.asarray(state.torque))
        bridge_states.append(bridge.joint_state()[:2])
    bridge.close()
    return emulated, np.asarray(bridge_states), np.asarray([s.torque for s in emulated])


@pytest.mark.parametrize("leg_rig", [NO_CLAMPS], indirect=True)
def test_the_same_torques_give_the_emulated_leg_and_the_sim_bridges_leg_the_same_states(leg_rig):
    """Exact: the serial protocol carries float32 torques, so these are float32 values, which both legs apply as they
    are; the STATE frame rounds the emulator's float64 state to float32, so the sim bridge's is rounded alike."""
    max_torque = SIM["max_torque"]
    torques = np.random.default_rng(0).uniform(-max_torque, max_torque, (STEPS, 2)).astype(np.float32)
    emulated, bridge, applied = run_side_by_side(leg_rig, torques.astype(np.float64))
    assert len(emulated) == STEPS
    np.testing.assert_array_equal(applied, torques)  # the MCU applied each command, in its own tick
    np.testing.assert_array_equal([s.position for s in emulated], bridge[:, 0].astype(np.float32))
    np.testing.assert_array_equal([s.velocity for s in emulated], bridge[:, 1].astype(np.float32))
    assert np.ptp(bridge[:, 1], axis=0).min() > 5.0  # both joints swung: the comparison covers real motion


@pytest.mark.parametrize("leg_rig", [NO_CLAMPS], indirect=True)
def test_float64_commands_differ_only_by_the_protocols_float32_torques(leg_rig):
    """The sim bridge applies a float64 command as it is, the MCU as the TORQUE frame's float32 (a relative error of
    at most 6e-8); over 1 s of random torques the dynamics grow that to 5e-5 rad and 4e-4 rad/s (measured), far below a
    joint encoder's resolution (a 14-bit encoder: 4e-4 rad). The tolerances leave a factor of 20."""
    max_torque = SIM["max_torque"]
    torques = np.random.default_rng(0).uniform(-max_torque, max_torque, (STEPS, 2))
    emulated, _, applied = run_side_by_side(leg_rig, torques)
    np.testing.assert_array_equal(applied, torques.astype(np.float32))
    bridge = sim_bridge_leg()
    bridge.reset()
    states = []
    for tau in torques:
        bridge.step(tau)
        states.append(bridge.joint_state()[:2])
    bridge.close()
    states = np.asarray(states)
    np.testing.assert_allclose([s.position for s in emulated], states[:, 0], rtol=0, atol=1e-3)
    np.testing.assert_allclose([s.velocity for s in emulated], states[:, 1], rtol=0, atol=1e-2)


def test_a_reset_holds_the_emulated_leg_where_the_sim_bridges_reset_puts_it_until_the_first_command(leg_rig):
    """A reset of the real leg is the driver's PID homing, so the emulator's is the same: no message the real MCU
    lacks. It ends once each joint is within ``home_tolerance_rad`` and slower than 10x that for 50 ms, then holds
    the pose until the agent's first command: the episode starts within that tolerance of the sim bridge's start
    (its joints exactly at the start pose, at rest), however late the command."""
    rig = leg_rig
    rig.start_armed()
    bridge = sim_bridge_leg()
    bridge.reset()
    start_q, start_qdot = bridge.joint_state()[:2]
    bridge.close()
    tolerance = LEG["home_tolerance_rad"]
    rng = np.random.default_rng(1)
    for _ in range(PUSHES):
        for _ in range(PUSH_CYCLES):
            rig.cycle(command=rng.uniform(-LEG["max_torque"], LEG["max_torque"], 2).tolist())
        assert np.abs(rig.mcu.sim.joint_state()[0] - start_q).max() > 0.2  # pushed well away
        request = rig.loop.start_home(start_q, LEG["home_timeout_s"])
        while not request.done.is_set():
            rig.cycle()
        assert request.ok, request.message
        held_from = rig.cycle()
        for _ in range(AGENT_LATENCY_CYCLES):
            rig.cycle()
        q, qdot = rig.mcu.sim.joint_state()
        assert np.abs(q - start_q).max() < tolerance and np.abs(qdot - start_qdot).max() < 10 * tolerance, (q, qdot)
        assert all(rig.received(c) != (0.0, 0.0) for c in range(held_from, held_from + AGENT_LATENCY_CYCLES))  # held
        last = rig.cycle(command=[1.5, -0.5])
        assert rig.received(rig.cycle()) == (1.5, -0.5)  # the first command ends the hold
        assert rig.received(last) != (1.5, -0.5)


def test_a_disarm_ends_the_hold_after_a_reset(leg_rig):
    rig = leg_rig
    rig.start_armed()
    request = rig.loop.start_home((0.3, -1.2), LEG["home_timeout_s"])
    while not request.done.is_set():
        rig.cycle()
    assert request.ok and rig.received(rig.cycle()) != (0.0, 0.0)
    for armed in (False, True):
        rig.loop.set_armed(armed)
        for _ in range(30):
            if rig.loop.mcu_armed == armed:
                break
            rig.cycle()
    assert rig.loop.mcu_armed
    assert all(rig.received(rig.cycle()) == (0.0, 0.0) for _ in range(20))  # re-armed: no hold without a new reset
