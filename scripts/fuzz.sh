#!/usr/bin/env bash
# Fuzzes the parsers of outside input (see FUZZING.md) with cargo-fuzz:
# installs the nightly toolchain and cargo-fuzz when missing, builds every
# target once, then runs each for RUNS executions with fuzz/corpus/<target>/
# as the corpus (new interesting inputs are kept there) and fuzz/seeds/<target>/
# as read-only seeds. Prints per target the executions, the wall time, the
# corpus size and the outcome. A crash, timeout or out-of-memory input is
# copied to fuzz/crashes/<target>/ and the script goes on with the next target,
# then exits 1.
#
# Usage: scripts/fuzz.sh [TARGET...]       (default: every target)
# Environment:
#   RUNS=1000000     executions per target (libFuzzer -runs)
#   MAX_TIME=0       if not 0, stop a target after this many seconds
#                    (libFuzzer -max_total_time)
#   TIMEOUT=30       seconds one input may take before it counts as a hang
#   SANITIZER=none   cargo-fuzz sanitizer: none or address (see FUZZING.md)
#   JOBS=1           libFuzzer processes per target (-jobs, -workers), each
#                    running RUNS/JOBS executions on the shared corpus; their
#                    logs are fuzz/logs/<target>.job<N>.log
#   CMIN_ABOVE=0     minimise a corpus of more files than this (libFuzzer -merge)
#                    before and after its run (0: whenever it has files)
set -uo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-1000000}
MAX_TIME=${MAX_TIME:-0}
TIMEOUT=${TIMEOUT:-30}
SANITIZER=${SANITIZER:-none}
CMIN_ABOVE=${CMIN_ABOVE:-0}
JOBS=${JOBS:-1}

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal || exit 1
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi

fuzz() { cargo +nightly fuzz "$@"; }

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(fuzz list)
fi

echo "fuzz: building ${targets[*]} (sanitizer: $SANITIZER)"
fuzz build --sanitizer "$SANITIZER" || exit 1

HOST=$(rustc +nightly -vV | sed -n 's/^host: //p')
count_files() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }

# Minimises fuzz/corpus/<target>/ (libFuzzer -merge=1, what `cargo fuzz
# cmin` runs) into a folder that starts with the seeds, so the corpus keeps
# only inputs that cover what the seeds do not; edges only (-use_counters=0),
# not how often each runs: a few hundred files rather than thousands.
minimise() {
    local target=$1 corpus=fuzz/corpus/$1 seeds=fuzz/seeds/$1
    local before merged seed
    before=$(count_files "$corpus")
    if [ "$before" -gt "$CMIN_ABOVE" ]; then
        echo "fuzz: $target: minimising the corpus ($before files)"
        merged=$(mktemp -d)
        cp "$seeds"/* "$merged"/ 2>/dev/null
        "fuzz/target/$HOST/release/$target" -merge=1 -use_counters=0 -timeout="$TIMEOUT" \
            "$merged" "$corpus" >"fuzz/logs/$target.cmin.log" 2>&1 || {
            echo "fuzz: $target: minimising failed, see fuzz/logs/$target.cmin.log" >&2
            rm -rf "$merged"
            return 1
        }
        for seed in "$seeds"/*; do
            rm -f "$merged/$(basename "$seed")"
        done
        find "$corpus" -maxdepth 1 -type f -delete
        mv "$merged"/* "$corpus"/ 2>/dev/null
        rm -rf "$merged"
        echo "fuzz: $target: corpus minimised from $before to $(count_files "$corpus") files"
    fi
}

mkdir -p fuzz/logs
failed=0
summary=()
for target in "${targets[@]}"; do
    corpus=fuzz/corpus/$target
    seeds=fuzz/seeds/$target
    artifacts=fuzz/artifacts/$target
    log=fuzz/logs/$target.log
    mkdir -p "$corpus" "$seeds" "$artifacts"
    minimise "$target" || failed=1
    marker=$(mktemp)
    echo "fuzz: $target: $RUNS runs (log: $log)"
    start=$(date +%s)
    # core_module: inputs of at most 1 KiB (of wasm-smith choices or module
    # bytes) keep the modules small and an execution short.
    extra=()
    [ "$target" = core_module ] && extra=(-max_len=1024)
    runs_each=$RUNS
    if [ "$JOBS" -gt 1 ]; then
        runs_each=$((RUNS / JOBS))
        extra+=(-jobs="$JOBS" -workers="$JOBS")
        rm -f fuzz-[0-9]*.log
    fi
    fuzz run --sanitizer "$SANITIZER" "$target" "$corpus" "$seeds" -- \
        -runs="$runs_each" -max_total_time="$MAX_TIME" -timeout="$TIMEOUT" \
        -print_final_stats=1 -print_pcs=0 "${extra[@]}" >"$log" 2>&1
    status=$?
    seconds=$(($(date +%s) - start))
    stats=("$log")
    if [ "$JOBS" -gt 1 ]; then
        # Each job writes fuzz-<N>.log where it runs; its crash, if any, is
        # reported there, not in the log of the parent.
        stats=()
        for job_log in fuzz-[0-9]*.log; do
            [ -e "$job_log" ] || continue
            mv "$job_log" "fuzz/logs/$target.job${job_log//[^0-9]/}.log"
            stats+=("fuzz/logs/$target.job${job_log//[^0-9]/}.log")
            grep -q '^==[0-9]*== ERROR\|^thread .* panicked\|deadly signal' \
                "${stats[-1]}" && status=1
        done
    fi
    runs=$(cat "${stats[@]}" | sed -n 's/^stat::number_of_executed_units: *//p' |
        awk '{ sum += $1 } END { if (NR) print sum }')
    peak=$(cat "${stats[@]}" | sed -n 's/^stat::peak_rss_mb: *//p' | sort -n | tail -n 1)
    found=()
    while IFS= read -r artifact; do
        mkdir -p "fuzz/crashes/$target"
        cp "$artifact" "fuzz/crashes/$target/"
        found+=("fuzz/crashes/$target/$(basename "$artifact")")
    done < <(find "$artifacts" -maxdepth 1 -type f -newer "$marker" \
        \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \))
    rm -f "$marker"
    if [ "$status" -eq 0 ]; then
        outcome="no crash"
    else
        outcome="FAILED (exit $status) ${found[*]:-}"
        failed=1
        echo "fuzz: $target: failed; the last lines of $log:" >&2
        tail -n 40 "$log" >&2
    fi
    minimise "$target" || failed=1
    files=$(count_files "$corpus")
    echo "fuzz: $target: ${runs:-?} executions in ${seconds} s, peak RSS ${peak:-?} MiB, corpus $files files: $outcome"
    summary+=("| $target | ${runs:-?} | ${seconds} s | $files | $outcome |")
done

echo
echo "| target | executions | wall time | corpus files | result |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${summary[@]}"
echo "date $(date -u +%Y-%m-%d), $(nproc) cores, commit $(git rev-parse --short HEAD), sanitizer $SANITIZER, $(rustc +nightly --version), $(cargo fuzz --version)"
exit "$failed"
