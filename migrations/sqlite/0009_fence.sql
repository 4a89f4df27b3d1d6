-- Fenced leases (part 12): every claim of a (sink, partition) raises its
-- epoch; each write a holder makes checks (owner, epoch), so a holder
-- whose lease passed to another cannot touch the partition again.
ALTER TABLE partitions ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
