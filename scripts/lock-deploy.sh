#!/usr/bin/env bash
# Regenerate deploy/requirements-k8s.lock: what the production image adds to requirements.lock
# (dagster-k8s, for the Helm chart's K8sRunLauncher), hash-locked, resolved against the main
# lock's pins so the two install together. Needs `uv` (e.g. `pip install uv` in a throwaway venv).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dagster=$(sed -n 's/^dagster==\([0-9.]*\) .*/\1/p' requirements.lock)
minor=$(echo "$dagster" | cut -d. -f2)
library="0.$((minor + 16)).${dagster##*.}"  # dagster 1.13.27 goes with its libraries' 0.29.27
echo "dagster-k8s==$library" > "$work/k8s.in"
grep -E '^[A-Za-z0-9._-]+==' requirements.lock | sed 's/ \\$//' > "$work/constraints.txt"
"$UV" pip compile "$work/k8s.in" -c "$work/constraints.txt" --generate-hashes --no-header \
  --no-annotate --python-version 3.11 --output-file "$work/full.lock" >/dev/null
python3 - "$work/full.lock" <<'PY'
import re, sys
main = {m.group(1) for m in re.finditer(r"^([A-Za-z0-9._-]+)==", open("requirements.lock").read(), re.M)}
blocks = re.split(r"\n(?=[A-Za-z0-9._-]+==)", open(sys.argv[1]).read().strip())
extra = [b for b in blocks if b.split("==", 1)[0] not in main]
header = ("# The production image's additions to requirements.lock (dagster-k8s for the K8sRunLauncher),\n"
          "# resolved against its pins. Regenerate with scripts/lock-deploy.sh.\n")
open("deploy/requirements-k8s.lock", "w").write(header + "\n".join(extra) + "\n")
print(f"deploy/requirements-k8s.lock: {len(extra)} packages")
PY
