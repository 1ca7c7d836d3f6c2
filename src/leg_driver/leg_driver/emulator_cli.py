"""``mdemorl emulate robot:=leg|stochlite [name:=value ...]``: the emulated robot MCU on a pty until Ctrl-C.

A real MCU never waits for the host: the tick loop asks for SCHED_FIFO above the driver's loop (50) and says
at start-up what it got; each second in which it missed ticks anyway is reported as it ends.
"""
from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path

from .emulated_mcu import FAULT_EFFECTS, FAULT_KINDS, FaultPlan
from .emulator import EmulatedLegMcu
from .loop_timing import lock_memory, request_realtime
from .stochlite_emulator import EmulatedStochliteMcu

ROBOTS = ("leg", "stochlite")
ROBOT_DEFAULTS = {"leg": {"rate_hz": "500", "watchdog_ms": "20.0"}, "stochlite": {"rate_hz": "100", "watchdog_ms": "50.0"}}
ARGUMENTS = {  # name: (default, description)
    "robot": ("leg", "robot whose MCU is emulated: leg (2 torque joints) or stochlite (12 position servos + IMU)"),
    "link": ("", "path of the symlink to the pty (what port:= takes); default /tmp/mdemorl-<robot>-<pid>"),
    "faults": ("", f"comma-separated fault bursts, taken in turn: {','.join(FAULT_KINDS)}"),
    "every_s": ("2.0", "seconds between the starts of two fault bursts"),
    "for_s": ("0.2", "length of a fault burst [s]"),
    "first_s": ("2.0", "start of the first burst, seconds after start-up"),
    "noise": ("0.0", "probability per state frame of a single random fault (garbage before it, bad CRC, drop)"),
    "delay_ms": ("20.0", "extra latency of state frames in a delay burst [ms]"),
    "watchdog_ms": ("", "the leg's MCU zeroes the torque, StochLite's holds the servos' measured positions, when "
                    "the host is silent this long [ms]; default 20 (leg), 50 (stochlite)"),
    "rate_hz": ("", "MCU tick and state rate [Hz]; default 500 (leg; physics step 1/rate), 100 (stochlite)"),
    "seed": ("0", "seed of the random faults"),
    "record": ("", "CSV file for every received command frame and fault burst (written at exit)"),
    "operator_s": ("1.0", "stochlite: an emulated operator sets the robot upright after it lay fallen this long [s] "
                   "(0: never; a reset then fails until the emulator restarts)"),
    "realtime_priority": ("60", "SCHED_FIFO priority of the tick loop, above the driver's loop (50) as a real MCU "
                          "never waits for the host (0: normal scheduling; refused without CAP_SYS_NICE or an rtprio "
                          "limit, which start-up says)"),
}
USAGE = "usage: mdemorl emulate robot:=leg|stochlite [name:=value ...]   (mdemorl emulate --help lists them)"


def print_help() -> None:
    print(USAGE + "\n\narguments:")
    for name, (default, text) in ARGUMENTS.items():
        print(f"  {name}:={default or '<empty>'}\n      {text}")
    print("\nfault bursts:")
    for kind, effect in FAULT_EFFECTS.items():
        print(f"  {kind}: {effect}")


def parse(words: list[str]) -> dict[str, str]:
    """Defaults filled in; ValueError names a malformed or unknown argument and the fix."""
    given = {}
    for word in words:
        name, sep, value = word.partition(":=")
        if not sep or name not in ARGUMENTS:
            raise ValueError(f"argument {word!r} is not name:=value with a name of: {', '.join(ARGUMENTS)}")
        given[name] = value
    args = {name: given.get(name, default) for name, (default, _) in ARGUMENTS.items()}
    if args["robot"] not in ROBOTS:
        raise ValueError(f"robot:={args['robot']} has no emulated MCU; use robot:=leg or robot:=stochlite")
    for name, default in ROBOT_DEFAULTS[args["robot"]].items():
        args[name] = args[name] or default
    if not 0 <= number(args, "realtime_priority", int) <= 99:
        raise ValueError(f"realtime_priority:={args['realtime_priority']} must be in 0..99 (0: normal scheduling)")
    return args


def number(args: dict[str, str], name: str, kind=float):
    try:
        return kind(args[name])
    except ValueError:
        raise ValueError(f"{name}:={args[name]} must be a{'n integer' if kind is int else ' number'}") from None


def build(args: dict[str, str]) -> EmulatedLegMcu | EmulatedStochliteMcu:
    kinds = tuple(k for k in args["faults"].split(",") if k)
    plan = FaultPlan(kinds, number(args, "every_s"), number(args, "for_s"), number(args, "first_s"),
                     number(args, "noise"), number(args, "delay_ms"))
    link = Path(args["link"] or f"/tmp/mdemorl-{args['robot']}-{os.getpid()}")
    record = Path(args["record"]) if args["record"] else None
    if args["robot"] == "stochlite":
        return EmulatedStochliteMcu(link, plan, number(args, "rate_hz", int), number(args, "watchdog_ms"),
                                    seed=number(args, "seed", int), record=record,
                                    operator_s=number(args, "operator_s"))
    return EmulatedLegMcu(link, plan, number(args, "rate_hz", int), number(args, "watchdog_ms"),
                          seed=number(args, "seed", int), record=record)


def scheduling_line(priority: int) -> str:
    """Ask for SCHED_FIFO at ``priority`` for this thread (the tick loop's); the start-up line saying what it got."""
    scheduling = request_realtime(priority)
    if os.sched_getscheduler(0) == os.SCHED_FIFO:
        return f"mdemorl emulate: tick loop at {scheduling}, {lock_memory()}"
    return (f"mdemorl emulate: WARNING: tick loop at {scheduling}; on a loaded machine it will miss ticks "
            f"(each second that does is reported here)")


def main(words: list[str]) -> int:
    if words and words[0] in ("-h", "--help"):
        print_help()
        return 0
    try:
        args = parse(words)
        mcu = build(args)
    except ValueError as error:
        print(f"mdemorl emulate: error: {error}", file=sys.stderr)
        return 2
    stop: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    link = mcu.port.link
    faults = ", ".join(mcu.plan.kinds) or "none"
    robot = args["robot"]
    print(f"mdemorl emulate: {robot} MCU on {link} (pty {mcu.port.slave_name}), protocol v2, {mcu.rate_hz} Hz; "
          f"fault bursts: {faults}", flush=True)
    print(f"mdemorl emulate: train with: mdemorl train robot:={robot} sim:=none port:={link}", flush=True)
    print(scheduling_line(int(args["realtime_priority"])), flush=True)
    gc.freeze()  # the collector skips what start-up made: a full collection of it stalled a tick for ~12 ms
    try:
        mcu.run(lambda: bool(stop), lambda line: print(f"mdemorl emulate: WARNING: {line}", flush=True))
    finally:
        mcu.close()
    missed_pct = 100 * mcu.missed_ticks / max(mcu.deadlines, 1)
    print(f"mdemorl emulate: stopped after {mcu.ticks} ticks ({mcu.missed_ticks} missed = {missed_pct:.2f} %, "
          f"{mcu.port.dropped_writes} writes lost to a full pty"
          f"{f', {mcu.rightings} fallen robot(s) set upright' if robot == 'stochlite' else ''})", flush=True)
    return 0
