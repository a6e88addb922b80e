# The e2e manifest's agnhost, laid out as upstream's test/images/agnhost/Dockerfile lays it out on
# Alpine: /agnhost (and /agnhost-2) as entrypoint, /coredns, porter's certificates, /uploads,
# the user and group some tests expect in the image, and the tools image's dig, curl, nc, ss, iperf.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG BASE_INPUTS
COPY coredns /coredns
COPY porter/localhost.crt porter/localhost.key /
COPY agnhost /agnhost
RUN set -eux; \
    ln -s agnhost /agnhost-2; \
    ln -s /usr/bin/iperf /usr/local/bin/iperf; \
    mkdir /uploads; \
    groupadd -g 50000 group-defined-in-image; \
    useradd -u 1000 -M -s /bin/sh -G group-defined-in-image user-defined-in-image
# 80 test-webserver, 8080 netexec and friends, 8081 netexec UDP, 9376 serve-hostname, 5000 grpc.
EXPOSE 80 8080 8081 9376 5000
ENTRYPOINT ["/agnhost"]
CMD ["pause"]
