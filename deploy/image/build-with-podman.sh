#!/usr/bin/env bash
# Builds the image from the Dockerfile with podman where no base image can be pulled, then checks
# the built image's layout. Containers are never started (they cannot run on the CI machines).
#
#   deploy/image/build-with-podman.sh [tag]        (default localhost/mcp-warden:0.1.0; root, podman, mmdebstrap)
#
# The base stands in for node:24-bookworm-slim: a minimal Debian bookworm rootfs (mmdebstrap), the
# Node 24 binary from the npm registry (.ci/node 24), npm from the registry, and a `node` user with
# uid/gid 1000. It is imported once as localhost/mcp-warden-node-base:<node version>.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
tag="${1:-localhost/mcp-warden:0.1.0}"
size_limit_mb="${IMAGE_SIZE_LIMIT_MB:-350}"
node="$(.ci/node 24)"
node_version="$("$node" --version)"
base="localhost/mcp-warden-node-base:${node_version#v}"
step() { printf '\nimage: %s\n' "$*"; }
fail() { printf 'image: FAIL %s\n' "$*" >&2; exit 1; }

if ! podman image exists "$base"; then
  step "building base $base (Debian bookworm minbase + Node $node_version)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack npm@11 --silent >/dev/null)
  mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="install -m 0755 '$node' \"\$1/usr/local/bin/node\"" \
    --customize-hook="mkdir -p \"\$1/usr/local/lib/node_modules/npm\" && tar xzf '$tmp'/npm-*.tgz -C \"\$1/usr/local/lib/node_modules/npm\" --strip-components=1" \
    --customize-hook="ln -s ../lib/node_modules/npm/bin/npm-cli.js \"\$1/usr/local/bin/npm\"" \
    --customize-hook="chroot \"\$1\" groupadd --gid 1000 node && chroot \"\$1\" useradd --uid 1000 --gid node --shell /bin/bash --create-home node" \
    --customize-hook="rm -rf \"\$1\"/var/lib/apt/lists/* \"\$1\"/var/cache/apt/*" \
    bookworm "$tmp/rootfs.tar"
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["node"]' "$tmp/rootfs.tar" "$base" >/dev/null
fi

# Behind a TLS-intercepting proxy (NODE_EXTRA_CA_CERTS set, as on the CI machines) npm inside the
# build needs that CA: it is mounted for the RUN steps with an npmrc naming it, so neither lands in
# an image layer (the runtime stage has no RUN step at all).
mounts=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r "$NODE_EXTRA_CA_CERTS" ]; then
  npmrc_dir="$(mktemp -d)"
  printf 'cafile=/run/build-ca/ca.crt\n' >"$npmrc_dir/npmrc"
  cp "$NODE_EXTRA_CA_CERTS" "$npmrc_dir/ca.crt"
  mounts=(--volume "$npmrc_dir:/run/build-ca:ro" --volume "$npmrc_dir/npmrc:/usr/local/etc/npmrc:ro")
fi

step "podman build --isolation chroot -t $tag (NODE_IMAGE=$base)"
podman build --quiet --isolation chroot "${mounts[@]}" --build-arg "NODE_IMAGE=$base" -t "$tag" . >/dev/null
[ -n "${npmrc_dir:-}" ] && rm -rf "$npmrc_dir"

step "checking $tag"
config="$(podman image inspect "$tag" --format '{{json .Config}}')"
size="$(podman image inspect "$tag" --format '{{.Size}}')"
mnt="$(podman image mount "$tag")"
trap 'podman image unmount "$tag" >/dev/null 2>&1 || true; rm -rf "${tmp:-/nonexistent}"' EXIT
# The checks are in Node (the test suite's language) and read the mounted image's files directly.
CONFIG="$config" SIZE="$size" MNT="$mnt" SIZE_LIMIT_MB="$size_limit_mb" "$node" "$root/deploy/image/check-layout.mjs"

# The image's own node and code, run from the mounted filesystem on the host (not a container:
# no namespaces, no read-only root), as a smoke test that the production dependencies suffice.
image_node="$("$mnt/usr/local/bin/node" --version)"
[ "${image_node%%.*}" = "v24" ] || fail "the image's node is $image_node, not v24"
MCP_WARDEN_REDIS_URL=redis://127.0.0.1:1 "$mnt/usr/local/bin/node" "$mnt/app/dist/gateway/cli.js" check --config "$root/deploy/examples/gateway.yaml" \
  || fail "the image's cli.js check on deploy/examples/gateway.yaml"
step "ok: $tag, node $image_node, $((size / 1000000)) MB"
