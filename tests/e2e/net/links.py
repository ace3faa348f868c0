"""A participant's own network namespace, joined to ours by a veth pair, and its shaping.

The test creates the namespace and the pair and removes both (deleting the namespace
destroys its end of the pair, and with it ours). Addresses are a random private /30
(10.99.x.y/30: ours .1, theirs .2) and a unique-local IPv6 /64, on these interfaces only:
nothing leaves the machine (the namespace has no default route).

Shaping, with what this kind of kernel offers (no sch_netem):
- a rate cap on the participant's uplink: `tc qdisc ... tbf` on their end of the pair;
- random loss and a total outage: nftables netdev-ingress rules on both ends of the
  pair (`numgen random`), so packets are lost in transit;
- a fixed delay: not here, see `delay_relay.py` (a userspace UDP relay in the path).

Needs root (CI runs as root); `requires_namespaces` skips with the reason otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
import time
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

    # --- loss, outages and firewalls (nftables on both ends of the pair) ---------------

    def shape(
        self,
        *,
        loss_percent: int = 0,
        outage: bool = False,
        udp_only_to: tuple[str, int] | None = None,
    ) -> None:
        """Replace the link's filters: random loss in both directions (`loss_percent`),
        a total outage (the cable pulled), a firewall letting the participant's UDP
        through only to one address and port (a TURN server).

        Packets are dropped where they arrive (netdev ingress of the receiving end of the
        pair), i.e. in transit: a drop at the sender's own output hook would fail its
        `sendto` with EPERM, which no real network does.
        """
        if not 0 <= loss_percent <= 100:
            raise ValueError("loss_percent must be between 0 and 100")
        common: list[str] = []
        if outage:
            common.append("drop")
        if loss_percent:
            common.append(f"numgen random mod 100 < {loss_percent} drop")
        uplink = list(common)
        if udp_only_to is not None:
            address, port = udp_only_to
            uplink += [
                f"ip protocol udp ip daddr != {address} drop",
                f"ip protocol udp udp dport != {port} drop",
                "ip6 nexthdr udp drop",
            ]
        run(
            "nft",
            "-f",
            "-",
            input_text=self._ruleset(self._host_table, self.host_interface, uplink),
        )
        self.inside("nft", "-f", "-", input_text=self._ruleset(_TABLE, self.peer_interface, common))

    def restore(self) -> None:
        """No loss, no outage, no firewall."""
        self.shape()

    @property
    def _host_table(self) -> str:
        # Our namespace is shared: one table per link, bound to its own device only.
        return f"{_TABLE}_{self.host_interface}"

    @staticmethod
    def _ruleset(table: str, device: str, rules: list[str]) -> str:
        # Declaring then deleting the table makes the script work whether or not it exists.
        body = "\n    ".join(rules)
        return f"""
table netdev {table}
delete table netdev {table}
table netdev {table} {{
  chain arriving {{
    type filter hook ingress device "{device}" priority 0; policy accept;
    {body}
  }}
}}
"""

    def remove_filters(self) -> None:
        subprocess.run(
            ["nft", "delete", "table", "netdev", self._host_table],
            capture_output=True,
            check=False,
        )


def _free_subnet() -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    used = run("ip", "-o", "addr", "show")
    for _ in range(100):
        index = secrets.randbelow(2**14)
        net4 = ipaddress.IPv4Network(f"10.99.{index >> 6}.{(index & 63) * 4}/30")
        net6 = ipaddress.IPv6Network(f"fd99:{index:x}::/64")
        if str(net4[1]) not in used and str(net6[1]) not in used:
            return net4, net6
    raise RuntimeError("no free 10.99.0.0/16 subnet for a test link")


def _wait_for_link_local(show_addresses: list[str], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        shown = run(*show_addresses)
        if "scope link" in shown and "tentative" not in shown:
            return
        time.sleep(0.05)
    raise RuntimeError(f"no settled IPv6 link-local address: {' '.join(show_addresses)}")


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
        # The kernel gives each end an IPv6 link-local address once its duplicate address
        # detection is over, ~2 s after the link is up; that announcement is a network
        # change to a Chromium already running (on either side), which aborts its requests
        # in flight (net::ERR_NETWORK_CHANGED: a page's module scripts failed, and it stayed
        # at "Starting…"). So the link is handed over settled.
        _wait_for_link_local(["ip", "-6", "addr", "show", "dev", host_if])
        _wait_for_link_local(link.command("ip", "-6", "addr", "show", "dev", peer_if))
        yield link
    finally:
        link.remove_filters()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
