"""plot.py - CE-vs-MSE comparison from two training logs: a small SVG and a Markdown table.

Reads OUT/log.jsonl of a `--loss ce` run and of a `--loss mse` run of the same configuration and
writes an SVG with three panels over steps: cross-entropy of the training batch (both runs log
both objectives, whichever they train), training-batch retrieval accuracy (smoothed), and the
mean norm of the gradient at the logits at answer positions (log scale). Hand-written SVG: no
plotting library needed.

    python3 tools/train/plot.py CE_DIR MSE_DIR docs/training-ce-vs-mse.svg [--title TEXT]
"""
import argparse
import json
import math


def load(d):
    rows = [json.loads(l) for l in open(d + "/log.jsonl")]
    return [r for r in rows if "loss" in r and r["phase"] == "train"], \
        [r for r in rows if "eval_acc" in r and r["phase"] == "train"]


def smooth(xs, k=20):
    out, acc = [], []
    for x in xs:
        acc.append(x)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def panel(x0, y0, w, h, series, title, ylog=False, ymin=None, ymax=None):
    """series: [(label, colour, [(x, y)])] -> svg fragment."""
    pts = [p for _, _, s in series for p in s if p[1] is not None and (not ylog or p[1] > 0)]
    xs = [p[0] for p in pts]
    ys = [math.log10(p[1]) if ylog else p[1] for p in pts]
    xa, xb = min(xs), max(xs) or 1
    ya = ymin if ymin is not None else min(ys)
    yb = ymax if ymax is not None else max(ys)
    if yb - ya < 1e-9:
        yb = ya + 1
    sx = lambda x: x0 + 40 + (x - xa) / (xb - xa) * (w - 50)
    sy = lambda y: y0 + h - 20 - (y - ya) / (yb - ya) * (h - 40)
    o = ['<rect x="%d" y="%d" width="%d" height="%d" fill="white" stroke="#ccc"/>' % (x0, y0, w, h),
         '<text x="%d" y="%d" font-size="12">%s</text>' % (x0 + 40, y0 + 14, title)]
    for t in range(5):
        yv = ya + (yb - ya) * t / 4
        lab = ("%.0e" % 10 ** yv) if ylog else ("%.2f" % yv)
        o.append('<text x="%d" y="%.1f" font-size="9" text-anchor="end">%s</text>' %
                 (x0 + 36, sy(yv) + 3, lab))
        o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>' %
                 (x0 + 40, x0 + w - 10, sy(yv), sy(yv)))
    o.append('<text x="%d" y="%d" font-size="9">step %d</text>' % (x0 + w - 60, y0 + h - 5, xb))
    for i, (label, col, s) in enumerate(series):
        s = s[::max(1, len(s) // 300)]  # keep the file small: ~300 points a curve
        p = " ".join("%.1f,%.1f" % (sx(x), sy(math.log10(y) if ylog else y)) for x, y in s
                     if y is not None and (not ylog or y > 0))
        o.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>' % (col, p))
        o.append('<text x="%d" y="%d" font-size="10" fill="%s">%s</text>' %
                 (x0 + w - 130, y0 + 28 + 12 * i, col, label))
    return "\n".join(o)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ce_dir")
    ap.add_argument("mse_dir")
    ap.add_argument("svg")
    ap.add_argument("--title", default="CE vs MSE (smoke scale)")
    a = ap.parse_args()
    (ce, ce_ev), (ms, ms_ev) = load(a.ce_dir), load(a.mse_dir)
    W, H = 900, 260
    body = [
        panel(0, 20, 300, H, [("trained on CE", "#1f77b4", [(r["step"], r["ce"]) for r in ce]),
                              ("trained on MSE", "#d62728", [(r["step"], r["ce"]) for r in ms])],
              "cross-entropy (weighted, train batch)"),
        panel(300, 20, 300, H,
              [("CE: p(answer token)", "#1f77b4",
                [(r["step"], r["p_ans"]) for r in ce if "p_ans" in r]),
               ("MSE: p(answer token)", "#d62728",
                [(r["step"], r["p_ans"]) for r in ms if "p_ans" in r]),
               ("CE: retrieval acc", "#7fb2d8",
                list(zip([r["step"] for r in ce], smooth([r["acc"] for r in ce])))),
               ("MSE: retrieval acc", "#eb9394",
                list(zip([r["step"] for r in ms], smooth([r["acc"] for r in ms]))))],
              "answer tokens: mean p, retrieval acc (train batch)", ymin=0, ymax=1),
        panel(600, 20, 300, H,
              [("CE", "#1f77b4", [(r["step"], r.get("glogit_ans")) for r in ce if "glogit_ans" in r]),
               ("MSE", "#d62728", [(r["step"], r.get("glogit_ans")) for r in ms if "glogit_ans" in r])],
              "|dL/dlogits| at answer tokens (log)", ylog=True),
    ]
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">'
           '\n<text x="4" y="14" font-size="13">%s</text>\n%s\n</svg>\n' %
           (W, H + 24, a.title, "\n".join(body)))
    open(a.svg, "w").write(svg)

    def at(rows, s, k):
        rs = [r for r in rows if k in r]
        return min(rs, key=lambda r: abs(r["step"] - s)).get(k) if rs else None
    last = ce[-1]["step"]
    steps = sorted({0, 10, 50, 100, 200, 400, 800, last} - {s for s in (400, 800) if s > last})
    print("| step | CE run: CE | MSE run: CE | CE run: acc | MSE run: acc | CE run: |g| ans | "
          "MSE run: |g| ans | CE run: p(ans) | MSE run: p(ans) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in steps:
        def f(v, fmt="%.3f"):
            return "-" if v is None else fmt % v
        print("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            s, f(at(ce, s, "ce")), f(at(ms, s, "ce")), f(at(ce, s, "acc"), "%.2f"),
            f(at(ms, s, "acc"), "%.2f"), f(at(ce, s, "glogit_ans"), "%.2e"),
            f(at(ms, s, "glogit_ans"), "%.2e"), f(at(ce, s, "p_ans")), f(at(ms, s, "p_ans"))))
    for name, ev in (("CE", ce_ev), ("MSE", ms_ev)):
        print("%s eval: %s" % (name, ", ".join("step %d len %d: %.2f" % (r["step"], r["len"],
                                                                     r["eval_acc"]) for r in ev)))


if __name__ == "__main__":
    main()
