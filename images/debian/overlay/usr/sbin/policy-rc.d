#!/bin/sh
# k8s-lab base image: packages must never start services while an image is being built.
exit 101
