"""Membership in ZooKeeper: presence across session changes, and per-rack leader election."""
