"""The cluster-wide operator (kopf): takes DeploymentRequests in charge and keeps their status true.

Like KubeVirt's virt-controller, it decides nothing per node; the agents do that among themselves.
"""
