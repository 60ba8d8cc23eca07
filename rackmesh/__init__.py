"""rackmesh: decentralized provisioning of KubeVirt VM batches.

This package holds what the operator and the node agents share: configuration,
well-known labels, the ZooKeeper layout, the Kubernetes client and the CLI.
"""
