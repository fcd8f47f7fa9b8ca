# The modelstream image: the CLI and its shared-library closure on an empty base, for the
# node agent (a DaemonSet), the init container and the native sidecar of the Helm chart.
#
#   make image          builds it offline with podman (scripts/image.sh), tags
#                       localhost/modelstream:VERSION and :latest, and exports
#                       build/modelstream-image.tar (OCI archive)
#   make image-tests    runs it the way Kubernetes does (tests/image_tests.sh)
#
# The runtime stage holds no shell, no package manager and nothing writable: the binary,
# the libraries the dynamic loader resolves for it (paths kept, merged-/usr layout), the CA
# bundle, passwd/group with the user nonroot (65532), an empty /tmp (1777; mount a tmpfs
# there under readOnlyRootFilesystem) and /cache, where the node cache is mounted.

# ---------------------------------------------------------------------------------------
# Build stage: Debian's compiler and -dev packages, then the runtime closure under /out.
FROM debian:bookworm-slim AS build

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Versions are not pinned (DL3008): the build stage takes what bookworm and its updates
# carry on the day of the build, so that the closure gets the current patched libraries;
# a pin would break the build the day the mirror drops the pinned version.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      binutils ca-certificates gcc libc6-dev make \
      libcjson-dev libcurl4-openssl-dev libexpat1-dev libssl-dev libwebsockets-dev libyaml-dev \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The library (shared and static) and the CLI, which links the library statically.
RUN make -j"$(nproc)" lib cli

# The root file system of the runtime stage, under /out. The shared-library closure of the
# binary and the library is taken as the dynamic loader resolves it: each library under the
# name it is looked up by (usually a symlink) and the file that name points to, in their
# real directories; /lib and /lib64 stay the symlinks into /usr that they are on merged-/usr
# Debian, so that /lib64/ld-linux-x86-64.so.2 (the ELF interpreter) resolves. The loader
# finds libmodelstream.so.1 in /usr/local/lib through the ld.so.cache made here.
RUN mkdir -p /out/usr/local/bin /out/usr/local/lib /out/etc/ssl/certs \
 && install -m 0755 build/modelstream /out/usr/local/bin/modelstream \
 && cp -a build/libmodelstream.so.1 build/libmodelstream.so.0.* /out/usr/local/lib/ \
 && strip --strip-debug /out/usr/local/bin/modelstream /out/usr/local/lib/libmodelstream.so.0.* \
 && for p in $(ldd /out/usr/local/bin/modelstream /out/usr/local/lib/libmodelstream.so.1 \
                 | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(/ { print $1 }' | sort -u); do \
      dir=$(readlink -f "$(dirname "$p")"); real=$(readlink -f "$p"); \
      mkdir -p "/out$dir" "/out$(dirname "$real")"; \
      cp -a "$dir/$(basename "$p")" "/out$dir/"; \
      cp -a "$real" "/out$real"; \
    done \
 && for d in /lib /lib64; do if [ -L "$d" ]; then cp -a "$d" /out/; fi; done \
 && printf '/usr/local/lib\n/usr/lib/x86_64-linux-gnu\n' > /out/etc/ld.so.conf \
 && ldconfig -r /out \
 && cp -L /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
      > /out/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /out/etc/group \
 && printf 'passwd: files\ngroup: files\nhosts: files dns\n' > /out/etc/nsswitch.conf \
 && install -d -m 1777 /out/tmp \
 && install -d -m 0755 -o 65532 -g 65532 /out/cache /out/home/nonroot \
 && if ldd /out/usr/local/bin/modelstream | grep 'not found'; then exit 1; fi

# ---------------------------------------------------------------------------------------
# Runtime stage: nothing but the closure.
FROM scratch

ARG VERSION=0.3.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="modelstream" \
      org.opencontainers.image.description="Streams safetensors model weights from S3 into a node cache: the node agent, the init container and the native sidecar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="scratch"

COPY --from=build /out/ /

# libcurl already defaults to this bundle (Debian builds it with --with-ca-bundle); the
# variable points OpenSSL's own default there too, since /usr/lib/ssl is not in the image.
ENV PATH=/usr/local/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

USER 65532:65532
ENTRYPOINT ["modelstream"]
CMD ["--help"]
