"""Every Redis key this project uses, in one place (each with its TTL where it has one).

Keys are built from the deployment prefix (``REDIS_PREFIX``) so that several deployments,
or several test runs, can share one Redis without seeing each other's keys.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str

    def revoked_token(self, jti: str) -> str:
        """Cache of whether a session was logged out ("ended", TTL = the token's remaining
        lifetime; or "live", TTL a minute). PostgreSQL holds the truth (``ended_sessions``)."""
        return f"{self.prefix}revoked:{jti}"

    def sessions_revoked_before(self, user_id: uuid.UUID) -> str:
        """Cache of the UNIX second before which a user's sessions are refused, set when they
        lose access (deactivated, or a role removed); TTL = the staff session lifetime; "none"
        (TTL a minute) when never. PostgreSQL holds the truth (``sessions_revoked_before``)."""
        return f"{self.prefix}sessions-revoked-before:{user_id}"

    def sessions_ended_channel(self) -> str:
        """Pub/sub channel (no TTL: nothing is stored): a session or a user's sessions ended,
        so every node closes the sockets and streams it holds for them."""
        return f"{self.prefix}sessions-ended"

    def login_failures_account(self, email: str) -> str:
        """Failed logins for an account; TTL = login failure window."""
        return f"{self.prefix}loginfail:acct:{email}"

    def login_failures_pair(self, email: str, address: str) -> str:
        """Failed logins for an account from one client address; TTL = login failure window."""
        return f"{self.prefix}loginfail:pair:{address}:{email}"

    def login_account_slot(self, email: str) -> str:
        """Held while a slowed account waits for its next attempt; TTL = the slow-down."""
        return f"{self.prefix}loginslot:{email}"

    def login_failures_address(self, address: str) -> str:
        """Failed logins from a client address; TTL = login failure window."""
        return f"{self.prefix}loginfail:addr:{address}"

    def account_link_requests(self, kind: str, value: str) -> str:
        """Invite/reset links asked for, per email or per address; TTL = the rate window."""
        return f"{self.prefix}account-links:{kind}:{value}"

    def node_heartbeat(self, node_id: str) -> str:
        """A node is alive while this exists; TTL = CALL_NODE_TTL_SECONDS, renewed by the node."""
        return f"{self.prefix}node:{node_id}"

    def node_loads(self) -> str:
        """Hash node id -> "calls cpu_pct [draining]", written at every heartbeat and raised by
        one at each call placed on the node (no TTL: fields of nodes whose heartbeat is gone
        are ignored and pruned)."""
        return f"{self.prefix}node-loads"

    def node_inbox_channel(self, node_id: str) -> str:
        """Pub/sub channel (nothing stored) of one node: participants' messages relayed to
        the calls it owns, and server messages for the participants' sockets it holds."""
        return f"{self.prefix}node-inbox:{node_id}"

    def call_owners_channel(self) -> str:
        """Pub/sub channel (nothing stored): a call's owner changed (opened, taken over,
        released), so nodes relaying sockets to its old owner close them to reconnect."""
        return f"{self.prefix}call-owners"
