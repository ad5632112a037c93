#!/usr/bin/env bash
# Measures the embed function's cold start and memory with the local model:
# for each run, the release binary is started and one embedding is requested at
# once; the time from spawn to that answer is the cold start (the request waits
# while the runtime loads the model). Then a batch of 32 reference sentences
# and a worst-case request (32 texts of 256 tokens, the EMBED_MAX_TOKENS
# default) are embedded, and the peak resident memory (VmHWM) is read after
# each step. Prints each run and the medians; asserts nothing. Goals: cold
# start under 300 ms, peak under 256 MiB (the stack.yml limit).
#
#   scripts/embed-coldstart.sh [RUNS]      # RUNS defaults to 7
#
# The model file is read from the page cache after the first run, as on a node
# that has run the function before. RAYON_NUM_THREADS (compute threads)
# defaults to stack.yml's 1.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${1:-7}"
MODEL_DIR="${MINILM_MODEL_DIR:-functions/embed/assets/model}"
[[ -n "${MINILM_MODEL_DIR:-}" ]] || scripts/fetch-model.sh "$MODEL_DIR"
MODEL_DIR="$(cd "$MODEL_DIR" && pwd)"

cargo build --release --locked -p embed
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
echo "+ RAYON_NUM_THREADS=$RAYON_NUM_THREADS EMBED_MODEL_DIR=$MODEL_DIR target/release/embed, $RUNS runs" >&2

python3 - "$RUNS" "$MODEL_DIR" target/release/embed tests/fixtures/minilm/sentences.txt <<'PY'
import http.client, json, os, socket, statistics, subprocess, sys, time

runs, model_dir, binary, sentences_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
sentences = open(sentences_file).read().splitlines()[:32]
# "word" is one word piece: 254 of them plus [CLS] and [SEP] is 256 tokens.
worst = ["word " * 300] * 32


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, texts, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", "/", json.dumps({"input": texts}), {"content-type": "application/json"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {body[:200]!r}")
    return json.loads(body)


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


rows = []
for run in range(runs):
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LISTEN_ADDR": f"127.0.0.1:{port}",
        "EMBED_MODEL_DIR": model_dir,
        "RUST_LOG": "warn",
        "RAYON_NUM_THREADS": os.environ["RAYON_NUM_THREADS"],
    }
    started = time.perf_counter()
    child = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                answer = post(port, ["how do i reset my card pin"])
                break
            except ConnectionRefusedError:
                if child.poll() is not None:
                    raise RuntimeError(f"embed exited with {child.returncode}")
                time.sleep(0.0005)
        cold_ms = (time.perf_counter() - started) * 1000
        assert len(answer["embeddings"][0]) == 384
        hwm_first = status_kib(child.pid, "VmHWM")
        t = time.perf_counter()
        post(port, sentences)
        batch_ms = (time.perf_counter() - t) * 1000
        hwm_batch = status_kib(child.pid, "VmHWM")
        t = time.perf_counter()
        answer = post(port, worst)
        worst_ms = (time.perf_counter() - t) * 1000
        hwm_worst = status_kib(child.pid, "VmHWM")
        rss_after = status_kib(child.pid, "VmRSS")
    finally:
        child.terminate()
        child.wait()
    row = (cold_ms, hwm_first / 1024, batch_ms, hwm_batch / 1024, worst_ms, hwm_worst / 1024, rss_after / 1024)
    rows.append(row)
    print(
        f"run {run + 1}: cold start {row[0]:.0f} ms, peak RSS {row[1]:.1f} MiB; "
        f"32 sentences {row[2]:.0f} ms, peak {row[3]:.1f} MiB; "
        f"32x256 tokens ({answer['usage']['input_tokens']}) {row[4]:.0f} ms, peak {row[5]:.1f} MiB, "
        f"RSS after {row[6]:.1f} MiB"
    )

med = [statistics.median(col) for col in zip(*rows)]
print(
    f"median of {runs}: cold start (spawn -> first embedding) {med[0]:.0f} ms; "
    f"peak RSS after it {med[1]:.1f} MiB, after 32 sentences ({med[2]:.0f} ms) {med[3]:.1f} MiB, "
    f"after 32x256 tokens ({med[4]:.0f} ms) {med[5]:.1f} MiB; RSS at rest {med[6]:.1f} MiB"
)
PY
