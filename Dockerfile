# The operator image (operator, webhook server, jig runner): Node 24 runs the TypeScript sources
# directly (type stripping).
FROM node:24-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY generated ./generated
COPY operator ./operator
COPY webhooks ./webhooks
COPY crds ./crds
USER 65532:65532
ENTRYPOINT ["node", "operator/main.ts"]
