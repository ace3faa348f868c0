"""A participant's own network namespace, joined to ours by a veth pair, and its shaping.

The test creates the namespace and the pair and removes both (deleting the namespace
destroys its end of the pair, and with it ours). Addresses are a random private /30
(10.99.x.y/30: ours .1, theirs .2) and a unique-local IPv6 /64, on these interfaces only:
nothing leaves the machine (the namespace has no default route).

Shaping, with what this kind of kernel offers (no sch_netem):
- a rate cap on the participant's uplink: `tc qdisc ... tbf` on their end of the pair;
- random loss and a total outage: nftables rules in their namespace (`numgen random`);
- a fixed delay: not here, see `delay_relay.py` (a userspace UDP relay in the path).

Needs root (CI runs as root); `requires_namespaces` skips with the reason otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

_TOOLS = ("ip", "tc", "nft")
_NAME_PREFIX = "vcnet-"
_TABLE = "vcshape"


def namespaces_unavailable() -> str | None:
    """Why namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (Debian iproute2 and nftables)"
    return None


requires_namespaces = pytest.mark.skipif(
    namespaces_unavailable() is not None, reason=namespaces_unavailable() or ""
)


def run(*command: str, input_text: str | None = None) -> str:
    """Run a command; a failure raises with its stderr (a test's setup must not half-work)."""
    done = subprocess.run(command, input=input_text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Link:
    namespace: str
    host_interface: str  # our end of the veth pair
    peer_interface: str  # theirs, inside the namespace
    host_ip: str  # our address on the pair (the server listens here for them)
    peer_ip: str
    host_ip6: str
    peer_ip6: str

    def command(self, *command: str) -> list[str]:
        """`command` run inside the participant's namespace."""
        return ["ip", "netns", "exec", self.namespace, *command]

    def inside(self, *command: str, input_text: str | None = None) -> str:
        return run(*self.command(*command), input_text=input_text)

    # --- rate cap on the participant's uplink --------------------------------------------

    def cap_uplink(self, kbit: int) -> None:
        """Everything they send is paced to `kbit` kbit/s (a token bucket; what does not
        fit its short queue is dropped, as on a thin DSL or 4G uplink)."""
        self.inside(
            "tc", "qdisc", "replace", "dev", self.peer_interface, "root", "tbf",
            "rate", f"{kbit}kbit", "burst", "4kb", "latency", "100ms",
        )  # fmt: skip

    def lift_uplink_cap(self) -> None:
        self.inside("tc", "qdisc", "del", "dev", self.peer_interface, "root")

    # --- loss and outages (nftables in their namespace) ----------------------------------

    def lose(self, percent: int) -> None:
        """Drop `percent`% of packets at random, in both directions (replaces any filter)."""
        if not 0 <= percent <= 100:
            raise ValueError("percent must be between 0 and 100")
        self._filter(f"numgen random mod 100 < {percent} drop")

    def cut(self) -> None:
        """Total outage: every packet in and out is dropped (the cable is pulled)."""
        self._filter("drop")

    def only_udp_to(self, address: str, port: int) -> None:
        """A strict firewall: UDP only to one address and port (a TURN server), TCP as usual."""
        self._filter(f"meta l4proto udp ip daddr != {address} drop\n    udp dport != {port} drop")

    def restore(self) -> None:
        """No loss, no outage, no firewall."""
        self.inside("nft", "delete", "table", "inet", _TABLE)

    def _filter(self, rules: str) -> None:
        script = f"""
table inet {_TABLE}
delete table inet {_TABLE}
table inet {_TABLE} {{
  chain output {{
    type filter hook output priority 0; policy accept;
    {rules}
  }}
  chain input {{
    type filter hook input priority 0; policy accept;
    {rules.replace("daddr", "saddr").replace("dport", "sport")}
  }}
}}
"""
        self.inside("nft", "-f", "-", input_text=script)


def _free_subnet() -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    used = run("ip", "-o", "addr", "show")
    for _ in range(100):
        index = secrets.randbelow(2**14)
        net4 = ipaddress.IPv4Network(f"10.99.{index >> 6}.{(index & 63) * 4}/30")
        net6 = ipaddress.IPv6Network(f"fd99:{index:x}::/64")
        if str(net4[1]) not in used and str(net6[1]) not in used:
            return net4, net6
    raise RuntimeError("no free 10.99.0.0/16 subnet for a test link")


@contextmanager
def participant_link() -> Iterator[Link]:
    """A fresh namespace joined to ours by a veth pair; removed at the end, whatever happens."""
    tag = secrets.token_hex(3)
    namespace = _NAME_PREFIX + tag
    host_if, peer_if = f"vch{tag}", f"vcp{tag}"
    net4, net6 = _free_subnet()
    link = Link(namespace, host_if, peer_if, str(net4[1]), str(net4[2]), str(net6[1]), str(net6[2]))
    run("ip", "netns", "add", namespace)
    try:
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        run("ip", "link", "set", peer_if, "netns", namespace)
        run("ip", "addr", "add", f"{link.host_ip}/30", "dev", host_if)
        run("ip", "-6", "addr", "add", f"{link.host_ip6}/64", "dev", host_if, "nodad")
        run("ip", "link", "set", host_if, "up")
        link.inside("ip", "addr", "add", f"{link.peer_ip}/30", "dev", peer_if)
        link.inside("ip", "-6", "addr", "add", f"{link.peer_ip6}/64", "dev", peer_if, "nodad")
        link.inside("ip", "link", "set", peer_if, "up")
        link.inside("ip", "link", "set", "lo", "up")
        yield link
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
