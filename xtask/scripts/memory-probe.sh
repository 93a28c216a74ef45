#!/bin/bash
# The memory probe behind docs/BENCHMARKS.md "Memory": one release server, one oha load as
# `cargo xtask bench` runs it (bodies from a bench run in target/bench/work/), peak RSS and
# thread count sampled from ps every 50 ms.
# usage: MODELS=paraphrase-MiniLM-L3-v2 DEFAULT=paraphrase-MiniLM-L3-v2 xtask/scripts/memory-probe.sh MAX_BATCH_TOKENS mixed|short RATE
export OUT=${OUT:-/tmp/memory-probe}
cd "$(dirname "$0")/../.." && mkdir -p "$OUT"
T=$1; LOAD=$2; RATE=$3
PORT=$((20000 + RANDOM % 20000))
AKIDB_MODELS=${MODELS:-} AKIDB_EMBEDDING_MODEL=${DEFAULT:-all-MiniLM-L6-v2} AKIDB_MAX_BATCH_TOKENS=$T target/release/akidb-embed serve --host 127.0.0.1 --rest-port $PORT --grpc-port 0 --models-dir models > $OUT/server-$T.log 2>&1 &
PID=$!
for i in $(seq 1 100); do curl -sf http://127.0.0.1:$PORT/health/ready >/dev/null && break; sleep 0.1; done
IDLE=$(ps -o rss= -p $PID)
( peak=0; while kill -0 $PID 2>/dev/null; do r=$(ps -o rss= -p $PID 2>/dev/null); [ -n "$r" ] && [ $r -gt $peak ] && peak=$r && echo $peak > $OUT/peak-$T && ps -o nlwp= -p $PID > $OUT/threads-$T; sleep 0.05; done ) &
MON=$!
oha --no-tui --output-format json -z 10s -q $RATE --latency-correction -w -c 256 -m POST -H 'content-type: application/json' -Z target/bench/work/bodies-$LOAD.jsonl http://127.0.0.1:$PORT/api/v1/embed > $OUT/oha-$T-$LOAD.json 2>/dev/null
sleep 0.3
PEAK=$(cat $OUT/peak-$T)
kill $PID; wait $PID 2>/dev/null; kill $MON 2>/dev/null
python3 - $T $LOAD $RATE $IDLE $PEAK <<'PY'
import json,os,sys
T,L,R,idle,peak=sys.argv[1:]
d=json.load(open(os.environ['OUT'] + f'/oha-{T}-{L}.json'))
s=d['summary']; p=d['latencyPercentiles']
codes=d.get('statusCodeDistribution',{})
print(f"tokens={T:>6} {L}@{R}: rps={s['requestsPerSec']:.0f} p50={p['p50']*1e3:.1f} p95={p['p95']*1e3:.1f} p99={p['p99']*1e3:.1f} ms codes={codes} idle={int(idle)/1024:.0f}MB peak={int(peak)/1024:.0f}MB")
PY
