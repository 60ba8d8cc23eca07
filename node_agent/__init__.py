"""The per-node agent (a DaemonSet): joins its racks in ZooKeeper, contends for rack leadership,
and answers its peers over HTTP. Like KubeVirt's virt-handler, it acts only for its own node."""
