#!/usr/bin/env python3
"""The targets table of BENCHMARKS.md, from bench/targets.tsv and the steps' numbers.

    bench/targets.py TARGETS_TSV OUT_DIR

OUT_DIR holds one STEP.tsv per step of bench/run.sh ("key<TAB>value" lines, written by
bench/common.sh's put_value); a number is named STEP.KEY in TARGETS_TSV. Each target row:

    id  issue  target  value  format  unit  cmp  limit  note

value is an arithmetic expression over those names (+ - * / and parentheses), format a
printf format for it, cmp "<=" (at most) or ">=" (at least) against limit (a number or
a fraction such as 1/3), note a text shown after the value, in which {STEP.KEY} stands
for that number as the step wrote it and {EXPRESSION:FORMAT} for a computed one.
A value whose names were not all measured (a step skipped or not run, a division by
zero) is "not measured"; otherwise met or missed, and measured / limit.
"""
import math
import os
import re
import sys

NAME = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)+")
FIELDS = ["id", "issue", "target", "value", "format", "unit", "cmp", "limit", "note"]


def numbers(out_dir):
    values = {}
    for f in sorted(os.listdir(out_dir)):
        if not f.endswith(".tsv"):
            continue
        with open(os.path.join(out_dir, f)) as fh:
            for line in fh:
                key, _, value = line.rstrip("\n").partition("\t")
                if key:
                    values[f[:-4] + "." + key] = value
    return values


def evaluate(expr, values):
    missing = []

    def number(m):
        v = values.get(m.group(0))
        try:
            return repr(float(v))
        except (TypeError, ValueError):
            missing.append(m.group(0))
            return "0"

    code = NAME.sub(number, expr)
    if missing or not re.fullmatch(r"[0-9eE.+\-*/() ]*", code):
        return None
    try:
        v = eval(code, {"__builtins__": {}}, {})  # digits and operators only (checked above)
    except ZeroDivisionError:
        return None
    return v if math.isfinite(v) else None


def shown(expr, fmt, values):
    """{EXPR} or {EXPR:FORMAT} of a note: the number as a step wrote it, or computed."""
    expr = expr.strip()
    if not fmt and NAME.fullmatch(expr):
        return values.get(expr, "?")
    v = evaluate(expr, values)
    return "?" if v is None else (fmt or "%g") % v


def main():
    targets_tsv, out_dir = sys.argv[1], sys.argv[2]
    values = numbers(out_dir)
    print("| Target | Measured (this run) | Measured ÷ limit | Verdict |")
    print("|---|---|---|---|")
    with open(targets_tsv) as fh:
        for line in fh:
            if not line.strip() or line.startswith("#"):
                continue
            row = dict(zip(FIELDS, line.rstrip("\n").split("\t")))
            if len(row) != len(FIELDS) or row["cmp"] not in ("<=", ">="):
                sys.exit(f"targets.py: bad row in {targets_tsv}: {line.strip()}")
            limit = evaluate(row["limit"], {})
            if limit is None:
                sys.exit(f"targets.py: bad limit in {targets_tsv}: {row['limit']}")
            unit = f" {row['unit']}" if row["unit"] else ""
            what = f"{row['target']}: {'≤' if row['cmp'] == '<=' else '≥'} {row['limit']}{unit}"
            v = evaluate(row["value"], values)
            note = re.sub(r"\{([^}:]+)(?::([^}]+))?\}", lambda m: shown(m.group(1), m.group(2), values), row["note"])
            if v is None:
                print(f"| {what} | — | — | not measured |")
                continue
            met = v <= limit if row["cmp"] == "<=" else v >= limit
            ratio = f"{v / limit:.2f}×" if limit else "—"
            measured = (row["format"] % v) + unit + (f"; {note}" if note else "")
            print(f"| {what} | {measured} | {ratio} | {'**met**' if met else '**missed**'} |")


if __name__ == "__main__":
    main()
