-- Fencing of call ownership: every claim of a call (opening it, taking it over from a lost
-- node, claiming one a stopped node released) raises its epoch, and every write for the
-- call is conditioned on (owner_node, owner_epoch), so a node that lost the call without
-- noticing (paused, cut off from Redis, presumed dead) can change nothing.
ALTER TABLE calls ADD COLUMN owner_epoch bigint NOT NULL DEFAULT 0;
