"""The cluster: the kind cluster's life cycle (`kind`), access to its API (`kube`), and a classroom
of per-student namespaces on any cluster (`classroom`)."""
