#!/bin/sh
# report.sh: writes the report of a study of settrain runs: REPORT_DIR/report.md
# with, per data set, network, settings and backend, the mean and standard
# deviation over seeds per motif size (final test accuracy, time, average time
# per epoch, R_r, A_r, S), whether each difference between motif sizes is within
# seed noise, and the per-seed values in the paper's Table 2 layout (with the best
# test accuracy over epochs, labelled as selected on the test set); the
# paper's numbers beside ours (when the study folder holds study.preset with
# `paper` lines, as scripts/study.sh writes it); the CPU-to-GPU speed-up per
# motif when both backends ran the same configuration; PNG plots made with
# gnuplot (test accuracy against epoch, time per epoch over the first 30
# epochs, and S against the weight w_R given to efficiency, w_A = 1 - w_R: a
# straight line through settrain score's S at w_R = 0, 0.1 and 1);
# REPORT_DIR/summary.csv (one row per run, for other tools);
# REPORT_DIR/summary-by-motif.csv (one row per group and motif size: mean and
# standard deviation over the seeds); and, under REPORT_DIR/plots/, the plot
# data and the gnuplot scripts that drew them.
#
# Run folders are found at any depth under each DIR: a folder holding run.json
# and metrics.csv, as `settrain train` writes them; their names do not matter.
# Runs whose run.json status is not "finished" are listed but not tabulated.
# R_r, A_r and S come from `settrain score --csv` (one implementation of the
# paper's formula), each run against the m = 1 run with the same data set,
# network, settings, backend and seed. The average time per epoch is the mean
# of metrics.csv's t_epoch_s over epochs 2..N (epoch 1 alone when N = 1).
# The accuracy is run.json's final_test_acc (after the last epoch): the result.
# best_test_acc is the maximum over epochs, chosen on the test set itself, so
# optimistic; it is shown labelled as such and no other number uses it.
# Standard deviations are sample standard deviations (n - 1); a difference
# between two motif sizes is "within seed noise" when |difference of the means|
# < the larger of the two standard deviations (the report states the rule).
# Both run.json layouts are read: older files without run_id, config.init,
# config.pad_input or data.n_inputs (their runs had what are now the defaults:
# init he, no padding) and newer ones; metrics.csv columns are found by name.
#
# usage: scripts/report.sh [--out REPORT_DIR] DIR [DIR...]
#          REPORT_DIR defaults to the first DIR (e.g. results/tox171-full)
#        scripts/report.sh --flatten FILE.json
#          prints every member of a JSON document as PATH<TAB>VALUE (objects
#          as a.b, array elements as a.1, arrays of scalars joined by ",");
#          scripts/study.sh reads run.json with it
# environment: BIN (settrain binary; default ${BUILD:-build}/settrain),
#          GNUPLOT (default gnuplot; when it cannot be run the report says so
#          and is written without plots)
# exit status: 0, or 1 with one line "report: error: ..." on stderr
set -eu

me=report
die() { printf '%s: error: %s\n' "$me" "$*" >&2; exit 1; }
tab=$(printf '\t')
root=$(cd "$(dirname "$0")/.." && pwd -P)

# --- JSON -> PATH<TAB>VALUE ------------------------------------------------
# A small recursive-descent reader: enough for run.json (strings, numbers,
# true/false/null, nested objects and arrays); \uXXXX escapes become '?'.
# shellcheck disable=SC2016
FLATTEN_AWK='
function ws() { while (pos <= n && index(" \t\r\n", substr(t, pos, 1)) > 0) pos++ }
function str(   s, c, e) {
    s = ""; pos++
    while (pos <= n) {
        c = substr(t, pos, 1)
        if (c == "\\") {
            e = substr(t, pos + 1, 1)
            if (e == "u") { s = s "?"; pos += 6; continue }
            if (e == "n" || e == "t" || e == "r" || e == "b" || e == "f") s = s " "
            else s = s e
            pos += 2; continue
        }
        if (c == "\"") { pos++; return s }
        s = s c; pos++
    }
    bad = 1; return s
}
function val(path,   c, k, v, i, out, isobj, start) {
    ws(); c = substr(t, pos, 1)
    if (c == "{") {
        pos++; ws()
        if (substr(t, pos, 1) == "}") { pos++; return OBJ }
        while (pos <= n && !bad) {
            ws()
            if (substr(t, pos, 1) != "\"") { bad = 1; return OBJ }
            k = str(); ws()
            if (substr(t, pos, 1) != ":") { bad = 1; return OBJ }
            pos++
            k = (path == "" ? k : path "." k)
            v = val(k)
            if (v != OBJ) print k "\t" v
            ws(); c = substr(t, pos, 1); pos++
            if (c == "}") return OBJ
            if (c != ",") { bad = 1; return OBJ }
        }
        bad = 1; return OBJ
    }
    if (c == "[") {
        pos++; ws(); out = ""; isobj = 0
        if (substr(t, pos, 1) == "]") { pos++; return "" }
        for (i = 1; pos <= n && !bad; i++) {
            v = val(path "." i)
            if (v == OBJ) isobj = 1
            else out = (i == 1 ? v : out "," v)
            ws(); c = substr(t, pos, 1); pos++
            if (c == "]") return (isobj ? OBJ : out)
            if (c != ",") { bad = 1; return OBJ }
        }
        bad = 1; return OBJ
    }
    if (c == "\"") return str()
    start = pos
    while (pos <= n && index(",}] \t\r\n", substr(t, pos, 1)) == 0) pos++
    if (pos == start) bad = 1
    return substr(t, start, pos - start)
}
BEGIN { OBJ = "\001" }
{ t = t $0 "\n" }
END {
    n = length(t); pos = 1; bad = 0
    ws()
    if (substr(t, pos, 1) != "{") bad = 1
    else val("")
    ws()
    if (bad || pos <= n) { print FILENAME ": not a JSON object this reader understands" > "/dev/stderr"; exit 1 }
}'

flatten() { awk "$FLATTEN_AWK" "$1"; }

if [ "${1:-}" = "--flatten" ]; then
    [ $# -eq 2 ] || die "usage: scripts/report.sh --flatten FILE.json"
    [ -r "$2" ] || die "$2: cannot read"
    flatten "$2"
    exit
fi

usage() {
    sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/report.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP PIPE

out=""
: >"$tmp/dirs"
while [ $# -gt 0 ]; do
    case $1 in
    --help|-h) usage; exit 0 ;;
    --out) [ $# -ge 2 ] || die "--out needs a folder"; out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    -*) die "unknown option '$1' (see scripts/report.sh --help)" ;;
    *)
        [ -d "$1" ] || die "$1: not a folder"
        case $1 in *"$tab"*|*'
'*) die "$1: a folder name with a tab or newline is not supported" ;; esac
        printf '%s\n' "$1" >>"$tmp/dirs"
        shift ;;
    esac
done
[ -s "$tmp/dirs" ] || die "no study folder given (usage: scripts/report.sh [--out REPORT_DIR] DIR [DIR...])"
dir1=$(head -n 1 "$tmp/dirs")
[ -n "$out" ] || out=$dir1
mkdir -p "$out/plots"
outabs=$(cd "$out" && pwd -P)

BIN=${BIN:-${BUILD:-build}/settrain}
if [ ! -x "$BIN" ] && [ -x "$root/$BIN" ]; then BIN=$root/$BIN; fi
[ -x "$BIN" ] || die "$BIN: settrain is not built (run make NVCC= or make)"
case $BIN in /*) ;; *) BIN=$(pwd -P)/$BIN ;; esac
GNUPLOT=${GNUPLOT:-gnuplot}

# --- 1. find the run folders and read each into one TSV record ----------------
while IFS= read -r d; do
    find "$d" -type f -name run.json
done <"$tmp/dirs" | LC_ALL=C sort -u >"$tmp/found"

: >"$tmp/runs.tsv"
: >"$tmp/errors.tsv"
nrun=0
while IFS= read -r js; do
    rd=$(dirname "$js")
    [ -f "$rd/metrics.csv" ] || continue
    abs=$(cd "$rd" && pwd -P)
    case $abs in *"$tab"*) die "$abs: a folder name with a tab is not supported" ;; esac
    nrun=$((nrun + 1))
    f=$tmp/run$nrun.tsv
    flatten "$js" >"$f" || die "$js: cannot be read as JSON"
    case $abs in
    "$outabs"/*) rel=${abs#"$outabs"/} ;;
    *) rel=$abs ;;
    esac
    # one record from run.json's members and metrics.csv (see the field list below)
    awk -F "$tab" -v OFS="$tab" -v rel="$rel" -v abs="$abs" -v mcsv="$rd/metrics.csv" '
        function g(k) { return (k in v && v[k] != "" && v[k] != "null") ? v[k] : "-" }
        function num(x) { return (x ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/) ? sprintf("%.10g", x + 0) : x }
        { v[$1] = $2 }
        END {
            nf = g("data.n_features"); nc = g("data.n_classes")
            ni = g("data.n_inputs"); if (ni == "-") ni = nf   # the input layer (padded or not)
            net = ni "-" g("config.hidden") "-" nc; gsub(/,/, "-", net)
            if (g("device.gpu_name") != "-")
                dev = g("device.gpu_name") ", driver " g("device.driver_version") ", CUDA " g("device.cuda_runtime_version") ", cuSPARSE " g("device.cusparse_version")
            else {
                t = g("device.threads")
                dev = g("device.cpu_model") ", " t (t == 1 ? " thread" : " threads")
                if (g("device.cores_online") != "-") dev = dev " of " g("device.cores_online") " cores"
            }
            gsub(/[\t|]/, " ", dev)
            # the settings that make runs comparable (not motif, seed, threads, data path)
            # (init and pad_input: absent from run.json files older than the options,
            # whose runs had what are now the defaults)
            n = split("epsilon zeta epochs batch lr momentum weight_decay dropout activation init pad_input train_limit standardize", k, " ")
            if (g("config.init") == "-") v["config.init"] = "he"
            if (g("config.pad_input") == "-") v["config.pad_input"] = "false"
            sig = ""
            for (i = 1; i <= n; i++) sig = sig (i > 1 ? " " : "") k[i] "=" num(g("config." k[i]))
            # mean of t_epoch_s over epochs 2..N (epoch 1 when N = 1)
            FS = ","; ce = ct = 0; s = 0; c = 0; h = 0
            if ((getline line < mcsv) > 0) {
                m = split(line, hd, ",")
                for (i = 1; i <= m; i++) { if (hd[i] == "epoch") ce = i; if (hd[i] == "t_epoch_s") ct = i }
                while ((getline line < mcsv) > 0) {
                    split(line, f, ",")
                    if (!ce || !ct || f[ce] == "") continue
                    if (f[ce] + 0 >= 2) { s += f[ct]; c++ } else { first = f[ct]; h = 1 }
                }
            }
            mean = c ? sprintf("%.6f", s / c) : h ? sprintf("%.6f", first) : "-"
            print g("status"), g("config.dataset_name"), net, sig, g("backend"), g("config.motif"), g("config.seed"), \
                g("total_wall_s"), g("final_test_acc"), g("best_test_acc"), g("best_epoch"), mean, g("epochs_done"), \
                g("config.epochs"), dev, g("git_commit"), g("connections"), rel, abs, \
                g("data.n_train") " " g("data.n_test") " " nf " " nc " " g("config.batch") " " g("config.train_limit")
        }' "$f" >>"$tmp/runs.tsv"
    # the message of a run that diverged or failed
    awk -F "$tab" -v OFS="$tab" -v abs="$abs" '$1 == "error" && $2 != "" { print abs, $2; exit }' "$f" >>"$tmp/errors.tsv"
done <"$tmp/found"

[ "$nrun" -gt 0 ] || die "no run folders (run.json and metrics.csv) under the given folders"

# fields: 1 status 2 dataset 3 network 4 sig 5 backend 6 motif 7 seed 8 time
# 9 acc 10 best 11 best_epoch 12 mean_epoch 13 epochs_done 14 epochs 15 device
# 16 commit 17 connections 18 rel 19 abs 20 datainfo ("n_train n_test
# n_features n_classes batch train_limit")
LC_ALL=C sort -t "$tab" -k2,2 -k3,3 -k4,4 -k5,5 -k6,6n -k7,7n -k18,18 "$tmp/runs.tsv" >"$tmp/sorted.tsv"

# --- 2. groups: data set, network, settings, backend -----------------------------
awk -F "$tab" -v OFS="$tab" '
    $1 == "finished" && !(($2 FS $3 FS $4 FS $5) in seen) {
        seen[$2 FS $3 FS $4 FS $5] = 1
        g++
        slug = tolower($2 "-" $3 "-" $5)
        gsub(/[^a-z0-9.]+/, "-", slug)
        if (slug in used) slug = slug "-" (++used[slug] + 0)
        used[slug] = 1
        print "g" g, $2, $3, $4, $5, slug
    }' "$tmp/sorted.tsv" >"$tmp/groups.tsv.1"
# field 7: where groups share data set, network and backend, the settings that
# tell them apart ("init he-sparse"), for their headings
awk -F "$tab" -v OFS="$tab" '
    { line[NR] = $0; g[NR] = $2 FS $3 FS $5; sig[NR] = $4; cnt[g[NR]]++ }
    END {
        for (i = 1; i <= NR; i++) {
            lab = ""
            if (cnt[g[i]] > 1) {
                n = split(sig[i], a, " ")
                for (q = 1; q <= n; q++) d[q] = 0
                for (j = 1; j <= NR; j++) if (j != i && g[j] == g[i]) {
                    split(sig[j], b, " ")
                    for (q = 1; q <= n; q++) if (a[q] != b[q]) d[q] = 1
                }
                for (q = 1; q <= n; q++) if (d[q]) { kv = a[q]; sub(/=/, " ", kv); lab = lab (lab != "" ? ", " : "") kv }
            }
            print line[i], lab
        }
    }' "$tmp/groups.tsv.1" >"$tmp/groups.tsv"

# --- 3. R_r, A_r, S from settrain score, per group and seed ----------------------
# scores.tsv: abs R_r A_r S
: >"$tmp/scores.tsv"
: >"$tmp/notes"
# finished runs of group G: "motif seed abs"
group_runs() {
    awk -F "$tab" -v OFS="$tab" -v d="$2" -v n="$3" -v s="$4" -v b="$5" \
        '$1 == "finished" && $2 == d && $3 == n && $4 == s && $5 == b { print $6, $7, $19, $8, $9 }' "$tmp/sorted.tsv" >"$1"
}
# score_rows OUT BASE RUN... : the CSV rows of settrain score (baseline first)
# (fails, with settrain's message in $tmp/score.err, when a run cannot be scored,
# e.g. a baseline accuracy of 0)
score_rows() {
    o=$1; shift
    "$BIN" score --csv "$@" >"$o" 2>"$tmp/score.err"
}
while IFS="$tab" read -r gid gd gn gs gb slug glab; do
    group_runs "$tmp/$gid.runs" "$gd" "$gn" "$gs" "$gb"
    cut -f2 "$tmp/$gid.runs" | LC_ALL=C sort -un >"$tmp/$gid.seeds"
    while IFS= read -r seed; do
        base=$(awk -F "$tab" -v s="$seed" '$1 == 1 && $2 == s { print $3; exit }' "$tmp/$gid.runs")
        if [ -z "$base" ]; then
            echo "$gid: no m = 1 run for seed $seed, so no R_r, A_r or S for its runs" >>"$tmp/notes"
            continue
        fi
        # the runs to score, baseline first: kept for the S-against-w_R data too
        { echo "$base"; awk -F "$tab" -v s="$seed" -v b="$base" '$2 == s && $3 != b { print $3 }' "$tmp/$gid.runs"; } >"$tmp/$gid.s$seed.args"
        set -- --base
        while IFS= read -r r; do set -- "$@" "$r"; done <"$tmp/$gid.s$seed.args"
        if score_rows "$tmp/score.csv" "$@"; then
            # row k of the CSV (after its header) is line k of the argument list
            awk -F, -v OFS="$tab" 'NR == FNR { a[FNR] = $0; next } FNR > 1 { print a[FNR - 1], $(NF-2), $(NF-1), $NF }' \
                "$tmp/$gid.s$seed.args" "$tmp/score.csv" >>"$tmp/scores.tsv"
        else
            echo "$gid: seed $seed: no R_r, A_r or S: settrain score says: $(cat "$tmp/score.err")" >>"$tmp/notes"
            rm -f "$tmp/$gid.s$seed.args"
        fi
    done <"$tmp/$gid.seeds"
done <"$tmp/groups.tsv"

# join: fields 21 R_r 22 A_r 23 S ("-" when there is no baseline)
awk -F "$tab" -v OFS="$tab" 'FILENAME == ARGV[1] { s[$1] = $2 OFS $3 OFS $4; next }
    { print $0, (($19 in s) ? s[$19] : "-" OFS "-" OFS "-") }' "$tmp/scores.tsv" "$tmp/sorted.tsv" >"$tmp/all.tsv"

# --- 3b. mean and standard deviation over seeds, per group and motif --------------
# stats.tsv: 1 gid 2 motif 3 runs 4 seeds ("1 2 3"), then per quantity its mean,
# sample standard deviation (n - 1; "-" for one value) and count: final accuracy
# 5-7, time 8-10, average time per epoch 11-13, R_r 14-16, A_r 17-19, S 20-22,
# best accuracy over epochs 23-25 (the runs without a baseline have no R_r, A_r, S)
awk -F "$tab" -v OFS="$tab" '
    BEGIN { nq = split("9 8 12 21 22 23 10", col, " ") }
    FILENAME == ARGV[1] { gk[$2 FS $3 FS $4 FS $5] = $1; next }
    $1 == "finished" && (($2 FS $3 FS $4 FS $5) in gk) {
        key = gk[$2 FS $3 FS $4 FS $5] OFS $6
        if (!(key in n)) ord[++no] = key
        n[key]++; sd[key] = sd[key] (n[key] > 1 ? " " : "") $7
        for (j = 1; j <= nq; j++) {
            x = $(col[j]); if (x == "-" || x == "") continue
            c[key, j]++; val[key, j, c[key, j]] = x + 0
        }
    }
    END {
        for (i = 1; i <= no; i++) {
            key = ord[i]; line = key OFS n[key] OFS sd[key]
            for (j = 1; j <= nq; j++) {
                k = c[key, j] + 0
                if (!k) { line = line OFS "-" OFS "-" OFS 0; continue }
                t = 0; for (r = 1; r <= k; r++) t += val[key, j, r]
                mu = t / k; q = 0
                for (r = 1; r <= k; r++) q += (val[key, j, r] - mu) ^ 2
                line = line OFS sprintf("%.10g", mu) OFS (k > 1 ? sprintf("%.10g", sqrt(q / (k - 1))) : "-") OFS k
            }
            print line
        }
    }' "$tmp/groups.tsv" "$tmp/all.tsv" >"$tmp/stats.tsv"

# --- 4. the study preset: paper numbers ----------------------------------------
preset=""
for p in "$out/study.preset" "$dir1/study.preset"; do
    if [ -f "$p" ]; then preset=$p; break; fi
done
pget() {
    [ -n "$preset" ] || return 0
    awk -v k="$1" '
        { sub(/\r$/, "") }
        /^[ \t]*(#|$)/ { next }
        { line = $0; sub(/[ \t]+#.*$/, "", line)
          e = index(line, "="); if (!e) next
          key = substr(line, 1, e - 1); v = substr(line, e + 1)
          gsub(/^[ \t]+|[ \t]+$/, "", key); gsub(/^[ \t]+|[ \t]+$/, "", v)
          if (key == k) r = v }
        END { print r }' "$preset"
}
study_name=$(pget name)
[ -n "$study_name" ] || study_name=$(basename "$outabs")
description=$(pget description)
paper=$(pget paper)
paper_s=$(pget paper_s)
paper_source=$(pget paper_source)
paper_epochs=$(pget paper_epochs)
paper_note=$(pget paper_note)
psrc=$paper_source
[ -n "$psrc" ] || psrc="The study preset's paper numbers"

# paper.tsv: motif time acc R_r A_r S_computed S_printed; paper.ord: motif time acc,
# the m = 1 row first (the order of the score arguments)
: >"$tmp/paper.tsv"
: >"$tmp/paper.ord"
pbase=""
if [ -n "$paper" ]; then
    printf '%s\n' "$paper" | tr ' ' '\n' | awk -F: -v OFS="$tab" 'NF == 3 { print $1, $2, $3 }' |
        LC_ALL=C sort -n >"$tmp/paper.raw"
    pbase=$(awk -F "$tab" '$1 == 1 { print $2 ":" $3; exit }' "$tmp/paper.raw")
    if [ -n "$pbase" ]; then
        set -- --base "$pbase"
        while IFS="$tab" read -r m t a; do
            [ "$m" = 1 ] || set -- "$@" "$t:$a"
        done <"$tmp/paper.raw"
        score_rows "$tmp/pscore.csv" "$@" || die "the paper's numbers in $preset: settrain score says: $(cat "$tmp/score.err")"
        # the score rows come in the order given: the m = 1 pair, then the others
        awk -F "$tab" '$1 == 1' "$tmp/paper.raw" >"$tmp/paper.ord"
        awk -F "$tab" '$1 != 1' "$tmp/paper.raw" >>"$tmp/paper.ord"
        awk -F, -v OFS="$tab" -v ps="$paper_s" '
            BEGIN { n = split(ps, a, " "); for (i = 1; i <= n; i++) { split(a[i], q, ":"); pr[q[1]] = q[2] } }
            NR == FNR { r[FNR] = $(NF-2) OFS $(NF-1) OFS $NF; next }
            { split($0, f, "\t"); k++; sp = ((f[1] in pr) ? pr[f[1]] : "-")
              print f[1], f[2], f[3], r[k + 1], sp }' "$tmp/pscore.csv" "$tmp/paper.ord" >"$tmp/paper.tsv"
    else
        awk -F "$tab" -v OFS="$tab" '{ print $1, $2, $3, "-", "-", "-", "-" }' "$tmp/paper.raw" >"$tmp/paper.tsv"
        echo "paper: no m = 1 numbers, so no R_r, A_r or S for the paper" >>"$tmp/notes"
    fi
fi

# --- 5. plots ---------------------------------------------------------------------
have_gnuplot=0
term=""
if command -v "$GNUPLOT" >/dev/null 2>&1; then
    if echo 'set terminal pngcairo' | "$GNUPLOT" >/dev/null 2>&1; then
        term="pngcairo size 900,560 font 'sans,10'"; have_gnuplot=1
    elif echo 'set terminal png' | "$GNUPLOT" >/dev/null 2>&1; then
        term="png size 900,560"; have_gnuplot=1
    fi
fi
# gnuplot single-quoted string
gq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
# weights (w_R, w_A = 1 - w_R) for the S-against-w_R data. S is linear in w_R, so
# settrain score's S at w_R = 0 (S = 1 - A_r), 0.1 (the paper's weights) and 1
# (S = R_r) give the whole line; the plot draws the straight lines through them.
printf '0.0 1.0\n0.1 0.9\n1.0 0.0\n' >"$tmp/weights"

plot_failed=""
while IFS="$tab" read -r gid gd gn gs gb slug glab; do
    pre="plots/$slug"
    nseed=$(cut -f2 "$tmp/$gid.runs" | LC_ALL=C sort -u | wc -l)
    # titles per run: "m = 2" (or "m = 2 (seed 3)" when there are several seeds),
    # then the line colour (one per motif size) and dash type (one per seed)
    awk -F "$tab" -v OFS="$tab" -v ns="$nseed" '
        !($1 in lc) { lc[$1] = ++nl }
        !($2 in dt) { dt[$2] = ++nd }
        { print $3, (ns > 1 ? "m = " $1 " (seed " $2 ")" : "m = " $1), $1, $2, lc[$1], dt[$2] }' \
        "$tmp/$gid.runs" >"$tmp/$gid.titles"
    # S against w_R: plots/<slug>-score-vs-weight.csv, a column per run with a
    # baseline (and per paper motif), from settrain score --weights W_R,W_A
    : >"$tmp/w.map"
    while read -r w wa; do
        for args in "$tmp/$gid".s*.args; do
            [ -f "$args" ] || continue
            set -- --weights "$w,$wa" --base
            while IFS= read -r r; do set -- "$@" "$r"; done <"$args"
            score_rows "$tmp/w.csv" "$@" || die "settrain score $*: $(cat "$tmp/score.err")"
            # row k of the CSV (after its header) is line k of the argument list
            awk -F, -v OFS="$tab" -v w="$w" 'NR == FNR { a[FNR] = $0; next } FNR > 1 { print w, a[FNR - 1], $NF }' \
                "$args" "$tmp/w.csv" >>"$tmp/w.map"
        done
        if [ -n "${pbase:-}" ]; then
            set -- --weights "$w,$wa" --base
            while IFS="$tab" read -r m t a; do set -- "$@" "$t:$a"; done <"$tmp/paper.ord"
            score_rows "$tmp/w.csv" "$@" || die "settrain score $*: $(cat "$tmp/score.err")"
            awk -F, -v OFS="$tab" -v w="$w" 'NR == FNR { split($0, f, "\t"); a[FNR] = "paper m = " f[1]; next } FNR > 1 { print w, a[FNR - 1], $NF }' \
                "$tmp/paper.ord" "$tmp/w.csv" >>"$tmp/w.map"
        fi
    done <"$tmp/weights"
    if [ -s "$tmp/w.map" ]; then
        # pivot: one row per w_R, the columns in the order of the runs, then the paper
        awk -F "$tab" '
            FILENAME == ARGV[1] { s[$1, $2] = $3; if (!($1 in wseen)) { wseen[$1] = 1; ws[++nw] = $1 }; has[$2] = 1; next }
            FILENAME == ARGV[2] { if ($1 in has) { col[++nc] = $1; title[nc] = $2 }; next }
            { p = "paper m = " $1; if (p in has) { col[++nc] = p; title[nc] = p } }
            END {
                printf "w_R"; for (j = 1; j <= nc; j++) printf ",%s", title[j]; print ""
                for (i = 1; i <= nw; i++) { printf "%s", ws[i]; for (j = 1; j <= nc; j++) printf ",%s", s[ws[i], col[j]]; print "" }
            }' "$tmp/w.map" "$tmp/$gid.titles" "$tmp/paper.ord" >"$out/$pre-score-vs-weight.csv"
    else
        rm -f "$out/$pre-score-vs-weight.csv"
    fi

    # mean test accuracy over the seeds against epoch, with a band of one standard
    # deviation, per motif size (several seeds only): plots/<slug>-accuracy-mean.csv
    rm -f "$out/$pre-accuracy-mean.csv" "$out/$pre-accuracy-mean.gp" "$out/$pre-accuracy-mean.png"
    if [ "$nseed" -gt 1 ]; then
        awk -F "$tab" '{ print $3 "\t" $1 "/metrics.csv" }' "$tmp/$gid.titles" >"$tmp/$gid.mlist"
        awk -F "$tab" '
            { m = $1; f = $2; if (!(m in seen)) { mo[++nm] = m; seen[m] = 1 }
              ce = ca = 0
              if ((getline line < f) > 0) {
                  k = split(line, h, ",")
                  for (i = 1; i <= k; i++) { if (h[i] == "epoch") ce = i; if (h[i] == "test_acc") ca = i }
              }
              while ((getline line < f) > 0) {
                  split(line, x, ",")
                  if (!ce || !ca || x[ce] == "" || x[ca] == "") continue
                  e = x[ce] + 0; if (e > maxe) maxe = e
                  c[m, e]++; v[m, e, c[m, e]] = x[ca] + 0
              }
              close(f) }
            END {
                printf "epoch"
                for (j = 1; j <= nm; j++) printf ",m = %s mean,m = %s std,m = %s runs", mo[j], mo[j], mo[j]
                print ""
                for (e = 1; e <= maxe; e++) {
                    printf "%d", e
                    for (j = 1; j <= nm; j++) {
                        m = mo[j]; k = c[m, e] + 0
                        if (!k) { printf ",NaN,NaN,0"; continue }
                        t = 0; for (r = 1; r <= k; r++) t += v[m, e, r]
                        mu = t / k; q = 0
                        for (r = 1; r <= k; r++) q += (v[m, e, r] - mu) ^ 2
                        printf ",%.6f,%s,%d", mu, (k > 1 ? sprintf("%.6f", sqrt(q / (k - 1))) : "NaN"), k
                    }
                    print ""
                }
            }' "$tmp/$gid.mlist" >"$out/$pre-accuracy-mean.csv"
    fi

    [ "$have_gnuplot" -eq 1 ] || continue
    title="$gd $gn, $gb${glab:+ ($glab)}"
    # whole-epoch tics on short runs
    maxep=$(awk -F "$tab" -v d="$gd" -v n="$gn" -v s="$gs" -v b="$gb" \
        '$1 == "finished" && $2 == d && $3 == n && $4 == s && $5 == b && $13 + 0 > m { m = $13 + 0 } END { print m + 0 }' "$tmp/all.tsv")
    xt_acc="set xtics"
    [ "$maxep" -gt 10 ] || xt_acc="set xtics 1"
    if [ "$maxep" -le 10 ]; then xt_time="set xtics 1"; else xt_time="set xtics 5"; fi
    # accuracy against epoch
    {
        echo "# made by scripts/report.sh: test accuracy against epoch per motif size."
        echo "# Run from the report folder: gnuplot $pre-accuracy.gp"
        echo "set terminal $term"
        echo "set output $(gq "$pre-accuracy.png")"
        echo "set datafile separator comma"
        echo "set datafile columnheaders"
        echo "set title $(gq "Test accuracy, $title") noenhanced"
        echo "set xlabel 'epoch'"
        echo "set ylabel 'test accuracy'"
        echo "$xt_acc"
        echo "set key outside right top"
        echo "set grid"
        printf 'plot '
        sep=""
        while IFS="$tab" read -r a t _ _ lc dt; do
            r=$(awk -F "$tab" -v a="$a" '$19 == a { print $18; exit }' "$tmp/all.tsv")
            printf '%s%s using "epoch":"test_acc" with linespoints pointsize 0.5 linecolor %s dashtype %s title %s noenhanced' \
                "$sep" "$(gq "$r/metrics.csv")" "$lc" "$dt" "$(gq "$t")"
            sep=", \\
     "
        done <"$tmp/$gid.titles"
        echo
    } >"$out/$pre-accuracy.gp"
    # time per epoch over the first 30 epochs
    {
        echo "# made by scripts/report.sh: seconds per epoch (t_epoch_s) over the first 30 epochs per motif size."
        echo "# Run from the report folder: gnuplot $pre-epoch-time.gp"
        echo "set terminal $term"
        echo "set output $(gq "$pre-epoch-time.png")"
        echo "set datafile separator comma"
        echo "set datafile columnheaders"
        echo "set title $(gq "Time per epoch, first 30 epochs, $title") noenhanced"
        echo "set xlabel 'epoch'"
        echo "set ylabel 'seconds per epoch'"
        echo "$xt_time"
        echo "set yrange [0:*]"
        echo "set key outside right top"
        echo "set grid"
        printf 'plot '
        sep=""
        while IFS="$tab" read -r a t _ _ lc dt; do
            r=$(awk -F "$tab" -v a="$a" '$19 == a { print $18; exit }' "$tmp/all.tsv")
            printf '%s%s using "epoch":(column("epoch") <= 30 ? column("t_epoch_s") : NaN) with linespoints pointsize 0.5 linecolor %s dashtype %s title %s noenhanced' \
                "$sep" "$(gq "$r/metrics.csv")" "$lc" "$dt" "$(gq "$t")"
            sep=", \\
     "
        done <"$tmp/$gid.titles"
        echo
    } >"$out/$pre-epoch-time.gp"
    plots="accuracy epoch-time"
    if [ "$nseed" -gt 1 ]; then
        {
            echo "# made by scripts/report.sh: mean test accuracy over the seeds against epoch per motif size,"
            echo "# the band one sample standard deviation either side. Run from the report folder: gnuplot $pre-accuracy-mean.gp"
            echo "set terminal $term"
            echo "set output $(gq "$pre-accuracy-mean.png")"
            echo "set datafile separator comma"
            echo "set datafile columnheaders"
            echo "set title $(gq "Test accuracy, mean over $nseed seeds (band: 1 std), $title") noenhanced"
            echo "set xlabel 'epoch'"
            echo "set ylabel 'test accuracy'"
            echo "$xt_acc"
            echo "set key outside right top"
            echo "set grid"
            awk -F, -v f="$pre-accuracy-mean.csv" '
                NR == 1 { printf "plot "
                    for (j = 1; 3 * j - 1 <= NF; j++) {
                        t = $(3 * j - 1); sub(/ mean$/, "", t)
                        printf "%s\047%s\047 using 1:($%d - $%d):($%d + $%d) with filledcurves fillstyle transparent solid 0.2 noborder linecolor %d notitle, \\\n     ", (j > 1 ? ", \\\n     " : ""), f, 3 * j - 1, 3 * j, 3 * j - 1, 3 * j, j
                        printf "\047%s\047 using 1:%d with lines linewidth 2 linecolor %d title \047%s: mean\047 noenhanced", f, 3 * j - 1, j, t
                    }
                    print ""; exit }' "$out/$pre-accuracy-mean.csv"
        } >"$out/$pre-accuracy-mean.gp"
        plots="$plots accuracy-mean"
    fi
    # S against w_R
    if [ -f "$out/$pre-score-vs-weight.csv" ]; then
        {
            echo "# made by scripts/report.sh: S = w_R R_r + (1 - w_R)(1 - A_r) against w_R, from settrain score."
            echo "# Run from the report folder: gnuplot $pre-score-vs-weight.gp"
            echo "set terminal $term"
            echo "set output $(gq "$pre-score-vs-weight.png")"
            echo "set datafile separator comma"
            echo "set datafile columnheaders"
            echo "set title $(gq "Comprehensive score S against the weight of efficiency, $title") noenhanced"
            echo "set arrow from 0.1, graph 0 to 0.1, graph 1 nohead dashtype 3"
            echo "set label 'the paper: w_R = 0.1' at 0.11, graph 0.04"
            echo "set xlabel 'w_R (weight of the time reduction rate; w_A = 1 - w_R)'"
            echo "set ylabel 'S'"
            echo "set xrange [0:1]"
            echo "set key outside right"
            echo "set grid"
            awk -F, -v f="$pre-score-vs-weight.csv" '
                NR == 1 { printf "plot "
                    for (i = 2; i <= NF; i++) {
                        # one colour per motif size, the paper dashed in the same colour
                        m = $i; sub(/^(paper )?m = /, "", m); sub(/ .*/, "", m)
                        if (!(m in lc)) lc[m] = ++nlc
                        dt = ($i ~ /^paper/) ? " dashtype 2" : ""
                        t = $i; gsub(/\047/, "\047\047", t)
                        printf "%s\047%s\047 using 1:%d with lines linewidth 2 linecolor %d%s title \047%s\047 noenhanced", (i > 2 ? ", \\\n     " : ""), f, i, lc[m], dt, t
                    }
                    print "" }' "$out/$pre-score-vs-weight.csv"
        } >"$out/$pre-score-vs-weight.gp"
        plots="$plots score-vs-weight"
    fi
    for p in $plots; do
        rm -f "$out/$pre-$p.png"
        if ! (cd "$out" && "$GNUPLOT" "$pre-$p.gp") >"$tmp/gp.err" 2>&1 || [ ! -s "$out/$pre-$p.png" ]; then
            plot_failed="$plot_failed $pre-$p.png"
            sed 's/^/    /' "$tmp/gp.err" >&2
        fi
    done
done <"$tmp/groups.tsv"
[ -z "$plot_failed" ] || die "gnuplot failed to draw:$plot_failed"

# --- 6. summary.csv -------------------------------------------------------------
awk -F "$tab" -v st="$study_name" '
    function q(s) { if (s ~ /[",\n]/) { gsub(/"/, "\"\"", s); return "\"" s "\"" } return s }
    BEGIN { print "study,dataset,network,backend,device,motif,seed,status,epochs,epochs_done,time_s,final_test_acc,best_test_acc,best_epoch,mean_epoch_s,R_r,A_r,S,connections,commit,settings,run_dir,metrics_csv" }
    { print q(st) "," q($2) "," q($3) "," q($5) "," q($15) "," $6 "," $7 "," q($1) "," $14 "," $13 "," $8 "," $9 "," $10 "," $11 "," $12 "," $21 "," $22 "," $23 "," $17 "," q($16) "," q($4) "," q($18) "," q($18 "/metrics.csv") }' \
    "$tmp/all.tsv" >"$out/summary.csv"
# summary-by-motif.csv: one row per group and motif size, mean and sample standard
# deviation (n - 1; empty for one seed) over the seeds; final accuracy only
awk -F "$tab" -v st="$study_name" '
    function q(s) { if (s ~ /[",\n]/) { gsub(/"/, "\"\"", s); return "\"" s "\"" } return s }
    function e(v) { return (v == "-") ? "" : v }
    BEGIN { print "study,dataset,network,backend,settings,motif,n_seeds,seeds,final_test_acc_mean,final_test_acc_std,time_s_mean,time_s_std,mean_epoch_s_mean,mean_epoch_s_std,R_r_mean,R_r_std,A_r_mean,A_r_std,S_mean,S_std,n_scored" }
    FILENAME == ARGV[1] { gd[$1] = q($2) "," q($3) "," q($5) "," q($4); next }
    { print q(st) "," gd[$1] "," $2 "," $3 "," $4 "," e($5) "," e($6) "," e($8) "," e($9) "," e($11) "," e($12) "," e($14) "," e($15) "," e($17) "," e($18) "," e($20) "," e($21) "," $16 }' \
    "$tmp/groups.tsv" "$tmp/stats.tsv" >"$out/summary-by-motif.csv"

# --- 7. report.md -----------------------------------------------------------------
FMT_AWK='
function ft(v) { if (v == "-" || v == "") return "–"; v += 0; return (v >= 100) ? sprintf("%.1f", v) : (v >= 1) ? sprintf("%.3f", v) : sprintf("%.4f", v) }
function fa(v) { if (v == "-" || v == "") return "–"; return sprintf("%.4f", v) }
function fs(v) { return (v == "-" || v == "") ? "–" : v }
'
md=$tmp/report.md
nfin=$(awk -F "$tab" '$1 == "finished"' "$tmp/all.tsv" | wc -l)
{
    echo "# Study report: $study_name"
    echo
    [ -z "$description" ] || { echo "$description"; echo; }
    echo "Written by \`scripts/report.sh\` on $(date -u +%Y-%m-%dT%H:%MZ) with $("$BIN" --version | head -n 1)."
    echo "It reads $nrun run folders ($nfin finished), listed with their metrics.csv under \"Runs\":"
    echo "every number below comes from those files. \`summary.csv\` holds one row per run (its"
    echo "best_test_acc is the best over epochs, selected on the test set: optimistic);"
    echo "\`summary-by-motif.csv\` one row per motif size with the mean and standard deviation over the"
    echo "seeds; \`plots/\` the plots, their data and the gnuplot scripts that drew them (run from"
    echo "this folder)."
    echo
    # how the runs were made
    find "$out" -name study.env -type f 2>/dev/null | LC_ALL=C sort >"$tmp/envs"
    if [ -n "$preset" ] || [ -s "$tmp/envs" ]; then
        echo "## How the runs were made"
        echo
        [ -z "$preset" ] || echo "- Preset: \`$(basename "$preset")\` in this folder (a copy of the preset the study ran)."
        while IFS= read -r e; do
            c=$(awk '/^command=/ { sub(/^command=/, ""); print; exit }' "$e")
            w=$(awk '/^date=/ { sub(/^date=/, ""); print; exit }' "$e")
            [ -z "$c" ] || echo "- \`$c\`${w:+ ($w)}"
        done <"$tmp/envs"
        echo
    fi

    echo "## Machines and commits"
    echo
    echo "| backend | device | settrain commit | runs |"
    echo "|---|---|---|---:|"
    awk -F "$tab" -v OFS="$tab" '{ k = $5 OFS $15 OFS $16; n[k]++; if (!(k in o)) { o[k] = ++m; key[m] = k } }
        END { for (i = 1; i <= m; i++) { split(key[i], a, OFS); print "| " a[1] " | " a[2] " | " a[3] " | " n[key[i]] " |" } }' "$tmp/all.tsv"
    echo

    echo "## Results"
    echo
    echo "The result is the **final test accuracy** (after the last epoch, as the paper's). The best"
    echo "test accuracy over the epochs is picked on the test set itself, so it is optimistic (on the"
    echo "microarray sets it runs 2-8 points above the final one): it appears only in the per-seed"
    echo "table, labelled, and no mean, R_r, A_r or S uses it. Time is run.json's total_wall_s (the"
    echo "whole run, evaluation included); the average time per epoch is the mean of metrics.csv's"
    echo "t_epoch_s over epochs 2..N. R_r, A_r and S (S = 0.1 R_r + 0.9 (1 - A_r), the paper's"
    echo "equation 1) are computed by \`settrain score\` for each seed against the m = 1 run of the"
    echo "same group and seed, so S = 0.9000 for m = 1; their means are over the seeds."
    echo
    echo "Per motif size the first table gives mean ± standard deviation over the seeds (the sample"
    echo "standard deviation, n - 1 in the denominator). **Seed noise rule:** a difference between two"
    echo "motif sizes is called *within seed noise* when |difference of their means| < the larger of"
    echo "their two standard deviations, and *beyond seed noise* otherwise. With a few seeds this is a"
    echo "rough screen, not a significance test; with one seed there is no standard deviation and"
    echo "the report says that it cannot tell."
    echo
    if [ ! -s "$tmp/groups.tsv" ]; then
        echo "No finished runs yet."
        echo
    fi
    while IFS="$tab" read -r gid gd gn gs gb slug glab; do
        nseed=$(cut -f2 "$tmp/$gid.runs" | LC_ALL=C sort -u | wc -l)
        echo "### $gd, $gn, $gb${glab:+ ($glab)}"
        echo
        awk -F "$tab" -v d="$gd" -v n="$gn" -v s="$gs" -v b="$gb" '
            $1 == "finished" && $2 == d && $3 == n && $4 == s && $5 == b && !($15 in seen) { seen[$15] = 1; dev = dev (dev ? "; " : "") $15 ; di = $20 }
            END { split(di, x, " ")
                  print "Device: " dev ". Data: " x[1] " training and " x[2] " test samples, " x[3] " features, " x[4] " classes."
                  if (index(dev, ";")) print "**The runs of this group ran on different devices: their times do not compare.**" }' "$tmp/all.tsv"
        echo "Settings: $(echo "$gs" | awk '{ for (i = 1; i <= NF; i++) { sub(/=/, " ", $i); printf "%s%s", (i > 1 ? ", " : ""), $i } }')."
        # SGD steps per epoch: the last batch of an epoch holds the remainder
        awk -F "$tab" -v d="$gd" -v n="$gn" -v s="$gs" -v b="$gb" -v ep="$(printf '%s\n' "$gs" | tr ' ' '\n' | sed -n 's/^epochs=//p')" '
            $1 == "finished" && $2 == d && $3 == n && $4 == s && $5 == b { split($20, x, " "); exit }
            END {
                nt = x[1] + 0; bs = x[5] + 0; tl = x[6] + 0
                if (tl > 0 && tl < nt) nt = tl
                if (nt <= 0 || bs <= 0) exit
                st = int((nt + bs - 1) / bs); r = nt - (st - 1) * bs
                if (st == 1)
                    print "**SGD steps per epoch: 1** (" nt " training samples, batch " bs ": the whole training set is one batch), so " ep " epochs are " ep " SGD steps."
                else
                    print "SGD steps per epoch: " st " (" nt " training samples in batches of " bs (r < bs ? ", the last of " r : "") ")" (ep != "" ? ", " st * ep " in " ep " epochs" : "") "."
            }' "$tmp/all.tsv"
        echo
        # mean ± std over the seeds, and the seed-noise sentences
        awk -F "$tab" -v gid="$gid" "$FMT_AWK"'
            function dec(mu) { mu += 0; if (mu < 0) mu = -mu; return (mu >= 100) ? 1 : (mu >= 1) ? 3 : 4 }
            function pm(mu, sd, d,   f) { if (mu == "-") return "–"; f = "%." d "f"; return (sd == "-") ? sprintf(f, mu) : sprintf(f " ± " f, mu, sd) }
            function mx(a, b) { return (a > b) ? a : b }
            # one quantity of rows i and j: mean columns c (std c + 1)
            function noise(i, j, c, what, unit, d,   ma, mb, sa, sb, df, lg, f, o) {
                ma = R[i, c]; mb = R[j, c]; sa = R[i, c + 1]; sb = R[j, c + 1]
                if (ma == "-" || mb == "-") return what ": –"
                f = "%." d "f"
                df = mb - ma
                o = what " " sprintf(f, mb) unit " against " sprintf(f, ma) unit ", difference " sprintf("%+." d "f", df) unit
                if (sa == "-" || sb == "-") return o ", one seed: no standard deviation, cannot tell from seed noise"
                lg = mx(sa + 0, sb + 0)
                if (df == 0) return o ": no difference"
                return o ", " ((df < 0 ? -df : df) < lg ? "within" : "beyond") " seed noise (larger std " sprintf(f, lg) unit ")"
            }
            $1 == gid { k++; for (c = 1; c <= NF; c++) R[k, c] = $c; M[k] = $2; N[k] = $3; S[k] = $4; if (S[k] != S[1]) diff = 1 }
            END {
                if (!k) exit
                if (diff) {
                    printf "Seeds differ between motif sizes:"
                    for (i = 1; i <= k; i++) { t = S[i]; gsub(/ /, ", ", t); printf "%s m = %s: %s", (i > 1 ? ";" : ""), M[i], t }
                    print "."
                } else {
                    t = S[1]; gsub(/ /, ", ", t); nn = split(S[1], q, " ")
                    if (nn == 1) print "Seed " t ": one seed, so no standard deviation; this report cannot tell a difference between motif sizes from seed noise."
                    else print "Seeds " t " (" nn " seeds)."
                }
                print ""
                print "| motif | seeds | final accuracy | time (s) | avg time per epoch (s) | R_r | A_r | S |"
                print "|---:|---:|---:|---:|---:|---:|---:|---:|"
                for (i = 1; i <= k; i++) {
                    sc = (R[i, 16] + 0 > 0 && R[i, 16] != N[i]) ? " (" R[i, 16] " seeds)" : ""
                    print "| " M[i] " | " N[i] " | " pm(R[i, 5], R[i, 6], 4) " | " pm(R[i, 8], R[i, 9], dec(R[i, 8])) " | " \
                        pm(R[i, 11], R[i, 12], dec(R[i, 11])) " | " pm(R[i, 14], R[i, 15], 4) sc " | " pm(R[i, 17], R[i, 18], 4) sc " | " pm(R[i, 20], R[i, 21], 4) sc " |"
                }
                print ""
                # one seed everywhere: the sentence above says that nothing can be told
                for (i = 1; i <= k; i++) if (N[i] > 1) several = 1
                if (k < 2 || !several) exit
                print "Seed noise (the rule above), motif size against motif size:"
                print ""
                for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) {
                    d = dec(mx(R[i, 11] + 0, R[j, 11] + 0))
                    print "- m = " M[j] " against m = " M[i] ": " noise(i, j, 5, "final accuracy", "", 4) "; " noise(i, j, 11, "time per epoch", " s", d) "."
                }
                print ""
            }' "$tmp/stats.tsv"
        echo "Per seed (the paper's Table 2 layout):"
        echo
        echo "| motif | seed | time (s) | final accuracy | avg time per epoch (s) | R_r | A_r | S | best over epochs (epoch), selected on the test set: optimistic |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        awk -F "$tab" -v d="$gd" -v n="$gn" -v s="$gs" -v b="$gb" "$FMT_AWK"'
            $1 == "finished" && $2 == d && $3 == n && $4 == s && $5 == b {
                print "| " $6 " | " $7 " | " ft($8) " | " fa($9) " | " ft($12) " | " fs($21) " | " fs($22) " | " fs($23) " | " fa($10) " (" $11 ") |"
            }' "$tmp/all.tsv"
        echo
        if [ "$have_gnuplot" -eq 1 ]; then
            [ ! -f "$out/plots/$slug-accuracy-mean.png" ] || echo "![mean test accuracy over the seeds against epoch](plots/$slug-accuracy-mean.png)"
            echo "![test accuracy against epoch](plots/$slug-accuracy.png)"
            echo "![time per epoch, first 30 epochs](plots/$slug-epoch-time.png)"
            [ ! -f "$out/plots/$slug-score-vs-weight.png" ] || echo "![S against w_R](plots/$slug-score-vs-weight.png)"
            echo
        fi
        if [ -s "$tmp/paper.tsv" ]; then
            echo "Against the paper, Δ = ours - paper, ours the mean over the seeds (paper: $psrc):"
            echo
            echo "| motif | seeds | final accuracy | paper | Δ accuracy | R_r | paper R_r | A_r | paper A_r | S | paper S (its numbers) |"
            echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            awk -F "$tab" -v gid="$gid" "$FMT_AWK"'
                NR == FNR { pa[$1] = $3; pr[$1] = $4; pq[$1] = $5; ps[$1] = $6; next }
                $1 == gid && ($2 in pa) {
                    print "| " $2 " | " $3 " | " fa($5) " | " fa(pa[$2]) " | " sprintf("%+.4f", $5 - pa[$2]) " | " fa($14) " | " fs(pr[$2]) " | " fa($17) " | " fs(pq[$2]) " | " fa($20) " | " fs(ps[$2]) " |"
                }' "$tmp/paper.tsv" "$tmp/stats.tsv"
            echo
        fi
        grep "^$gid: " "$tmp/notes" | sed 's/^[^:]*: /Note: /' || true
    done <"$tmp/groups.tsv"

    if [ -s "$tmp/paper.tsv" ]; then
        echo "## The paper's numbers"
        echo
        echo "$psrc. Average time per epoch = time / ${paper_epochs:-?} (computed here);"
        echo "R_r, A_r and S computed by \`settrain score\` from the paper's times and accuracies, beside"
        echo "the S the paper prints where the preset records it."
        echo
        echo "| motif | time (s) | accuracy | avg time per epoch (s) | R_r | A_r | S (from its numbers) | S (printed) |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
        awk -F "$tab" -v pe="${paper_epochs:--}" "$FMT_AWK"'
            { print "| " $1 " | " $2 " | " $3 " | " (pe == "-" ? "–" : ft($2 / pe)) " | " fs($4) " | " fs($5) " | " fs($6) " | " fs($7) " |" }' "$tmp/paper.tsv"
        echo
        {
            awk -F "$tab" '$6 != "-" && $7 != "-" && $6 != $7 {
                print "- m = " $1 ": the paper prints S = " $7 "; its own time and accuracy give " $6 "." }' "$tmp/paper.tsv"
            [ -z "$paper_note" ] || echo "- $paper_note"
            grep '^paper: ' "$tmp/notes" | sed 's/^paper: /- /' || true
        } >"$tmp/pnotes"
        if [ -s "$tmp/pnotes" ]; then cat "$tmp/pnotes"; echo; fi
    fi

    # CPU-to-GPU speed-up: same data set, network, settings, motif and seed
    awk -F "$tab" -v OFS="$tab" '$1 == "finished" && ($5 == "cpu" || $5 == "gpu") {
            k = $2 OFS $3 OFS $4 OFS $6 OFS $7
            if (!((k, $5) in e)) { e[k, $5] = $12; t[k, $5] = $8 }
            if (!(k in o)) { o[k] = ++n; key[n] = k } }
        END { for (i = 1; i <= n; i++) { k = key[i]
                if ((k, "cpu") in e && (k, "gpu") in e) print k, e[k, "cpu"], e[k, "gpu"], t[k, "cpu"], t[k, "gpu"] } }' \
        "$tmp/all.tsv" >"$tmp/speedup.tsv"
    if [ -s "$tmp/speedup.tsv" ]; then
        echo "## CPU-to-GPU speed-up"
        echo
        echo "Speed-up = CPU seconds / GPU seconds, for the average time per epoch and for the whole run."
        echo
        echo "| data set | network | motif | seed | CPU epoch (s) | GPU epoch (s) | speed-up (epoch) | CPU total (s) | GPU total (s) | speed-up (total) |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        awk -F "$tab" "$FMT_AWK"'
            function r(a, b) { return (a == "-" || b == "-" || b + 0 <= 0) ? "–" : sprintf("%.2fx", a / b) }
            { print "| " $1 " | " $2 " | " $4 " | " $5 " | " ft($6) " | " ft($7) " | " r($6, $7) " | " ft($8) " | " ft($9) " | " r($8, $9) " |" }' "$tmp/speedup.tsv"
        echo
        if [ "$(cut -f3 "$tmp/speedup.tsv" | LC_ALL=C sort -u | wc -l)" -gt 1 ]; then
            echo "(Rows of different settings are told apart in the group headings above.)"
            echo
        fi
    fi

    echo "## Runs"
    echo
    echo "| run folder | backend | motif | seed | status | epochs done | metrics | commit |"
    echo "|---|---|---:|---:|---|---:|---|---|"
    awk -F "$tab" '{ print "| `" $18 "` | " $5 " | " $6 " | " $7 " | " $1 " | " $13 " of " $14 " | `" $18 "/metrics.csv` | " $16 " |" }' "$tmp/all.tsv"
    echo
    # what run.json says about a run that diverged or failed
    awk -F "$tab" 'FILENAME == ARGV[1] { e[$1] = $2; next } $1 != "finished" && ($19 in e) { gsub(/\|/, " ", e[$19]); print "- `" $18 "` (" $1 "): " e[$19] }' \
        "$tmp/errors.tsv" "$tmp/all.tsv" >"$tmp/errlines"
    if [ -s "$tmp/errlines" ]; then
        cat "$tmp/errlines"
        echo
    fi
    if [ "$nfin" -lt "$nrun" ]; then
        echo "Runs whose status is not \"finished\" are listed here only. \`scripts/study.sh\` resumes such"
        echo "a run from its checkpoint.h5, or moves it aside (*.stale-TIME) when it has none; a run that"
        echo "diverged is a result and is left as it is."
        echo
    fi
    if [ "$have_gnuplot" -eq 0 ]; then
        echo "No plots: gnuplot ($GNUPLOT) with a png or pngcairo terminal was not found."
        echo
    fi
} >"$md"
mv "$md" "$out/report.md"
echo "report: $out/report.md ($nrun run folders, $nfin finished)"
