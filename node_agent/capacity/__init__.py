"""This node's capacity: what its VMs use, what is reserved for requests in flight, what is free."""
