"""k8s-lab: a Jupyter-based Kubernetes teaching lab on a real kind cluster."""

__version__ = "0.1.0"
