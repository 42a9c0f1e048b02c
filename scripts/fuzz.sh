#!/usr/bin/env bash
# Time-boxed fuzzing: runs every cargo-fuzz target in fuzz/ for a while, one
# after another, and reports per target how many inputs it ran and whether
# anything crashed (a panic, a failed invariant, a hang, running out of memory).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#
# Needs a nightly toolchain (rustup toolchain install nightly); installs
# cargo-fuzz if it is missing. Corpora grow in fuzz/corpus/<target> (the seeds
# in fuzz/seeds/<target> are read, never written); crash inputs land in
# fuzz/artifacts/<target>. Exits 1 if any target crashed, 2 on bad usage.
#
# Knobs (environment):
#   FUZZ_TARGETS    targets to run, space-separated (default: all of them)
#   FUZZ_SANITIZER  address, leak, memory, thread or none (default none: the
#                   code under test is safe Rust, so ASan mostly costs speed)
#   FUZZ_TOOLCHAIN  the toolchain cargo-fuzz builds with (default nightly)
#   CARGO_TARGET_DIR is honoured as usual (default fuzz/target).
set -euo pipefail

secs=${1:-60}
if ! [[ $secs =~ ^[1-9][0-9]*$ ]] || [[ $# -gt 1 ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]   (a whole number of seconds > 0, default 60)" >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
fuzz_dir=$root/fuzz
toolchain=${FUZZ_TOOLCHAIN:-nightly}
sanitizer=${FUZZ_SANITIZER:-none}
cargo_fuzz=(cargo "+$toolchain" fuzz)

if ! "${cargo_fuzz[@]}" --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [[ -n ${FUZZ_TARGETS:-} ]]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <("${cargo_fuzz[@]}" list --fuzz-dir "$fuzz_dir")
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "fuzz: no targets found in $fuzz_dir" >&2
    exit 2
fi

# Build everything once up front, so a compile error is reported as such and
# the time box is spent fuzzing, not compiling.
"${cargo_fuzz[@]}" build --fuzz-dir "$fuzz_dir" -s "$sanitizer"

# libFuzzer's job mode writes fuzz-<n>.log into the working directory.
work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=()
summary=()
total_runs=0
started=$SECONDS
for t in "${targets[@]}"; do
    corpus=$fuzz_dir/corpus/$t
    artifacts=$fuzz_dir/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    dirs=("$corpus")
    [[ -d $fuzz_dir/seeds/$t ]] && dirs+=("$fuzz_dir/seeds/$t")
    flags=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -workers=1 -jobs=1
        -print_final_stats=1)
    [[ -f $fuzz_dir/dict/$t.dict ]] && flags+=(-dict="$fuzz_dir/dict/$t.dict")
    marker=$work/$t.start
    touch "$marker"
    log=$work/$t.log
    echo "fuzz: $t for ${secs}s" >&2
    rc=0
    (cd "$work" && "${cargo_fuzz[@]}" run --fuzz-dir "$fuzz_dir" -s "$sanitizer" "$t" \
        "${dirs[@]}" -- "${flags[@]}") >"$log" 2>&1 || rc=$?

    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -n1 | grep -Eo '[0-9]+' || true)
    # After a crash there is no "Done" line; the final stats still count.
    crash_runs=$(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$log" | tail -n1 |
        grep -Eo '[0-9]+$' || true)
    total_runs=$((total_runs + ${runs:-${crash_runs:-0}}))
    files=$(find "$corpus" -type f | wc -l)
    bytes=$(du -sb "$corpus" | cut -f1)
    mapfile -t found < <(find "$artifacts" -type f -newer "$marker" \
        \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \))
    line=$(printf '%-12s %12s runs  corpus %5d files %9d bytes' "$t" "${runs:-${crash_runs:-?}}" \
        "$files" "$bytes")
    if [[ $rc -ne 0 || ${#found[@]} -gt 0 ]]; then
        failed+=("$t")
        summary+=("$line  CRASHED (exit $rc)")
        echo "---- $t: last lines of the libFuzzer output ----" >&2
        grep -v '^#[0-9]' "$log" | tail -n 40 >&2 || true
        for f in "${found[@]}"; do
            echo "---- $t: reproduce with: cargo +$toolchain fuzz run --fuzz-dir $fuzz_dir -s $sanitizer $t $f" >&2
        done
        # Keep the whole log next to the artifacts.
        cp "$log" "$artifacts/last-run.log"
    elif [[ -z $runs ]]; then
        failed+=("$t")
        summary+=("$line  NO FINAL 'Done N runs' LINE")
        tail -n 40 "$log" >&2
        cp "$log" "$artifacts/last-run.log"
    else
        summary+=("$line  ok")
    fi
done

echo
printf '%s\n' "${summary[@]}"
echo "total: $total_runs runs in $((SECONDS - started))s, ${#targets[@]} targets, ${secs}s each"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
