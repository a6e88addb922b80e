# The e2e manifest's httpd (both tags, old and new, for rolling updates): a web server on port 80
# serving /usr/local/apache2/htdocs, where the StatefulSet tests move index.html away and back to
# fail and heal the readiness probe. busybox's httpd serves it; nothing else of Apache is used.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG BASE_INPUTS
RUN set -eux; \
    busybox --list | grep -qx httpd; \
    mkdir -p /usr/local/apache2/htdocs; \
    echo '<html><body><h1>It works!</h1></body></html>' > /usr/local/apache2/htdocs/index.html
EXPOSE 80
# As PID 1 busybox httpd ignores SIGTERM and a stop would wait out the grace period (the tests
# delete and roll Pods often); a static file server has nothing to flush.
STOPSIGNAL SIGKILL
CMD ["busybox", "httpd", "-f", "-p", "80", "-h", "/usr/local/apache2/htdocs"]
