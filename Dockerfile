# sip-edge: build with dev dependencies, run the compiled dist/ with
# production dependencies only, as a non-root user.
FROM node:20-bookworm-slim AS build
WORKDIR /app
# A C compiler for the native UDP socket (native/udp); the image has Node's headers.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY native/udp ./native/udp
RUN npm ci --no-audit --no-fund && node scripts/build-native.mjs --required
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY perf ./perf
RUN npm run build

FROM node:20-bookworm-slim AS run
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no compiler here; the addon comes from the build stage.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/native/build ./native/build
COPY proxy-rules ./proxy-rules
# The config and rules live in proxy-rules/: mount your own over it
# (docker run -v /etc/sip-edge:/app/proxy-rules ...). The flow-token key file
# is written there on first start, so the mount must be writable by `node`.
RUN chown -R node:node /app/proxy-rules
USER node
# SIP over UDP and TCP, TLS, and the admin HTTP port.
EXPOSE 5060/udp 5060/tcp 5061/tcp 8080/tcp
ENTRYPOINT ["node", "--enable-source-maps", "dist/src/cli.js"]
CMD ["start", "--config", "proxy-rules/edge.yaml"]
