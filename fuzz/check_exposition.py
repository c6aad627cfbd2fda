#!/usr/bin/env python3
"""check_exposition.py DIR: the exposition fuzz target's outputs through the reference
parsers.

Each DIR/*.json is one input rendered by the real writers (FUZZ_DUMP_DIR, see
fuzz/src/exposition.rs): the text 0.0.4, OpenMetrics 1.0 and JSON outputs, and what
each writer was handed (families, label values as the input gave them, values). The
text is parsed by prometheus_client.parser.text_string_to_metric_families, OpenMetrics
by prometheus_client.openmetrics.parser.text_string_to_metric_families, JSON by
Python's json; every sample must come back with the label values and the value
handed over, and nothing else may appear.
"""
import glob
import json
import math
import sys

from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

SUMMARY_QUANTILES = [0.5, 0.9, 0.99, 0.999, 1.0]


def num(v):
    """A number of the dump: JSON numbers, or "NaN"/"+Inf"/"-Inf"."""
    return float(v) if isinstance(v, str) else v


def same(got, want):
    if isinstance(got, int) and isinstance(want, int):
        return got == want
    got, want = float(got), float(want)
    return got == want or (math.isnan(got) and math.isnan(want))


def counter_base(name):
    return name[:-6] if name.endswith("_total") and len(name) > 6 else None


def samples_of(families):
    """{(sample name, own labels): {le or quantile value or None: value}}."""
    out = {}
    for f in families:
        for s in f.samples:
            extra = s.labels.get("le", s.labels.get("quantile"))
            own = frozenset((k, v) for k, v in s.labels.items() if k not in ("le", "quantile"))
            slot = out.setdefault((s.name, own), {})
            assert extra not in slot, f"sample {s.name}{s.labels} twice"
            slot[extra] = s.value
    return out


def expected(families, om):
    """[(sample name, own labels, {extra: value})] the writers were handed."""
    want = []
    for f in families:
        name, kind = f["name"], f["kind"]
        for series in f["series"]:
            labels = frozenset(zip(f["label_names"], series["labels"]))
            p = series["point"]
            created = p.get("created")

            def add(suffix, value, extra=None, sample=name):
                want.append((sample + suffix, labels, extra, value))

            if kind == "counter":
                value = p["int"] if num(p["float"]) == 0 else float(p["int"]) + num(p["float"])
                base = counter_base(name)
                if om:
                    add("", value)
                    if base is not None and created is not None:
                        add("_created", created / 1000, sample=base)
                else:
                    # prometheus_client's text parser names counter samples <base>_total.
                    add("" if base is not None else "_total", value)
            elif kind == "gauge":
                add("", num(p["value"]))
            elif kind == "histogram":
                for le, c in zip(f["buckets"], p["cumulative"]):
                    add("_bucket", c, ("le", num(le)))
                add("_bucket", p["count"], ("le", math.inf))
                if not om or num(p["sum"]) >= 0:
                    add("_sum", num(p["sum"]))
                    add("_count", p["count"])
                if om and created is not None:
                    add("_created", created / 1000)
            elif kind == "summary":
                for q, v in zip(SUMMARY_QUANTILES, p["quantiles"]):
                    add("", num(v), ("quantile", q))
                if not om or num(p["sum"]) >= 0:
                    add("_sum", num(p["sum"]))
                add("_count", p["count"])
                if om and created is not None:
                    add("_created", created / 1000)
            else:
                raise AssertionError(f"unknown kind {kind}")
    return want


def check_exposition(text, families, om):
    parse = parse_openmetrics if om else parse_text
    parsed = list(parse(text))
    got = samples_of(parsed)
    n = 0
    for sample, labels, extra, value in expected(families, om):
        slot = got.get((sample, labels))
        assert slot is not None, f"{sample}{dict(labels)} missing"
        if extra is None:
            assert None in slot, f"{sample}{dict(labels)} missing"
            assert same(slot[None], value), f"{sample}{dict(labels)}: {slot[None]!r} != {value!r}"
        else:
            # le and quantile values are compared as numbers (each format spells them
            # its own way).
            key, bound = extra
            hits = [v for e, v in slot.items() if e is not None and float(e) == bound]
            assert len(hits) == 1, f"{sample}{dict(labels)} {key}={bound}: {slot}"
            assert same(hits[0], value), f"{sample}{dict(labels)} {key}={bound}: {hits[0]!r} != {value!r}"
        n += 1
    total = sum(len(slot) for slot in got.values())
    assert total == n, f"{total} samples parsed, {n} written"
    # Help comes back too, less what the parsers drop: blanks around it (the text
    # parser strips the line) and before it (the OpenMetrics parser).
    helps = {m.name: m.documentation for m in parsed}
    for f in families:
        name = f["name"]
        family = name
        if f["kind"] == "counter" and counter_base(name) is not None:
            family = counter_base(name)
        if family in helps:
            want = f["help"].lstrip() if om else f["help"].strip()
            got_help = helps[family].lstrip() if om else helps[family].strip()
            assert got_help == want, f"help of {name}: {got_help!r} != {want!r}"
        elif f["help"].strip():
            raise AssertionError(f"family {name} ({f['kind']}) not parsed: {sorted(helps)}")


def check_json(text, families):
    doc = json.loads(text)
    assert len(doc["families"]) == len(families), "family count"
    for got, f in zip(doc["families"], families):
        assert got["name"] == f["name"] and got["help"] == f["help"] and got["unit"] == f["unit"]
        assert got["labels"] == f["label_names"]
        assert len(got["series"]) == len(f["series"]), f"{f['name']}: series count"
        for g, s in zip(got["series"], f["series"]):
            assert g["labels"] == dict(zip(f["label_names"], s["labels"])), f"{f['name']}: labels"
            p = s["point"]

            def number(got_v, want_v, what):
                want_v = num(want_v)
                if isinstance(want_v, float) and not math.isfinite(want_v):
                    assert got_v is None, f"{what}: {got_v!r} for {want_v!r}"
                else:
                    assert same(got_v, want_v), f"{what}: {got_v!r} != {want_v!r}"

            if p["type"] == "counter":
                want = p["int"] if num(p["float"]) == 0 else float(p["int"]) + num(p["float"])
                number(g["value"], want, f["name"])
            elif p["type"] == "gauge":
                number(g["value"], p["value"], f["name"])
            else:
                assert g["count"] == p["count"]
                number(g["sum"], p["sum"], f["name"] + " sum")
                if p["type"] == "histogram":
                    for b, le, c in zip(g["buckets"], f["buckets"], p["cumulative"]):
                        number(b["le"], le, "le")
                        assert b["count"] == c
                for key, q in zip(["p50", "p90", "p99", "p999", "max"], p["quantiles"]):
                    number(g["quantiles"][key], q, f"{f['name']} {key}")
            if p.get("created") is not None:
                assert same(g["created"], p["created"] / 1000)


def main():
    files = sorted(glob.glob(sys.argv[1] + "/*.json"))
    assert files, f"no rendered inputs in {sys.argv[1]}"
    failed = 0
    for path in files:
        with open(path) as fh:
            doc = json.load(fh)
        for what, check in [
            ("text", lambda: check_exposition(doc["text"], doc["families"], False)),
            ("openmetrics", lambda: check_exposition(doc["openmetrics"], doc["families"], True)),
            ("json", lambda: check_json(doc["json"], doc["json_families"])),
        ]:
            try:
                check()
            except Exception as e:  # noqa: BLE001 - every failure is reported the same
                failed += 1
                body = doc["json" if what == "json" else what]
                print(f"{path}: {what}: {type(e).__name__}: {e}\n{body[:2000]}", file=sys.stderr)
    print(f"check_exposition: {len(files)} inputs, 3 formats each, {failed} failures")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
