"""The KubeVirt VirtualMachines an agent writes for its portion of a request."""
