"""The robots' binary serial protocol (leg and StochLite profiles): frame codec and payloads, free of ROS and pyserial.

Frame (little-endian)::

    A5 5A | len u8 | type u8 | seq u16 | payload (len bytes) | crc u16

``crc`` is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over ``len .. payload``. The layout and
the messages are documented in ``docs/serial_protocol.md``.
"""
from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass

PROTOCOL_VERSION = 2  # v2: HELLO and HELLO_ACK name the robot; StochLite's STATE and POSITION frames
START = b"\xa5\x5a"
HEADER = struct.Struct("<2sBBH")  # start, len, type, seq
CRC = struct.Struct("<H")
JOINTS = 2
SERVOS = 12  # StochLite: stochlite_simulation.JOINT_NAMES order
SEQ_MODULO = 1 << 16


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value of b"123456789": 0x29B1)."""
    return binascii.crc_hqx(data, 0xFFFF)


class Robot(enum.IntEnum):
    """The profile id in HELLO / HELLO_ACK: a driver refuses an MCU of another robot."""

    LEG = 1
    STOCHLITE = 2


class MsgType(enum.IntEnum):
    HELLO = 0x01  # host -> MCU: protocol version, robot; starts a session (MCU disarms)
    HELLO_ACK = 0x02  # MCU -> host: protocol version, joints, state rate, robot
    STATE = 0x10  # MCU -> host: one per MCU control tick
    STOCHLITE_STATE = 0x11  # MCU -> host (StochLite): servos and IMU, one per MCU tick
    TORQUE = 0x20  # host -> MCU: joint torques; feeds the MCU watchdog
    POSITION = 0x22  # host -> MCU (StochLite): 12 servo position targets; feeds the MCU watchdog
    ENABLE = 0x21  # host -> MCU: arm (1) or disarm (0) the motors
    HEARTBEAT = 0x30  # host -> MCU: keeps the session alive while disarmed; feeds the watchdog
    ERROR = 0x40  # MCU -> host: a fault the MCU saw


class Status(enum.IntFlag):
    """Status flags of a STATE frame."""

    ARMED = 0x01  # motors enabled
    WATCHDOG = 0x02  # no TORQUE/HEARTBEAT within the MCU watchdog: zero torque
    TORQUE_LIMITED = 0x04  # the MCU clamped the commanded torque
    OVER_TEMPERATURE = 0x08


class ErrorCode(enum.IntEnum):
    BAD_CRC = 1  # a host frame failed its CRC (detail: count so far)
    UNKNOWN_TYPE = 2  # detail: the type byte
    BAD_LENGTH = 3  # payload length wrong for its type (detail: the type byte)
    VERSION_MISMATCH = 4  # detail: the MCU's version
    WATCHDOG = 5  # host silent too long: torque zeroed (detail: ms since the last command)
    NO_SESSION = 6  # a command before HELLO (detail: the type byte)
    ROBOT_MISMATCH = 7  # HELLO names another robot (detail: the MCU's robot id)


class ServoFlags(enum.IntFlag):
    """Per-servo status byte of a STOCHLITE_STATE frame."""

    TORQUE_ON = 0x01  # the servo holds its target (off: limp)
    POSITION_LIMITED = 0x02  # the MCU clamped the target to the joint's limits
    OVERLOAD = 0x04
    OVER_TEMPERATURE = 0x08


@dataclass(frozen=True)
class Hello:
    version: int = PROTOCOL_VERSION
    robot: int = Robot.LEG
    FORMAT = struct.Struct("<BB")

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.version, self.robot)


@dataclass(frozen=True)
class HelloAck:
    version: int
    joints: int
    state_rate_hz: int
    robot: int = Robot.LEG
    FORMAT = struct.Struct("<BBHB")

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.version, self.joints, self.state_rate_hz, self.robot)


@dataclass(frozen=True)
class State:
    """Joint positions [rad], velocities [rad/s], applied torques [N*m], status, MCU time [us, wraps at 2^32]
    and the sequence number of the last TORQUE/HEARTBEAT the MCU applied (``ack_seq``)."""

    mcu_time_us: int
    ack_seq: int
    status: Status
    position: tuple[float, float]
    velocity: tuple[float, float]
    torque: tuple[float, float]
    FORMAT = struct.Struct("<IHH6f")

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.mcu_time_us, self.ack_seq, self.status, *self.position, *self.velocity,
                                *self.torque)

    @classmethod
    def unpack(cls, payload: bytes) -> State:
        t, ack, status, *v = cls.FORMAT.unpack(payload)
        return cls(t, ack, Status(status), (v[0], v[1]), (v[2], v[3]), (v[4], v[5]))


@dataclass(frozen=True)
class StochliteState:
    """StochLite's servos and IMU: MCU time [us, wraps], ``ack_seq`` (last POSITION/HEARTBEAT applied),
    status, 12 positions [rad], velocities [rad/s], torques [N*m], per-servo :class:`ServoFlags`, and
    the IMU: quaternion (x, y, z, w), gyro [rad/s, base frame], accelerometer [m/s^2, specific force]."""

    mcu_time_us: int
    ack_seq: int
    status: Status
    position: tuple[float, ...]
    velocity: tuple[float, ...]
    torque: tuple[float, ...]
    servo_flags: tuple[int, ...]
    quaternion: tuple[float, float, float, float]
    gyro: tuple[float, float, float]
    accel: tuple[float, float, float]
    FORMAT = struct.Struct(f"<IHH{3 * SERVOS}f{SERVOS}B10f")

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.mcu_time_us, self.ack_seq, self.status, *self.position, *self.velocity,
                                *self.torque, *self.servo_flags, *self.quaternion, *self.gyro, *self.accel)

    @classmethod
    def unpack(cls, payload: bytes) -> StochliteState:
        t, ack, status, *v = cls.FORMAT.unpack(payload)
        n = SERVOS
        imu = [float(x) for x in v[4 * n:]]
        return cls(t, ack, Status(status), tuple(v[:n]), tuple(v[n:2 * n]), tuple(v[2 * n:3 * n]),
                   tuple(v[3 * n:4 * n]), tuple(imu[:4]), tuple(imu[4:7]), tuple(imu[7:10]))


@dataclass(frozen=True)
class Position:
    """StochLite: 12 servo position targets [rad], JOINT_NAMES order."""

    target: tuple[float, ...]
    FORMAT = struct.Struct(f"<{SERVOS}f")

    def pack(self) -> bytes:
        return self.FORMAT.pack(*self.target)


@dataclass(frozen=True)
class Torque:
    torque: tuple[float, float]
    FORMAT = struct.Struct("<2f")

    def pack(self) -> bytes:
        return self.FORMAT.pack(*self.torque)


@dataclass(frozen=True)
class Enable:
    armed: bool
    FORMAT = struct.Struct("<B")

    def pack(self) -> bytes:
        return self.FORMAT.pack(int(self.armed))


@dataclass(frozen=True)
class Heartbeat:
    FORMAT = struct.Struct("<")

    def pack(self) -> bytes:
        return b""


@dataclass(frozen=True)
class Error:
    code: ErrorCode
    detail: int
    FORMAT = struct.Struct("<BH")

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.code, self.detail)


PAYLOADS = {MsgType.HELLO: Hello, MsgType.HELLO_ACK: HelloAck, MsgType.STATE: State,
            MsgType.STOCHLITE_STATE: StochliteState, MsgType.TORQUE: Torque, MsgType.POSITION: Position,
            MsgType.ENABLE: Enable, MsgType.HEARTBEAT: Heartbeat, MsgType.ERROR: Error}
TYPES = {cls: msg_type for msg_type, cls in PAYLOADS.items()}
MAX_PAYLOAD = max(cls.FORMAT.size for cls in PAYLOADS.values())  # 204, STOCHLITE_STATE; longer: not a frame start
Message = Hello | HelloAck | State | StochliteState | Torque | Position | Enable | Heartbeat | Error


def unpack_payload(msg_type: MsgType, payload: bytes) -> Message:
    """The message of a frame; ValueError if the payload length does not fit its type."""
    cls = PAYLOADS[msg_type]
    if len(payload) != cls.FORMAT.size:
        raise ValueError(f"{msg_type.name} payload is {len(payload)} bytes, expected {cls.FORMAT.size}")
    if cls in (State, StochliteState):
        return cls.unpack(payload)
    fields = cls.FORMAT.unpack(payload)
    if cls is Torque:
        return Torque((fields[0], fields[1]))
    if cls is Position:
        return Position(tuple(fields))
    if cls is Error:
        return Error(ErrorCode(fields[0]) if fields[0] in ErrorCode._value2member_map_ else fields[0], fields[1])
    if cls is Enable:
        return Enable(bool(fields[0]))
    return cls(*fields)


def encode(message: Message, seq: int) -> bytes:
    """One complete frame carrying ``message`` with sequence number ``seq`` (mod 2^16)."""
    return encode_raw(TYPES[type(message)], message.pack(), seq)


def encode_raw(type_byte: int, payload: bytes, seq: int) -> bytes:
    """One complete frame of any type byte and payload, with a valid CRC."""
    body = HEADER.pack(START, len(payload), type_byte, seq % SEQ_MODULO)[2:] + payload
    return START + body + CRC.pack(crc16(body))


@dataclass(frozen=True)
class Frame:
    seq: int
    message: Message


class FrameDecoder:
    """Turns a byte stream into frames, resynchronising on the start marker after garbage or a bad frame.

    Counters: ``crc_errors`` (frames whose CRC failed), ``resyncs`` (times bytes had to be skipped to
    find a start marker), ``skipped_bytes``, ``bad_frames`` (valid CRC, unknown type or wrong length).
    A truncated frame waits for its remaining bytes.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.crc_errors = 0
        self.resyncs = 0
        self.skipped_bytes = 0
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Append received bytes; return every complete, valid frame in order."""
        self._buffer += data
        frames: list[Frame] = []
        buf = self._buffer
        while True:
            start = buf.find(START)
            if start < 0:
                keep = 1 if buf.endswith(START[:1]) else 0  # half a marker may complete later
                self._drop(len(buf) - keep, resync=True)
                return frames
            if start:
                self._drop(start, resync=True)
            if len(buf) < HEADER.size:
                return frames
            _, length, type_byte, seq = HEADER.unpack_from(buf)
            if length > MAX_PAYLOAD:
                self._drop(1)  # not a real frame start
                continue
            end = HEADER.size + length + CRC.size
            if len(buf) < end:
                return frames
            body = bytes(buf[2:HEADER.size + length])
            (crc,) = CRC.unpack_from(buf, HEADER.size + length)
            if crc != crc16(body):
                self.crc_errors += 1
                self._drop(1)  # the length may be corrupt: look for the next marker inside
                continue
            del buf[:end]
            try:
                frames.append(Frame(seq, unpack_payload(MsgType(type_byte), body[HEADER.size - 2:])))
            except ValueError:  # unknown type or wrong payload length for the type
                self.bad_frames += 1

    def _drop(self, count: int, resync: bool = False) -> None:
        if count <= 0:
            return
        del self._buffer[:count]
        self.resyncs += resync
        self.skipped_bytes += count
