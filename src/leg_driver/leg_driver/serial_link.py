"""The host's end of the serial link: pyserial port, handshake, non-blocking frame I/O and reconnection.

Never blocks and never raises on a link fault: a lost or unopenable port closes the link, which
retries every ``reconnect_period_ns``; a new port (or an MCU that reports NO_SESSION) is greeted
with HELLO until the MCU answers HELLO_ACK with our protocol version.
"""
from __future__ import annotations

import enum

import serial

from .protocol_frames import (PROTOCOL_VERSION, Error, ErrorCode, Frame, FrameDecoder, Hello, HelloAck, Message,
                              Robot, encode)

READ_LIMIT = 4096


class LinkState(enum.Enum):
    CLOSED = "closed"
    HANDSHAKING = "handshaking"
    CONNECTED = "connected"


class SerialLink:
    """One serial port to the MCU; call :meth:`poll` once per control cycle, then :meth:`send`."""

    def __init__(self, port: str, baud: int, handshake_timeout_ns: int, reconnect_period_ns: int,
                 robot: Robot = Robot.LEG) -> None:
        self.port = port
        self.robot = robot
        self.baud = baud
        self.handshake_timeout_ns = handshake_timeout_ns
        self.reconnect_period_ns = reconnect_period_ns
        self.state = LinkState.CLOSED
        self.last_error = ""
        self.reconnects = 0  # successful handshakes after the first
        self.link_losses = 0
        self.handshakes = 0
        self.write_overruns = 0
        self.sent_seq = 0
        self.mcu_rate_hz = 0
        self.mcu_errors: dict[str, int] = {}  # ERROR frames of the MCU by code, those the link consumes too
        self._serial: serial.Serial | None = None
        self._decoder = FrameDecoder()
        self._retired = FrameDecoder()  # counters of decoders of closed ports
        self._next_attempt_ns = 0
        self.written_bytes = 0
        self._hello_ns = 0

    @property
    def connected(self) -> bool:
        return self.state is LinkState.CONNECTED

    @property
    def crc_errors(self) -> int:
        return self._retired.crc_errors + self._decoder.crc_errors

    @property
    def resyncs(self) -> int:
        return self._retired.resyncs + self._decoder.resyncs

    @property
    def dropped_frames(self) -> int:
        """Frames with a valid CRC but an unknown type or a wrong length for their type."""
        return self._retired.bad_frames + self._decoder.bad_frames

    @property
    def skipped_bytes(self) -> int:
        return self._retired.skipped_bytes + self._decoder.skipped_bytes

    def poll(self, now_ns: int) -> list[Frame]:
        """Open or greet as needed, then every frame received since the last call (handshake frames consumed)."""
        if self.state is LinkState.CLOSED:
            if now_ns < self._next_attempt_ns or not self._open(now_ns):
                return []
        try:
            waiting = self._serial.in_waiting
            # A read (its select) that finds nothing waits in the kernel for the tty's flush worker, a normal-priority
            # thread that a loaded machine runs late (stalls of 100 ms and more were seen on a pty): read only what
            # is there. A vanished device is noticed all the same: a hung-up tty fails the in_waiting ioctl (EIO).
            data = self._serial.read(min(waiting, READ_LIMIT)) if waiting else b""
        except (serial.SerialException, OSError) as error:
            self._lose(f"read failed: {error}", now_ns)
            return []
        frames = []
        for frame in self._decoder.feed(data):
            message = frame.message
            if isinstance(message, Error):
                self._count_error(message)
            if isinstance(message, HelloAck):
                self._on_hello_ack(message)
            elif isinstance(message, Error) and message.code == ErrorCode.ROBOT_MISMATCH:
                self.last_error = self._wrong_robot(message.detail)
            elif isinstance(message, Error) and message.code == ErrorCode.NO_SESSION:
                self.restart_session(now_ns)
            elif self.connected:
                frames.append(frame)
        if self.state is LinkState.HANDSHAKING and now_ns - self._hello_ns > self.handshake_timeout_ns:
            self._greet(now_ns)
        return frames

    def send(self, message: Message, now_ns: int) -> int | None:
        """Send one frame; its sequence number, or None if the link is not up or the port failed."""
        if self._serial is None:
            return None
        self.sent_seq = (self.sent_seq + 1) % 65536
        frame = encode(message, self.sent_seq)
        try:
            written = self._serial.write(frame)
        except (serial.SerialException, OSError) as error:
            self._lose(f"write failed: {error}", now_ns)
            return None
        self.written_bytes += written or 0
        if written != len(frame):  # the MCU is not draining its input: this frame is cut short
            self.write_overruns += 1
        return self.sent_seq

    def restart_session(self, now_ns: int) -> None:
        """Greet the MCU again (it rebooted or lost our session)."""
        if self._serial is not None:
            self.state = LinkState.HANDSHAKING
            self._greet(now_ns)

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass
        self._serial = None
        self.state = LinkState.CLOSED

    def _open(self, now_ns: int) -> bool:
        self._next_attempt_ns = now_ns + self.reconnect_period_ns
        try:
            self._serial = serial.Serial(self.port, self.baud, timeout=0, write_timeout=0)
            self._serial.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError) as error:
            self._serial = None
            self.last_error = f"cannot open {self.port}: {error}"
            return False
        self._retire_decoder()
        self.state = LinkState.HANDSHAKING
        self._greet(now_ns)
        return self._serial is not None

    def _greet(self, now_ns: int) -> None:
        self._hello_ns = now_ns
        self.send(Hello(PROTOCOL_VERSION, self.robot), now_ns)

    def _wrong_robot(self, mcu_robot: int) -> str:
        name = Robot(mcu_robot).name.lower() if mcu_robot in Robot._value2member_map_ else f"robot id {mcu_robot}"
        return (f"the MCU on {self.port} drives a {name}, this driver the {self.robot.name.lower()}: refusing to "
                f"connect or arm; set robot:= to match the hardware or use the right port")

    def _on_hello_ack(self, ack: HelloAck) -> None:
        if ack.version != PROTOCOL_VERSION:
            self.last_error = (f"the MCU on {self.port} speaks protocol v{ack.version}, this driver v"
                               f"{PROTOCOL_VERSION}: flash matching firmware or use a matching leg_driver")
            return
        if ack.robot != self.robot:
            self.last_error = self._wrong_robot(ack.robot)
            return
        if self.state is LinkState.HANDSHAKING:
            self.handshakes += 1
            self.reconnects = self.handshakes - 1
            self.mcu_rate_hz = ack.state_rate_hz
            self.state = LinkState.CONNECTED
            self.last_error = ""

    def _count_error(self, error: Error) -> None:
        name = error.code.name if isinstance(error.code, ErrorCode) else f"code {error.code}"
        self.mcu_errors[name] = self.mcu_errors.get(name, 0) + 1

    def _lose(self, reason: str, now_ns: int) -> None:
        self.last_error = reason
        self.link_losses += 1
        self.close()
        self._next_attempt_ns = now_ns + self.reconnect_period_ns

    def _retire_decoder(self) -> None:
        for name in ("crc_errors", "resyncs", "skipped_bytes", "bad_frames"):
            setattr(self._retired, name, getattr(self._retired, name) + getattr(self._decoder, name))
        self._decoder = FrameDecoder()
