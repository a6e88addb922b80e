# An image that needs a shell or netfilter tools next to its binary (kube-proxy, kindnetd, the
# local-path helper): the offline Debian base plus the listed packages.
ARG DEBIAN_BASE
FROM ${DEBIAN_BASE}
ARG PACKAGES
RUN if [ -n "$PACKAGES" ]; then apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES \
      && apt-get clean && rm -rf /var/lib/apt/lists/*; fi
COPY bin/ /usr/local/bin/
