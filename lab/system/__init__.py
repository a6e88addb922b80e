"""The deployed system: the layered manifests and the Helm chart, installed and removed."""
