#!/usr/bin/env bash
# Peak memory of resuming over a large output: 100,000 answered lines of
# ~5 KB (a ~500 MB output), nothing left to send. Prints /usr/bin/time's
# maximum resident set size. Usage: crates/together-batch/scripts/resume-rss.sh [LINES]
set -euo pipefail
cd "$(dirname "$0")/../../.."
lines="${1:-100000}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cargo build --release -p together-batch >/dev/null
python3 - "$dir" "$lines" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
pad = "x" * 4900
with open(f"{d}/in.jsonl", "w") as f, open(f"{d}/out.jsonl", "w") as o:
    for i in range(n):
        cid = f"q{i:06d}"
        f.write(json.dumps({"custom_id": cid, "url": "/v1/embeddings", "body": {"model": "m", "input": "hi"}}) + "\n")
        o.write(json.dumps({"custom_id": cid, "line": i + 1, "status": 200, "response": {"data": [{"embedding": pad}]}}) + "\n")
PY
ls -l "$dir/out.jsonl" | awk '{printf "output: %.0f MB\n", $5 / 1e6}'
TOGETHER_API_KEY=k /usr/bin/time -v ./target/release/together-batch run "$dir/in.jsonl" \
  -o "$dir/out.jsonl" --base-url http://127.0.0.1:9 --no-state 2>&1 \
  | grep -E "Maximum resident|Elapsed|already answered in"
