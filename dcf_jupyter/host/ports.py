"""Who holds a TCP port on this machine, so our tools hand a token, a deploy or a cell's data only to a gateway of
the same user, and a server that cannot bind says who holds its port.

On Linux the owner of every listening socket is in /proc/net/tcp and /proc/net/tcp6 (its `uid` column), readable
by every user. Other systems show a user only their own sockets without root, so there `listeners()` answers
None ("cannot tell") and callers say so.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import socket
from dataclasses import dataclass
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PROC_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
TCP_LISTEN = "0A"
WILDCARDS = (ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::"))
LOOPBACK_V4, LOOPBACK_V6 = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket: where, whose, and its inode (to find the process of one's own)."""

    address: IPAddress
    port: int
    uid: int
    inode: int


def _address(hex_address: str) -> IPAddress:
    """An address as /proc/net/tcp* prints it: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def _read_table(path: Path, port: int) -> list[Listener]:
    found = []
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != TCP_LISTEN:
            continue
        hex_address, _, hex_port = fields[1].partition(":")
        if int(hex_port, 16) != port:
            continue
        found.append(Listener(_address(hex_address), port, int(fields[7]), int(fields[9])))
    return found


def listeners(port: int) -> list[Listener] | None:
    """Every socket listening on `port` (IPv4 and IPv6); None where this system does not say (no /proc)."""
    tables = [path for path in PROC_TABLES if path.exists()]
    if not tables:
        return None
    found: list[Listener] = []
    for path in tables:
        with contextlib.suppress(OSError):
            found += _read_table(path, port)
    return found


def _reaches(listener: IPAddress, target: IPAddress) -> bool:
    """Whether a socket listening on `listener` takes connections made to `target` (an address `targets` gave)."""
    if listener in WILDCARDS:
        return True  # an IPv6 wildcard may take IPv4 too (dual stack): assume it does
    if isinstance(listener, ipaddress.IPv6Address) and listener.ipv4_mapped is not None:
        listener = listener.ipv4_mapped
    return listener == target


def reaches(listening_host: str, host: str) -> bool:
    """Whether a socket listening on `listening_host` takes connections made to `host` (both in any spelling)."""
    listening = [_normal(address) for address in targets(listening_host, resolve=False)]
    if listening_host.strip("[]") in ("0.0.0.0", "::"):
        listening = list(WILDCARDS)
    return any(_reaches(listener, target) for listener in listening for target in targets(host))


def _normal(address: IPAddress) -> IPAddress:
    """The address a connection to `address` really reaches: an IPv4-mapped IPv6 address is its IPv4 one, and the
    unspecified addresses (0.0.0.0, ::), which Linux connects to this machine's loopback, are loopback."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return LOOPBACK_V4 if address.version == 4 else LOOPBACK_V6
    return address


def format_address(host: str, port: int) -> str:
    """host:port, with IPv6 hosts bracketed."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def split_address(address: str) -> tuple[str, int] | None:
    """("127.0.0.1", 32222) from "127.0.0.1:32222" or "[::1]:32222"; None when it has no port."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IPs (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere is treated as reachable from outside


def targets(host: str, *, resolve: bool = True) -> list[IPAddress]:
    """Every address a connection to `host` may reach, as it reaches it (`_normal`): an IP address in any spelling
    (0.0.0.0, ::, IPv4-mapped, [::1]), localhost, or (with `resolve`) a name resolved as a connection would
    resolve it; [] for a name that does not resolve."""
    host = host.strip("[]")
    try:
        found = [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        if host.lower() in LOCAL_NAMES:
            found = [LOOPBACK_V4, LOOPBACK_V6]
        elif not resolve:
            return []
        else:
            found = _resolve(host)
    normal: list[IPAddress] = []
    for address in map(_normal, found):
        if address not in normal:
            normal.append(address)
    return normal


def _resolve(host: str) -> list[IPAddress]:
    """What the system resolver makes of `host` (also inet_aton's spellings: 127.1, 0x7f000001, 0)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    found = []
    for info in infos:
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
    return found


def _bindable(address: IPAddress) -> bool:
    """True for an address of one of this machine's interfaces."""
    family = socket.AF_INET6 if isinstance(address, ipaddress.IPv6Address) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))  # succeeds only for an address of this machine
    except OSError:
        return False
    return True


def on_this_machine(host: str) -> bool:
    """True when a connection to `host` may reach a process of this machine, whose owner can then be checked:
    loopback in any spelling (all of 127/8, ::1, localhost), the unspecified addresses, IPv4-mapped ones, this
    machine's own addresses, and names that resolve to any of these."""
    return any(target.is_loopback or _bindable(target) for target in targets(host))


def serving_uids(host: str, port: int) -> set[int] | None:
    """The users whose sockets would take a connection to host:port on this machine, for every address the host
    may reach (empty: nobody listens); None when this system does not say."""
    found = listeners(port)
    if found is None:
        return None
    reached = targets(host)
    return {item.uid for item in found if any(_reaches(item.address, target) for target in reached)}


def describe_user(uid: int) -> str:
    """'uid 1001 (bob)', or 'uid 1001' for a user without a name."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _own_process_of(inode: int) -> str:
    """'pid N: its command line' of one's own process holding socket `inode`, or ''."""
    wanted = f"socket:[{inode}]"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue  # another user's process, or gone
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd) == wanted:
                    with contextlib.suppress(OSError):
                        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                        return f"pid {proc.name}: {' '.join(command.split())[:120]}"
                    return f"pid {proc.name}"
    return ""


def port_holder(host: str, port: int) -> str:
    """Who listens on host:port, for an error: 'user uid 1001 (bob)', 'a process of yours (pid 12: ...)', or ''
    when nobody (or this system does not say)."""
    found = listeners(port)
    if not found:
        return ""
    reached = targets(host) or list(WILDCARDS)
    holders = [item for item in found if any(_reaches(item.address, t) or _reaches(t, item.address) for t in reached)]
    if not holders:
        return ""
    holder = next((item for item in holders if item.uid != os.geteuid()), holders[0])
    if holder.uid != os.geteuid():
        return f"another user, {describe_user(holder.uid)}"
    process = _own_process_of(holder.inode)
    return f"a process of yours ({process})" if process else "a process of yours"


def free_port() -> int:
    """A TCP port free on loopback right now (for a worker container's published port, a test's server)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
