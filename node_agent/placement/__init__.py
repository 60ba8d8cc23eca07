"""The capacity handshake: coordinator, rack leader and node sides, and how portions are decided."""
