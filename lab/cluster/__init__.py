"""The cluster: the kind cluster's life cycle (`kind`) and access to its API (`kube`)."""
