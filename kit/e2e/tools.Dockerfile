# k8s-lab/e2e-tools: the commands Kubernetes' e2e tests run in their Pods' shells, on the lab's
# Debian base. It also carries the manifest's busybox and jessie-dnsutils tags: the selected tests
# run only shell commands in those images (sh, cat, env, ls, sleep, dig, getent), which Debian
# has; busybox itself is here for the applets the httpd image serves with. Base of agnhost and httpd.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# The base image's own inputs, so this image is rebuilt when the base changes.
ARG BASE_INPUTS
# The last line checks each tool (dash's `command -v` looks up only its first name).
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        bind9-dnsutils busybox curl iperf iproute2 netcat-openbsd procps; \
    rm -rf /var/lib/apt/lists/*; \
    for tool in dig nc curl ip ss iperf getent hostname awk nsenter busybox; do command -v "$tool"; done
CMD ["sh"]
