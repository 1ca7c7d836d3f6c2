"""The drivers' rules about bad data from the robot, cycle by cycle on a stepped clock: the ROS-free loops against the
emulated MCUs on a real pty (``leg_rig``/``stochlite_rig`` in conftest.py), with the shipped parameters. A fault burst
of the MCU starts at a tick T; the state it sends then reaches the loop in cycle T + 1."""
import dataclasses
import math
import random

import numpy as np
import pytest
from stochlite_bringup.node_parameters import config_defaults

from leg_driver.emulated_mcu import STARVE_EVERY, FaultPlan
from leg_driver.loop_timing import NS_PER_S
from leg_driver.mcu_loop import state_problem
from leg_driver.protocol_frames import SERVOS, State, Status, StochliteState

LEG = config_defaults("hw_interface.yaml", "hw_interface")
STOCHLITE = config_defaults("stochlite_hw_interface.yaml", "stochlite_hw_interface")
TORQUE = (1.0, -0.5)  # N*m: inside every clamp, so the MCU receives it unchanged
ZERO = (0.0, 0.0)
BURST_TICK = 50  # the MCU tick of the first fault burst: the rigs have armed by then


def burst(kind: str, ticks: int, rate_hz: int = LEG["loop_rate_hz"]) -> dict:
    """The rig parameter of one burst of ``kind`` lasting ``ticks`` MCU ticks."""
    return {"plan": FaultPlan((kind,), every_s=10.0, for_s=(ticks - 0.5) / rate_hz, first_s=BURST_TICK / rate_hz)}


def burst_tick(rig) -> int:
    """The MCU tick (= loop cycle) at which the first burst started."""
    t_ns = next(int(line.split(",")[0]) for line in rig.mcu.recorder.lines if ",fault_start," in line)
    return t_ns * rig.loop.settings.rate_hz // NS_PER_S


def run_through_burst(rig, cycles: int) -> dict[int, str]:
    """Arm, then ``cycles`` cycles with a fresh command each; the loop's fault after each cycle."""
    rig.start_armed()
    faults = {}
    for _ in range(cycles):
        cycle = rig.cycle(TORQUE)
        faults[cycle] = rig.loop.fault
    return faults


def sent_after(rig, first: int, last: int) -> list[tuple[float, ...]]:
    return [rig.received(c) for c in range(first, last + 1)]


@pytest.mark.parametrize("leg_rig, kind, problem", [
    (burst("nan_position", 10), "nan_position", "position[0] = nan"),
    (burst("inf_velocity", 10), "inf_velocity", "velocity[0] = inf"),
    (burst("wild_position", 10), "wild_position", "position[0] = 1e+30 rad, outside [-2, 2]"),
], indirect=["leg_rig"])
def test_leg_invalid_states_zero_the_torque_from_the_cycle_they_arrive_until_healthy_and_are_counted(
        leg_rig, kind, problem):
    rig = leg_rig
    faults = run_through_burst(rig, 60)  # to 160 ms; ten invalid states at 100-118 ms
    start = burst_tick(rig)
    invalid = [c for c, fault in faults.items() if fault.startswith("invalid state")]
    assert invalid == list(range(start + 1, start + 11))  # each state of the burst, from the cycle it arrives
    assert all(problem in faults[c] for c in invalid)
    healing = [c for c, fault in faults.items() if fault.startswith("recovering")]
    assert healing == list(range(start + 11, start + 11 + LEG["recovery_cycles"] - 1))
    assert sent_after(rig, start - 5, start) == [TORQUE] * 6
    assert set(sent_after(rig, start + 1, healing[-1] + 1)) == {ZERO}
    assert rig.received(healing[-1] + 2) == TORQUE  # a command that arrived after the fault ended
    loop = rig.loop
    assert loop.invalid_states == 10 and loop.link_faults == 1 and problem in loop.last_fault
    assert all(not state_problem(s.state, loop.limits.joint_min, loop.limits.joint_max, LEG["state_margin_rad"],
                                 LEG["state_max_velocity"]) for s in rig.samples)  # none handed on to ROS


@pytest.mark.parametrize("leg_rig", [burst("starve", 100)], indirect=True)
def test_leg_a_starved_state_stream_keeps_zero_torque_for_the_whole_burst(leg_rig):
    rig = leg_rig
    faults = run_through_burst(rig, 150)  # to 340 ms; states at 50 Hz from 100 to 300 ms
    start = burst_tick(rig)
    during = range(start + 1, start + 100)
    on = [c for c in during if rig.received(c) != ZERO]
    # the burst's first state comes at its start; three cycles later the 2-cycle state timeout trips, and the states
    # that follow every 10 cycles give 3 healthy cycles each, never the 10 in a row that end the fault
    assert on == list(range(start + 1, start + 4)) and all(faults[c] for c in during if c not in on)
    assert rig.loop.link_faults == 1 and rig.loop.watchdog_trips == 0
    assert rig.received(max(faults)) == TORQUE and not faults[max(faults)]  # healthy again after the burst
    assert STARVE_EVERY == 10


@pytest.mark.parametrize("leg_rig", [burst("frozen_ack", 20)], indirect=True)
def test_leg_a_frozen_acknowledgement_zeroes_the_torque_from_the_fifth_frame(leg_rig):
    rig = leg_rig
    faults = run_through_burst(rig, 60)
    start = burst_tick(rig)  # the states from this tick on acknowledge the frame of cycle start - 1
    assert sent_after(rig, start, start + 3) == [TORQUE] * 4  # acknowledgements 1 to 3 frames behind
    assert faults[start + 4] == "the MCU acknowledges commands 4 frames late"  # max_ack_lag_cycles
    assert set(sent_after(rig, start + 4, start + 20)) == {ZERO}


@pytest.mark.parametrize("leg_rig", [burst("unknown_frame", 10)], indirect=True)
def test_leg_unknown_frames_are_dropped_counted_and_starve_the_link(leg_rig):
    rig = leg_rig
    faults = run_through_burst(rig, 60)
    start = burst_tick(rig)
    assert rig.loop.link.dropped_frames == 10 and rig.loop.counters()["dropped_frames"] == 10
    assert faults[start + 3] == "no state from the MCU for more than 2 cycles"  # they carry no state
    assert set(sent_after(rig, start + 3, start + 10)) == {ZERO}


@pytest.mark.parametrize("leg_rig", [burst("over_temperature", 10)], indirect=True)
def test_leg_over_temperature_disarms_and_is_counted(leg_rig):
    rig = leg_rig
    run_through_burst(rig, 40)
    start = burst_tick(rig)
    assert not rig.loop.armed and rig.loop.mcu_flags == {"WATCHDOG": 0, "OVER_TEMPERATURE": 1}
    assert rig.received(start) == TORQUE  # the last TORQUE: disarmed in the cycle the flag arrives, HEARTBEAT after
    after = [line.split(",")[1] for line in rig.mcu.recorder.lines if int(line.split(",")[0]) > start * 2_000_000]
    assert "TORQUE" not in after and after.count("HEARTBEAT") >= 10


@pytest.mark.parametrize("leg_rig", [burst("nan_position", 20)], indirect=True)
def test_leg_homing_through_invalid_states_never_sends_nan_and_names_the_fault(leg_rig):
    rig = leg_rig
    rig.start_armed()
    request = rig.loop.start_home((0.3, -1.2), timeout_s=0.15)
    while not request.done.is_set():
        rig.cycle()
    start = burst_tick(rig)
    assert np.isfinite(torque_frames(rig)).all()
    assert set(sent_after(rig, start + 1, start + 20)) == {ZERO}  # no homing torque while the states are invalid
    assert any(frame != ZERO for frame in sent_after(rig, start - 5, start))  # it was homing before
    assert not request.ok and "last fault: invalid state from the MCU: position[0] = nan" in request.message


def torque_frames(rig) -> np.ndarray:
    """Every TORQUE frame the MCU received: [hip, knee] N*m."""
    return np.array([list(map(float, line.split(",")[3:5])) for line in rig.mcu.recorder.lines if ",TORQUE," in line])


def position_frames(rig) -> np.ndarray:
    """Every POSITION frame the MCU received: 12 targets [rad]."""
    return np.array([list(map(float, line.split(",")[3:3 + SERVOS])) for line in rig.mcu.recorder.lines
                     if ",POSITION," in line])


def random_value(rng: random.Random, typical: float) -> float:
    """A float a broken MCU might send: typical, huge, tiny, NaN or infinite."""
    choice = rng.random()
    if choice < 0.6:
        return rng.uniform(-typical, typical)
    if choice < 0.7:
        return rng.uniform(-1e30, 1e30)
    if choice < 0.8:
        return rng.choice((math.nan, math.inf, -math.inf))
    if choice < 0.9:
        return rng.choice((0.0, -0.0, 1e-40, 3.4e38))
    return rng.uniform(-3 * typical, 3 * typical)


class RandomStates:
    """Replaces the MCU's state values by random ones (seeded) in random stretches, keeping its ack and status."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.corrupting = False

    def corrupts(self) -> bool:
        """Whether this state is corrupted: stretches of either kind, 20 states long on average."""
        if self.rng.random() < 0.05:
            self.corrupting = not self.corrupting
        return self.corrupting

    def leg(self, state: State) -> State:
        r = self.rng
        return dataclasses.replace(state, position=(random_value(r, 2.0), random_value(r, 2.0)),
                                   velocity=(random_value(r, 30.0), random_value(r, 30.0)),
                                   torque=(random_value(r, 10.0), random_value(r, 10.0)))

    def stochlite(self, state: StochliteState) -> StochliteState:
        r = self.rng
        return dataclasses.replace(
            state, position=tuple(random_value(r, 2.0) for _ in range(SERVOS)),
            velocity=tuple(random_value(r, 10.0) for _ in range(SERVOS)),
            quaternion=tuple(random_value(r, 1.0) for _ in range(4)) if r.random() < 0.3 else state.quaternion,
            gyro=tuple(random_value(r, 5.0) for _ in range(3)))


def with_random_states(rig, states: RandomStates, corrupt) -> None:
    """From now on, the MCU's states in ``states``' corrupted stretches get random values from ``corrupt``."""
    message = rig.mcu._state_message

    def state_message(now_ns, applied):
        state = message(now_ns, applied)
        return corrupt(state) if states.corrupts() else state
    rig.mcu._state_message = state_message


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_leg_torque_is_finite_and_within_limits_whatever_the_states_say(leg_rig, seed):
    """Property: random state values (NaN, inf, huge, plausible) in random stretches and random commands, while
    commanding and while homing: every TORQUE frame the MCU receives is finite and within max_torque, and no torque
    pushes a joint further beyond its limits."""
    rig, rng = leg_rig, random.Random(seed)
    rig.start_armed()
    states = RandomStates(seed)
    with_random_states(rig, states, states.leg)
    for step in range(600):
        if step == 300:
            rig.loop.start_home((0.3, -1.2), timeout_s=0.4)
        rig.cycle([rng.uniform(-50, 50), rng.uniform(-50, 50)] if rng.random() < 0.9 else None)
    taus = torque_frames(rig)
    assert len(taus) >= 500
    assert np.isfinite(taus).all() and np.abs(taus).max() <= LEG["max_torque"]
    assert rig.loop.invalid_states > 50 and (taus != 0).any()  # both kinds of stretches came
    limits = rig.loop.limits
    for sample in rig.samples:  # the valid states and the torque answered to each
        for k in range(2):
            q, tau = sample.state.position[k], sample.commanded[k]
            assert not (q > limits.joint_max[k] and tau > 0) and not (q < limits.joint_min[k] and tau < 0)


@pytest.mark.parametrize("seed", [1, 2])
def test_stochlite_targets_are_finite_within_limits_and_rate_limited_whatever_the_states_say(stochlite_rig, seed):
    """Property: random servo and IMU values in random stretches: every POSITION target the MCU receives is finite,
    within the joint limits, at most max_step_rad from the one before; its hold never holds a NaN."""
    rig, rng = stochlite_rig, random.Random(seed)
    rig.start_armed()
    states = RandomStates(seed)
    with_random_states(rig, states, states.stochlite)
    limits = rig.loop.limits
    for _ in range(300):
        command = np.clip(np.asarray(rig.samples[-1].state.position) + rng.uniform(-0.3, 0.3), limits.joint_min,
                          limits.joint_max) if rng.random() < 0.5 else None
        rig.cycle(None if command is None else command.tolist())
    targets = position_frames(rig)
    assert len(targets) >= 50 and np.isfinite(targets).all()
    assert (targets >= np.asarray(limits.joint_min) - 1e-6).all() and (targets <= np.asarray(limits.joint_max) + 1e-6).all()
    assert np.abs(np.diff(targets, axis=0)).max() <= STOCHLITE["max_step_rad"] + 1e-6
    assert rig.loop.invalid_states > 30


@pytest.mark.parametrize("stochlite_rig", [burst("nan_position", 10, STOCHLITE["loop_rate_hz"])], indirect=True)
def test_stochlite_nan_states_never_become_a_held_target(stochlite_rig):
    rig = stochlite_rig
    rig.start_armed()  # armed without a command: holding where it lies, also after the burst
    for _ in range(60):
        rig.cycle()
    targets = position_frames(rig)
    assert np.isfinite(targets).all() and rig.loop.invalid_states == 10
    assert rig.loop.holding and np.isfinite(rig.loop._hold).all()


def test_the_state_rule_names_the_first_bad_value():
    state = State(0, 0, Status(0), (0.1, -1.0), (0.0, 0.0), (0.0, 0.0))
    rule = dict(joint_min=(-1.5, -2.55), joint_max=(1.5, -0.05), margin_rad=0.5, max_velocity=60.0)
    assert state_problem(state, **rule) == ""
    assert state_problem(dataclasses.replace(state, torque=(0.0, math.nan)), **rule) == "torque[1] = nan"
    assert state_problem(dataclasses.replace(state, position=(0.1, 0.44)), **rule) == ""  # within the margin
    assert "position[1] = 0.46 rad, outside [-3.05, 0.45]" in state_problem(
        dataclasses.replace(state, position=(0.1, 0.46)), **rule)
    assert "velocity[0] = -61 rad/s" in state_problem(dataclasses.replace(state, velocity=(-61.0, 0.0)), **rule)
