# mcp-warden container image.
#
#   docker build -t registry.example.com/platform/mcp-warden:0.1.0 .
#   (no Docker engine, or no access to Docker Hub: deploy/image/build-with-podman.sh)
#   docker run --read-only --tmpfs /tmp -p 8080:8080 -p 9090:9090 \
#     -v $PWD/gateway.yaml:/etc/mcp-warden/gateway.yaml:ro registry.example.com/platform/mcp-warden:0.1.0
#
# Layout (test/integration/ship/image-layout.test.ts rebuilds it without Docker and starts it;
# deploy/image/build-with-podman.sh builds this Dockerfile and checks the built image):
#   /app/dist/gateway/       compiled gateway (npm run build)
#   /app/node_modules/       production dependencies only
#   /app/policies/schema/    JSON Schemas (editor completion, `mcp-warden check`)
#   /etc/mcp-warden/gateway.yaml   configuration, mounted (ConfigMap); none is baked in
#   /etc/mcp-warden/policies/      policy documents, mounted as a directory (hot reload)
# Nothing is written at run time outside /tmp, so the root filesystem can be read-only.
# No secret is baked in: secrets arrive as env vars or mounted files named by gateway.yaml.

# Node 24, the active LTS (package.json engines: >=22). NODE_IMAGE may name any image with node and
# npm on the PATH and a uid 1000; build-with-podman.sh passes a locally built one.
ARG NODE_IMAGE=node:24.22.3-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gateway ./gateway
RUN npm run build

FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no production dependency needs an install script, and none gets to run one.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mcp-warden" \
      org.opencontainers.image.description="Security gateway that makes any MCP server an OAuth 2.1 resource server" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production \
    MCP_WARDEN_CONFIG=/etc/mcp-warden/gateway.yaml
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /src/dist/gateway ./dist/gateway
COPY package.json ./package.json
COPY policies/schema ./policies/schema
# The image's `node` user (uid 1000), numeric so Kubernetes runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080 9090
# The gateway drains in-flight requests and SSE streams on SIGTERM (server.shutdownGrace);
# Kubernetes' terminationGracePeriodSeconds must be longer than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/dist/gateway/cli.js"]
CMD ["serve", "--config", "/etc/mcp-warden/gateway.yaml"]
