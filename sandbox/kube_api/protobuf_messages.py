"""The protobuf messages of the built-in kinds whose protobuf bodies the sandbox decodes.

Field numbers are those of k8s.io/api's and k8s.io/apimachinery's ``generated.proto`` (v1.32), the wire
format client-go's typed clients write (``kubectl create namespace|configmap|secret|deployment|token...``).
A message is its fields, comma-separated, each ``<number> <JSON name> <type>``. Types: ``string``, ``bool``,
``int32``, ``int64``, ``bytes``; a message of the same package by name, of another as ``<package>.<Name>``;
``[]T`` repeated; ``{}T`` a map with string keys. A trailing ``!`` keeps the field's zero value in JSON (a Go
pointer, or a field without ``omitempty``): Go's encoder writes every other field even when it is zero, and
Go's JSON encoder leaves those zeros out. Fields not listed here are refused when present (the decoder says
which), never dropped; nested types the sandbox's users do not send (probes, volumes, affinity...) are not
listed.
"""

from __future__ import annotations

PACKAGES: dict[str, dict[str, str]] = {
    "runtime": {
        "Unknown": "1 typeMeta TypeMeta, 2 raw bytes, 3 contentEncoding string, 4 contentType string",
        "TypeMeta": "1 apiVersion string, 2 kind string",
    },
    "resource": {"Quantity": "1 string string"},
    "intstr": {"IntOrString": "1 type int64, 2 intVal int32, 3 strVal string"},
    "meta.v1": {
        "ObjectMeta": """
            1 name string, 2 generateName string, 3 namespace string, 4 selfLink string, 5 uid string,
            6 resourceVersion string, 7 generation int64, 8 creationTimestamp Time, 9 deletionTimestamp Time,
            10 deletionGracePeriodSeconds int64!, 11 labels {}string, 12 annotations {}string,
            13 ownerReferences []OwnerReference, 14 finalizers []string, 17 managedFields []ManagedFieldsEntry
        """,
        "OwnerReference": """
            5 apiVersion string!, 1 kind string!, 3 name string!, 4 uid string!, 6 controller bool!,
            7 blockOwnerDeletion bool!
        """,
        "ManagedFieldsEntry": """
            1 manager string, 2 operation string, 3 apiVersion string, 4 time Time, 6 fieldsType string,
            7 fieldsV1 FieldsV1, 8 subresource string
        """,
        "FieldsV1": "1 Raw bytes",
        "Time": "1 seconds int64, 2 nanos int32",
        "MicroTime": "1 seconds int64, 2 nanos int32",
        "LabelSelector": "1 matchLabels {}string, 2 matchExpressions []LabelSelectorRequirement",
        "LabelSelectorRequirement": "1 key string!, 2 operator string!, 3 values []string",
        "Condition": """
            1 type string!, 2 status string!, 3 observedGeneration int64, 4 lastTransitionTime Time,
            5 reason string!, 6 message string!
        """,
        "DeleteOptions": """
            1 gracePeriodSeconds int64!, 2 preconditions Preconditions, 3 orphanDependents bool!,
            4 propagationPolicy string!, 5 dryRun []string, 6 ignoreStoreReadErrorWithClusterBreakingPotential bool!
        """,
        "Preconditions": "1 uid string!, 2 resourceVersion string!",
    },
    "core.v1": {
        "Namespace": "1 metadata meta.v1.ObjectMeta, 2 spec NamespaceSpec, 3 status NamespaceStatus",
        "NamespaceSpec": "1 finalizers []string",
        "NamespaceStatus": "1 phase string",
        "ConfigMap": "1 metadata meta.v1.ObjectMeta, 4 immutable bool!, 2 data {}string, 3 binaryData {}bytes",
        "Secret": """
            1 metadata meta.v1.ObjectMeta, 5 immutable bool!, 2 data {}bytes, 4 stringData {}string,
            3 type string
        """,
        "ServiceAccount": """
            1 metadata meta.v1.ObjectMeta, 2 secrets []ObjectReference, 3 imagePullSecrets []LocalObjectReference,
            4 automountServiceAccountToken bool!
        """,
        "ObjectReference": """
            1 kind string, 2 namespace string, 3 name string, 4 uid string, 5 apiVersion string,
            6 resourceVersion string, 7 fieldPath string
        """,
        "LocalObjectReference": "1 name string",
        "Service": "1 metadata meta.v1.ObjectMeta, 2 spec ServiceSpec, 3 status ServiceStatus",
        "ServiceSpec": """
            1 ports []ServicePort, 2 selector {}string, 3 clusterIP string, 18 clusterIPs []string, 4 type string,
            5 externalIPs []string, 7 sessionAffinity string, 8 loadBalancerIP string,
            9 loadBalancerSourceRanges []string, 10 externalName string, 11 externalTrafficPolicy string,
            12 healthCheckNodePort int32, 13 publishNotReadyAddresses bool, 19 ipFamilies []string,
            17 ipFamilyPolicy string!, 20 allocateLoadBalancerNodePorts bool!, 21 loadBalancerClass string!,
            22 internalTrafficPolicy string!, 23 trafficDistribution string!
        """,
        "ServicePort": """
            1 name string, 2 protocol string, 6 appProtocol string!, 3 port int32!, 4 targetPort intstr.IntOrString,
            5 nodePort int32
        """,
        "ServiceStatus": "1 loadBalancer LoadBalancerStatus, 2 conditions []meta.v1.Condition",
        "LoadBalancerStatus": "",
        "ResourceQuota": "1 metadata meta.v1.ObjectMeta, 2 spec ResourceQuotaSpec, 3 status ResourceQuotaStatus",
        "ResourceQuotaSpec": "1 hard {}resource.Quantity, 2 scopes []string",
        "ResourceQuotaStatus": "1 hard {}resource.Quantity, 2 used {}resource.Quantity",
        "Pod": "1 metadata meta.v1.ObjectMeta, 2 spec PodSpec, 3 status PodStatus",
        "PodTemplateSpec": "1 metadata meta.v1.ObjectMeta, 2 spec PodSpec",
        "PodSpec": """
            20 initContainers []Container, 2 containers []Container, 3 restartPolicy string,
            4 terminationGracePeriodSeconds int64!, 5 activeDeadlineSeconds int64!, 6 dnsPolicy string,
            7 nodeSelector {}string, 8 serviceAccountName string, 9 serviceAccount string,
            21 automountServiceAccountToken bool!, 10 nodeName string, 11 hostNetwork bool, 12 hostPID bool,
            13 hostIPC bool, 27 shareProcessNamespace bool!, 15 imagePullSecrets []LocalObjectReference,
            16 hostname string, 17 subdomain string, 19 schedulerName string, 22 tolerations []Toleration,
            24 priorityClassName string, 25 priority int32!, 29 runtimeClassName string!,
            30 enableServiceLinks bool!, 31 preemptionPolicy string!, 32 overhead {}resource.Quantity,
            35 setHostnameAsFQDN bool!, 37 hostUsers bool!, 40 resources ResourceRequirements
        """,
        "Container": """
            1 name string!, 2 image string, 3 command []string, 4 args []string, 5 workingDir string,
            6 ports []ContainerPort, 7 env []EnvVar, 8 resources ResourceRequirements, 24 restartPolicy string!,
            13 terminationMessagePath string, 20 terminationMessagePolicy string, 14 imagePullPolicy string,
            16 stdin bool, 17 stdinOnce bool, 18 tty bool
        """,
        "ContainerPort": "1 name string, 2 hostPort int32, 3 containerPort int32!, 4 protocol string, 5 hostIP string",
        "EnvVar": "1 name string!, 2 value string",
        "ResourceRequirements": "1 limits {}resource.Quantity, 2 requests {}resource.Quantity",
        "Toleration": "1 key string, 2 operator string, 3 value string, 4 effect string, 5 tolerationSeconds int64!",
        "PodStatus": """
            1 phase string, 3 message string, 4 reason string, 11 nominatedNodeName string, 5 hostIP string,
            6 podIP string, 7 startTime meta.v1.Time, 9 qosClass string, 14 resize string
        """,
        "Event": """
            1 metadata meta.v1.ObjectMeta, 2 involvedObject ObjectReference, 3 reason string, 4 message string,
            5 source EventSource, 6 firstTimestamp meta.v1.Time, 7 lastTimestamp meta.v1.Time, 8 count int32,
            9 type string, 10 eventTime meta.v1.MicroTime, 11 series EventSeries, 12 action string,
            13 related ObjectReference, 14 reportingComponent string!, 15 reportingInstance string!
        """,
        "EventSource": "1 component string, 2 host string",
        "EventSeries": "1 count int32, 2 lastObservedTime meta.v1.MicroTime",
    },
    "apps.v1": {
        "Deployment": "1 metadata meta.v1.ObjectMeta, 2 spec DeploymentSpec, 3 status DeploymentStatus",
        "DeploymentSpec": """
            1 replicas int32!, 2 selector meta.v1.LabelSelector, 3 template core.v1.PodTemplateSpec,
            4 strategy DeploymentStrategy, 5 minReadySeconds int32, 6 revisionHistoryLimit int32!, 7 paused bool,
            9 progressDeadlineSeconds int32!
        """,
        "DeploymentStrategy": "1 type string, 2 rollingUpdate RollingUpdateDeployment",
        "RollingUpdateDeployment": "1 maxUnavailable intstr.IntOrString, 2 maxSurge intstr.IntOrString",
        "DeploymentStatus": """
            1 observedGeneration int64, 2 replicas int32, 3 updatedReplicas int32, 7 readyReplicas int32,
            4 availableReplicas int32, 5 unavailableReplicas int32, 8 collisionCount int32!
        """,
    },
    "batch.v1": {
        "Job": "1 metadata meta.v1.ObjectMeta, 2 spec JobSpec, 3 status JobStatus",
        "JobSpec": """
            1 parallelism int32!, 2 completions int32!, 3 activeDeadlineSeconds int64!, 7 backoffLimit int32!,
            12 backoffLimitPerIndex int32!, 13 maxFailedIndexes int32!, 4 selector meta.v1.LabelSelector,
            5 manualSelector bool!, 6 template core.v1.PodTemplateSpec, 8 ttlSecondsAfterFinished int32!,
            9 completionMode string!, 10 suspend bool!, 14 podReplacementPolicy string!, 15 managedBy string!
        """,
        "JobStatus": """
            2 startTime meta.v1.Time, 3 completionTime meta.v1.Time, 4 active int32, 5 succeeded int32,
            6 failed int32, 11 terminating int32!, 7 completedIndexes string, 10 failedIndexes string!,
            9 ready int32!
        """,
        "CronJob": "1 metadata meta.v1.ObjectMeta, 2 spec CronJobSpec, 3 status CronJobStatus",
        "CronJobSpec": """
            1 schedule string!, 8 timeZone string!, 2 startingDeadlineSeconds int64!, 3 concurrencyPolicy string,
            4 suspend bool!, 5 jobTemplate JobTemplateSpec, 6 successfulJobsHistoryLimit int32!,
            7 failedJobsHistoryLimit int32!
        """,
        "JobTemplateSpec": "1 metadata meta.v1.ObjectMeta, 2 spec JobSpec",
        "CronJobStatus": """
            1 active []core.v1.ObjectReference, 4 lastScheduleTime meta.v1.Time, 5 lastSuccessfulTime meta.v1.Time
        """,
    },
    "rbac.v1": {
        "Role": "1 metadata meta.v1.ObjectMeta, 2 rules []PolicyRule",
        "ClusterRole": "1 metadata meta.v1.ObjectMeta, 2 rules []PolicyRule, 3 aggregationRule AggregationRule",
        "AggregationRule": "1 clusterRoleSelectors []meta.v1.LabelSelector",
        "PolicyRule": """
            1 verbs []string, 2 apiGroups []string, 3 resources []string, 4 resourceNames []string,
            5 nonResourceURLs []string
        """,
        "RoleBinding": "1 metadata meta.v1.ObjectMeta, 2 subjects []Subject, 3 roleRef RoleRef",
        "ClusterRoleBinding": "1 metadata meta.v1.ObjectMeta, 2 subjects []Subject, 3 roleRef RoleRef",
        "Subject": "1 kind string!, 2 apiGroup string, 3 name string!, 4 namespace string",
        "RoleRef": "1 apiGroup string!, 2 kind string!, 3 name string!",
    },
    "scheduling.v1": {
        "PriorityClass": """
            1 metadata meta.v1.ObjectMeta, 2 value int32!, 3 globalDefault bool, 4 description string,
            5 preemptionPolicy string!
        """,
    },
    "policy.v1": {
        "PodDisruptionBudget": """
            1 metadata meta.v1.ObjectMeta, 2 spec PodDisruptionBudgetSpec, 3 status PodDisruptionBudgetStatus
        """,
        "PodDisruptionBudgetSpec": """
            1 minAvailable intstr.IntOrString, 2 selector meta.v1.LabelSelector, 3 maxUnavailable intstr.IntOrString,
            4 unhealthyPodEvictionPolicy string!
        """,
        "PodDisruptionBudgetStatus": """
            1 observedGeneration int64, 2 disruptedPods {}meta.v1.Time, 3 disruptionsAllowed int32!,
            4 currentHealthy int32!, 5 desiredHealthy int32!, 6 expectedPods int32!, 7 conditions []meta.v1.Condition
        """,
    },
    "authentication.v1": {
        "TokenRequest": "1 metadata meta.v1.ObjectMeta, 2 spec TokenRequestSpec, 3 status TokenRequestStatus",
        "TokenRequestSpec": "1 audiences []string, 4 expirationSeconds int64!, 3 boundObjectRef BoundObjectReference",
        "BoundObjectReference": "1 kind string, 2 apiVersion string, 3 name string, 4 uid string",
        "TokenRequestStatus": "1 token string!, 2 expirationTimestamp meta.v1.Time",
    },
    "coordination.v1": {
        "Lease": "1 metadata meta.v1.ObjectMeta, 2 spec LeaseSpec",
        "LeaseSpec": """
            1 holderIdentity string!, 2 leaseDurationSeconds int32!, 3 acquireTime meta.v1.MicroTime,
            4 renewTime meta.v1.MicroTime, 5 leaseTransitions int32!, 6 strategy string!, 7 preferredHolder string!
        """,
    },
    "events.v1": {
        "Event": """
            1 metadata meta.v1.ObjectMeta, 2 eventTime meta.v1.MicroTime, 3 series EventSeries,
            4 reportingController string, 5 reportingInstance string, 6 action string, 7 reason string,
            8 regarding core.v1.ObjectReference, 9 related core.v1.ObjectReference, 10 note string, 11 type string,
            12 deprecatedSource core.v1.EventSource, 13 deprecatedFirstTimestamp meta.v1.Time,
            14 deprecatedLastTimestamp meta.v1.Time, 15 deprecatedCount int32
        """,
        "EventSeries": "1 count int32!, 2 lastObservedTime meta.v1.MicroTime",
    },
}

# The kinds a body may carry, by the apiVersion of its envelope: (package, kinds).
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "v1": (
        "core.v1",
        ("Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "ResourceQuota", "Pod", "Event"),
    ),
    "apps/v1": ("apps.v1", ("Deployment",)),
    "batch/v1": ("batch.v1", ("Job", "CronJob")),
    "rbac.authorization.k8s.io/v1": ("rbac.v1", ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")),
    "scheduling.k8s.io/v1": ("scheduling.v1", ("PriorityClass",)),
    "policy/v1": ("policy.v1", ("PodDisruptionBudget",)),
    "authentication.k8s.io/v1": ("authentication.v1", ("TokenRequest",)),
    "coordination.k8s.io/v1": ("coordination.v1", ("Lease",)),
    "events.k8s.io/v1": ("events.v1", ("Event",)),
}
# Every group version also takes the options of a delete (client-go's typed Delete sends them as the body).
DELETE_OPTIONS = "meta.v1.DeleteOptions"
