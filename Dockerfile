# syntax=docker/dockerfile:1
# Multi-stage build: the first stage compiles better-sqlite3 with the build
# tools and the TypeScript to JavaScript; the runtime stage has only Node.js,
# the compiled app and its production node_modules.

FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY src ./src
COPY scripts/build.mjs ./scripts/
COPY bench/bare-bolt.ts ./bench/
COPY manifest.yml tsconfig.json tsconfig.build.json ./
# Compile to JavaScript, then drop the build tools (TypeScript) from node_modules.
RUN node scripts/build.mjs --force \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf src bench scripts

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PORT=3000 \
    DATABASE_PATH=/data/runbook-bot.sqlite3
WORKDIR /app
RUN groupadd --system --gid 10001 runbook \
 && useradd --system --uid 10001 --gid runbook --home-dir /app --shell /usr/sbin/nologin runbook \
 && mkdir -p /data \
 && chown runbook:runbook /data
COPY --from=build --chown=root:root /app /app
USER runbook
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "--optimize-for-size", "dist/src/bot/main.js"]
