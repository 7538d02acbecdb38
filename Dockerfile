# The operator image (operator, webhook server, jig runner, DNS sidecar): Node 24 runs the TypeScript sources
# directly (type stripping).
FROM node:24-bookworm-slim AS native
# The DNS and DHCP sidecars' native UDP loops (ADR 0020, 0023), built against the Node-API headers
# package.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY tools/build-native.sh ./tools/
COPY tools/native ./tools/native
COPY dns-sidecar/native ./dns-sidecar/native
COPY dhcp-sidecar/native ./dhcp-sidecar/native
RUN tools/build-native.sh

FROM node:24-bookworm-slim
WORKDIR /app
# ping for the aliveness check (§10.1); it uses unprivileged ICMP sockets, which containerd 2
# allows by default (net.ipv4.ping_group_range); older runtimes need that sysctl set on the pod.
RUN apt-get update && apt-get install -y --no-install-recommends iputils-ping \
  && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY generated ./generated
COPY operator ./operator
COPY webhooks ./webhooks
COPY dns-sidecar ./dns-sidecar
COPY --from=native /src/dns-sidecar/native/build ./dns-sidecar/native/build
COPY dhcp-sidecar ./dhcp-sidecar
COPY --from=native /src/dhcp-sidecar/native/build ./dhcp-sidecar/native/build
COPY crds ./crds
USER 65532:65532
# operator/runtime/heap.ts NODE_FLAGS (heap.test.ts checks they match).
ENTRYPOINT ["node", "--max-semi-space-size=8", "operator/main.ts"]
