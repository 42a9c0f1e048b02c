# One image, both servers, nothing else: the static musl binaries of
# `make static` on an empty base. No shell, no libc, no package manager.
#
#   make static && docker build -t fabric-telemetry .
#   docker run --rm -p 8080:8080 fabric-telemetry                # metrics_server
#   docker run --rm -p 9001:9001 fabric-telemetry /data_server   # data_server
#
# The binaries are built on the host (not in a build stage) so the image is
# exactly what `make static` produced and tested. They need no CA bundle
# (HTTP only) and no time zone data (logs are UTC).
FROM scratch

COPY target/x86_64-unknown-linux-musl/release/data_server /data_server
COPY target/x86_64-unknown-linux-musl/release/metrics_server /metrics_server

# nobody:nogroup, by number (scratch has no /etc/passwd).
USER 65534:65534

# data_server, metrics_server. The defaults of DATA_HOST/METRICS_HOST are
# 0.0.0.0, so both listen on the container's interfaces.
EXPOSE 9001 8080

# The image has no HTTP client, so the binaries probe themselves
# (`--probe URL` exits 0 only on a 2xx). No HEALTHCHECK here, since one image
# runs either server; compose.yaml gives each its own (/health, /ready).
# Both servers exit 0 on SIGTERM (docker stop) after logging `shutdown`.
CMD ["/metrics_server"]
