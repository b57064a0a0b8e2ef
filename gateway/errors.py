"""The one exception tree of the gateway.

Every error the gateway raises on purpose derives from ``GatewayError``;
third-party errors are translated at the module that talks to the library,
with ``raise ... from exc``, so callers above ``sources/`` and ``sinks/``
never see a pymodbus, pyserial, paho-mqtt or influxdb_client exception.

    GatewayError
    ├── ConfigError            a site file or profile is invalid (carries file, line, field)
    │   └── ProfileError       a device profile is invalid or unknown
    ├── CodecError             register words cannot be decoded as the point says
    ├── SourceError            a transport failed
    │   ├── ConnectError       cannot open the TCP connection or serial port
    │   ├── DeviceTimeout      the device did not answer in time
    │   ├── DeviceException    the device answered with a Modbus exception code
    │   └── FrameError         garbage on the line: bad CRC, bad length, unparseable line
    ├── SinkError              a sink cannot deliver (broker/database down, auth refused)
    │   └── SinkAuthError      the far side refused our credentials
    ├── OutboxError            the durable outbox cannot be opened or written
    ├── AlarmError             an alarm command is invalid (unknown id, illegal transition)
    ├── CommandError           a malformed operator command (MQTT payload, CLI arguments)
    │   └── CommandRefused     a well-formed command the gateway will not run (stale,
    │                          replayed, unsigned, not allowed, rate-limited)
    └── ConsoleError           the console's own database, users or settings
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A site file or profile is invalid.

    ``problems`` holds one human-readable line per problem, each naming the
    file, the line where known, and the device/point/field.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems if problems is not None else [message]
        super().__init__(message if problems is None else "\n".join(self.problems))


class ProfileError(ConfigError):
    """A device profile is invalid or cannot be found."""


class CodecError(GatewayError):
    """Register words cannot be decoded the way the point says."""


class SourceError(GatewayError):
    """A transport (TCP endpoint, serial line) failed."""


class ConnectError(SourceError):
    """The TCP connection or serial port cannot be opened."""


class DeviceTimeout(SourceError):
    """The device did not answer within the request timeout."""


class DeviceException(SourceError):
    """The device answered with a Modbus exception code."""

    def __init__(self, message: str, code: int) -> None:
        self.code = code
        super().__init__(message)


class FrameError(SourceError):
    """Garbage on the line: bad CRC, wrong length, unparseable text."""


class SinkError(GatewayError):
    """A sink cannot deliver right now."""


class SinkAuthError(SinkError):
    """The far side refused our credentials."""


class OutboxError(GatewayError):
    """The durable outbox cannot be opened or written."""


class AlarmError(GatewayError):
    """An alarm command names an unknown alarm or an illegal transition."""


class CommandError(GatewayError):
    """A malformed operator command (MQTT payload, CLI arguments)."""


class CommandRefused(CommandError):
    """A well-formed command the gateway will not run: stale, replayed, unsigned, not allowed."""


class ConsoleError(GatewayError):
    """The console's own database, users or settings (``gateway console``)."""
