#!/usr/bin/env python3
"""Reads what tests/gpu/check.sh wrote on the GPU machine and prints the figures for docs/benchmarks.md:
GPU (f16) and CPU embeddings against Hugging Face's reference outputs, zero-shot GPU against CPU, the
held-out AUROCs on the GPU, encode timings and the W/L benchmark.  python3 tests/gpu/compare.py DIR"""
import json, os, sys

d = sys.argv[1]
root = os.path.join(os.path.dirname(__file__), "..", "..")
ref = json.load(open(os.path.join(root, "tests/fixtures/clip/tiny-fullvocab/cli_reference.json")))


def load(name):
    try:
        with open(os.path.join(d, name + ".json")) as f:
            text = f.read()
        try:
            return json.loads(text)  # one object, possibly pretty-printed
        except ValueError:
            return [json.loads(l) for l in text.splitlines() if l.strip()]  # JSON lines
    except (OSError, IndexError, ValueError) as e:
        err = os.path.join(d, name + ".err")
        tail = open(err).read().strip().splitlines()[-1:] if os.path.exists(err) else []
        print(f"{name}: no result ({e}); stderr: {tail}")
        return None


def maxdiff(a, b):
    return max(abs(x - y) for x, y in zip(a, b))


print(open(os.path.join(d, "gpu.txt")).read().strip() if os.path.exists(os.path.join(d, "gpu.txt")) else "")
for dev in ["cuda", "cpu"]:
    im = load(f"embed-images-{dev}")
    if im:
        by = {os.path.basename(p): e for p, e in zip(im["paths"], im["embedding"])}
        for r in ref["images"]:
            e = by.get(os.path.basename(r["file"]))
            if e is not None:
                print(f"{dev} image {r['file']}: max |Δ| vs HF {maxdiff(e, r['embedding']):.2e}")
    t = load(f"embed-text-{dev}")
    if t:
        r = [x for x in ref["texts"] if x["text"] == t["text"]]
        if r:
            print(f"{dev} text {t['text']!r}: max |Δ| vs HF {maxdiff(t['embedding'], r[0]['embedding']):.2e}")
zs = [load("zero-shot-cuda"), load("zero-shot-cpu")]
if all(zs):
    for a, b in zip(zs[0]["findings"], zs[1]["findings"]):
        print(f"zero-shot {a['name']}: GPU {a['probability']:.4f} CPU {b['probability']:.4f}")
ev = load("eval-cuda")
if ev:
    print("eval on the GPU (200 studies):", json.dumps(ev.get("zero_shot_auroc")), "recall@5", ev.get("retrieval_recall_at_5"))
for shape in ["b32", "b16"]:
    for row in load(f"bench-{shape}-cuda") or []:
        print(shape, json.dumps(row))
for s in ["wl-2048", "wl-512"]:
    print(s, json.dumps(load(s)))
