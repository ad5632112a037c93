#!/usr/bin/env python3
"""Trains the classify function's model and writes crates/routing-core/models/classifier.json.

Usage (from the project root, with ../shared/data/ beside it):

    python3 -m venv /tmp/clsvenv && /tmp/clsvenv/bin/pip install -r scripts/requirements-train.txt
    /tmp/clsvenv/bin/python scripts/train-classifier.py

Features come from the Rust extractor itself (`cargo run --release -p routing-core --example
classifier-features -- extract-bin`), so training and serving share one implementation. The run is
deterministic: fixed seeds, hash-based splits, lbfgs.

Two heads, both logistic regressions over the same sparse features:

* task (classify / generate / reason), multinomial. Labels come from how each prompt was built,
  because no public set labels prompts with these tasks:
  - reason: RouteLLM MMLU exam questions, as given (question, options, "Answer:"), as the bare
    question, or wrapped in an instruction to reason ("Think step by step", "Show your work").
  - classify: BANKING77/CLINC150 queries and STS-B sentences wrapped in an instruction to label,
    categorise or detect the intent/sentiment/topic, with candidate labels drawn from the
    dataset's own intent names or from generic label sets; some list the candidates as lettered
    options ending in "Answer:", as MMLU does, so the format alone does not give the task away.
  - generate: BANKING77/CLINC150 queries as they are (a user asking an assistant something), and
    queries, STS-B sentences or topics wrapped in an instruction to write, rewrite, translate,
    summarise or explain.
  - ambiguous, with soft labels: open-ended requests about an MMLU subject ("Explain ...",
    "Compare ... and ...", "Tell me about ...") are half generate, half reason, since the prompt
    does not settle whether a written explanation or a worked analysis is wanted; underspecified
    requests ("Can you look at this?", "Help me with my code") are a third each. These teach the
    model to say it does not know, which is what the confidence is for.
  Instruction templates are split three ways: validation (regularisation and temperature) and the
  held-out test split each use their own templates, never seen in training, so both measure
  wording the model was not fitted on.
* needs_strong, binary: 1 when the weak model (Mixtral-8x7B) got an MMLU question wrong and the
  strong one (GPT-4) got it right, which is when routing to the strong model pays. Both-right and
  only-weak-right are 0 (the weak model suffices), and so is both-wrong: the strong model does not
  help there, so paying for it is wasted; the evaluation also reports AUC against "weak wrong".
  Only the questions as given carry this label. Queries and the classify/generate prompts built
  from them are added as 0 (an assumption: customer queries, labelling and rewriting short texts
  are within a weak model's reach); the difficulty figures of the evaluation use MMLU only.

Difficulty tiers come from needs_strong: hard from 1.5x the MMLU base rate of needs_strong (the
strong model is half again as likely as on an average exam question to be needed), simple below
0.5x, medium between.

Probabilities of both heads are temperature-scaled on the validation split. Splits: MMLU by a hash
of the prompt (70/15/15); BANKING77 train by hash (85/15) and its own test file; CLINC150 its own
train/val/test (with their out-of-scope parts); STS-B GLUE train by hash (85/15) and dev as test.
"""

from __future__ import annotations

import base64
import csv
import glob
import hashlib
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
MODEL_PATH = ROOT / "crates/routing-core/models/classifier.json"
PARITY_PATH = ROOT / "crates/routing-core/tests/fixtures/classifier-parity.jsonl"
SEED = 20261123
TASKS = ["classify", "generate", "reason"]
C_GRID = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
MODEL_FORMAT = "faas-llm-router/classifier"

# ---------------------------------------------------------------------------------------------
# Templates. {text}: a query or sentence; {labels}: candidate labels; {l1}..{l4}: the same as
# options; {topic}: a subject; {prompt}: an MMLU prompt as given; {stem}: its question alone.
# ---------------------------------------------------------------------------------------------

CLASSIFY_TRAIN = [
    "Classify the following customer message into one of these intents: {labels}.\n\nMessage: {text}",
    "Which category does this query belong to? Options: {labels}\nQuery: {text}",
    'Label the intent of this message.\nMessage: "{text}"\nPossible labels: {labels}',
    "{text}\n\nWhat is the intent of the message above? Choose from: {labels}.",
    "Assign one of the labels {labels} to the following text. Reply with the label only.\n{text}",
    "Intent detection.\nText: {text}\nIntent:",
    "Tag the topic of this text ({labels}): {text}",
    "Which intent best describes the message?\nMessage: {text}\nA. {l1}\nB. {l2}\nC. {l3}\nD. {l4}\nAnswer:",
    "Give the category for: {text}",
    "Classify the sentiment of this sentence as {labels}: {text}",
    "Is the following message {l1} or {l2}? {text}",
    "Which department should handle this ({labels})?\n{text}",
]
CLASSIFY_VAL = [
    "Categorize this support ticket: {text}\nCategories: {labels}",
    "Route this request to the right team ({labels}): {text}",
    "Decide whether this text is {l1} or {l2}: {text}",
    "Text: {text}\nLabel it with exactly one of: {labels}",
    "Which label fits best? {labels}\n\n{text}",
    "Figure out what the customer wants ({labels}): {text}",
]
CLASSIFY_TEST = [
    "Please determine which of these classes fits the text best: {labels}.\nText: {text}",
    "Read the message and output its intent label ({labels}).\n\n{text}",
    "Sort this customer request into a bucket. Buckets: {labels}. Request: {text}",
    'Is this {l1} or {l2}?\n"{text}"',
    "Here is a user utterance: {text}\nWhich of the following intents does it express?\n(a) {l1}\n(b) {l2}\n(c) {l3}",
    "Text: {text}\nWhat kind of message is this? Pick from {labels}.",
    "Give me the single best class for the following input, choosing among {labels}: {text}",
    "Please sort the following into {l1}, {l2} or {l3}: {text}",
]
GENERATE_TRAIN = [
    "Write a short story that begins with: {text}",
    "Rewrite this sentence in a more formal tone: {text}",
    "Translate into French: {text}",
    'Write a friendly reply to this customer: "{text}"',
    "Draft an email to our support team about this: {text}",
    "Write a poem about {topic}.",
    "Summarize in one sentence: {text}",
    "Paraphrase: {text}",
    "Write a blog post introduction about {topic}.",
    "Reply to this message as a helpful assistant: {text}",
    "Write a product review that mentions: {text}",
]
GENERATE_VAL = [
    "Write a tweet announcing: {text}",
    "Continue this text: {text}",
    "Give me three catchy headlines for an article about {topic}.",
    "Tell me something interesting about {topic}.",
    "Can you help me write a thank-you note about this: {text}",
    "Produce a short speech about {topic}.",
]
GENERATE_TEST = [
    "Compose a limerick inspired by this line: {text}",
    "Turn this into a polite message to my manager: {text}",
    "Could you write a product description for {topic}?",
    "Make this sound more exciting: {text}",
    "Describe {topic} in a paragraph for a school newsletter.",
    "Please write a catchy slogan for {topic}.",
    "Expand this into a full paragraph: {text}",
    "I need a birthday message for my colleague that mentions: {text}",
]
REASON_TRAIN = [
    "{stem}\nThink step by step before answering.",
    "Answer the following question and explain your reasoning.\n{prompt}",
    "Solve this problem: {stem}",
    "Reason carefully about this question before you answer.\n{prompt}",
    "Explain why the correct answer is correct: {prompt}",
]
REASON_VAL = [
    "Question: {stem}\nShow your work.",
    "{prompt} Let's work it out step by step.",
    "Figure out the right answer: {prompt}",
    "Think this through and tell me which is right.\n{prompt}",
]
REASON_TEST = [
    "{stem}\nWalk me through the logic.",
    "Work out the answer carefully and justify it: {prompt}",
    "I need a rigorous answer to this: {stem}",
    "Carefully reason about the following and give the answer.\n{prompt}",
    "{prompt}\nExplain how you arrived at it.",
]
TEMPLATES = {
    "train": (CLASSIFY_TRAIN, GENERATE_TRAIN, REASON_TRAIN),
    "val": (CLASSIFY_VAL, GENERATE_VAL, REASON_VAL),
    "test": (CLASSIFY_TEST, GENERATE_TEST, REASON_TEST),
}
# Training also draws instructions from a small grammar, for wording variety; validation and test
# use only their own fixed templates above.
CLASSIFY_VERBS = [
    "Classify", "Categorize", "Categorise", "Label", "Tag", "Identify the {target} of",
    "Determine the {target} of", "Detect the {target} of", "Predict the {target} of",
    "Choose the right {target} for", "Pick the {target} that fits", "Assign a {target} to",
]
CLASSIFY_OBJECTS = [
    "this message", "the following text", "this query", "the customer request below",
    "this review", "the sentence below", "this ticket", "the following comment", "this email",
    "the text", "this chat message", "the following input",
]
CLASSIFY_TARGETS = ["intent", "category", "class", "label", "topic", "sentiment", "type", "tone"]
CLASSIFY_CHOICES = [
    " Options: {labels}.", " Choices: {labels}.", " Possible labels: {labels}.",
    " Use one of: {labels}.", " The categories are {labels}.", " ({labels})",
    " Answer with one of {labels}.", " Is it {l1} or {l2}?", " Reply with the label only: {labels}.",
    "\nA. {l1}\nB. {l2}\nC. {l3}\nAnswer:", "\n- {l1}\n- {l2}\n- {l3}", "",
]
GENERATE_VERBS = [
    "Write", "Draft", "Compose", "Create", "Generate", "Come up with", "Help me write",
    "Can you write", "Please write", "I need",
]
GENERATE_THINGS = [
    "a short story", "an email", "a poem", "a tweet", "a headline", "a reply", "a letter",
    "a paragraph", "a summary", "an essay", "a product blurb", "a caption", "a toast",
    "a joke", "an announcement", "a text message", "a LinkedIn post", "song lyrics",
]
GENERATE_TRANSFORMS = [
    "Rewrite this in a friendlier tone:", "Translate this into German:", "Translate to Spanish:",
    "Summarise this:", "Shorten this:", "Fix the grammar in this:", "Make this more formal:",
    "Paraphrase the following:", "Turn this into a bullet list:", "Respond to this customer:",
    "Answer this customer politely:", "Write a follow-up to:",
]
REASON_BEFORE = [
    "Solve:", "Answer this, reasoning step by step:", "Think carefully and answer:",
    "Work through this problem:", "Explain your reasoning for the following.",
    "Prove or disprove:", "Analyze the following question.", "Justify your answer:",
    "Let's reason about this.", "Determine the correct answer and explain why.",
]
REASON_AFTER = [
    "Think step by step.", "Show your reasoning.", "Explain each step.", "Justify your answer.",
    "Give the answer and the reasoning behind it.", "Explain why.", "Reason it out before answering.",
    "Show the calculation.", "",
]


def grammar_template(kind: str, rng: random.Random) -> str:
    if kind == "classify":
        verb = rng.choice(CLASSIFY_VERBS).replace("{target}", rng.choice(CLASSIFY_TARGETS))
        head = f"{verb} {rng.choice(CLASSIFY_OBJECTS)}.{rng.choice(CLASSIFY_CHOICES)}"
        layout = rng.randrange(3)
        if layout == 0:
            return head + "\n{text}"
        if layout == 1:
            return "{text}\n\n" + head
        return head + '\nText: "{text}"'
    if kind == "generate":
        if rng.random() < 0.5:
            thing = rng.choice(GENERATE_THINGS)
            about = rng.choice(["about {topic}", "about this: {text}", "based on: {text}", "for {topic}"])
            return f"{rng.choice(GENERATE_VERBS)} {thing} {about}"
        return rng.choice(GENERATE_TRANSFORMS) + rng.choice([" ", "\n"]) + "{text}"
    inner = rng.choice(["{prompt}", "{stem}"])
    if rng.random() < 0.5:
        return rng.choice(REASON_BEFORE) + "\n" + inner
    return inner + "\n" + rng.choice(REASON_AFTER)


def pick_template(kind: str, split: str, rng: random.Random) -> str:
    fixed = TEMPLATES[split][["classify", "generate", "reason"].index(kind)]
    if split == "train" and rng.random() < 0.5:
        return grammar_template(kind, rng)
    return rng.choice(fixed)


# Ambiguous prompts carry soft labels: an open-ended request about a subject (explain, compare,
# tell me about) may want a written explanation or a worked analysis, half generate and half
# reason; an underspecified request ("can you look at this?") could be anything.
OPEN_ENDED = {
    "train": [
        "Explain {topic}.",
        "Explain {topic} in simple terms.",
        "Tell me about {topic}.",
        "What do you think about {topic}?",
        "Compare {topic} and {topic2}.",
        "Give me an overview of {topic}.",
        "How does {topic} work?",
        "Discuss {topic}.",
    ],
    "val": ["Walk me through {topic}.", "Break down {topic} for me.", "Explain {topic} like I'm new to it."],
    "test": ["I'd like to understand {topic}.", "Teach me {topic}.", "What's the deal with {topic}?"],
}
UNDERSPECIFIED = {
    "train": [
        "Can you check this?",
        "Help me with this.",
        "Look at this and tell me what you think.",
        "Is this right?",
        "What about this one?",
        "Fix it.",
        "Any thoughts on this?",
        "{opener} {verb} {object}{ending}",
    ],
    "val": ["Thoughts?", "Can you go over this for me?", "Please review my {thing}."],
    "test": ["Have a look at this please", "Does this work?", "Could you sort out my {thing}?"],
}
OPENERS = ["Can you", "Could you", "Please", "Help me", "I need you to", "Would you", "Quickly"]
VERBS = ["check", "look at", "review", "go through", "improve", "help with", "fix", "handle", "deal with"]
OBJECTS = ["this", "it", "my {thing}", "the attached", "this one", "that", "the thing I sent", "my {thing} again"]
ENDINGS = ["?", ".", " for me?", " please", "", " asap"]
THINGS = ["essay", "code", "homework", "email", "plan", "spreadsheet", "report", "answer", "idea", "design"]
OPEN_ENDED_SOFT = {"classify": 0.0, "generate": 0.5, "reason": 0.5}
UNDERSPECIFIED_SOFT = {"classify": 1 / 3, "generate": 1 / 3, "reason": 1 / 3}


GENERIC_LABEL_SETS = [
    ["positive", "negative", "neutral"],
    ["positive", "negative"],
    ["sports", "politics", "business", "technology", "entertainment"],
    ["spam", "not spam"],
    ["question", "statement", "command"],
    ["toxic", "non-toxic"],
    ["formal", "informal"],
    ["urgent", "not urgent"],
    ["news", "opinion", "advertisement"],
    ["relevant", "irrelevant"],
]


@dataclass
class Row:
    text: str
    task: str | None  # None: a row for the strong head only, or one with a soft task label
    needs_strong: int | None = None  # MMLU as given only
    weak: int | None = None
    strong: int | None = None
    source: str = ""
    soft: dict[str, float] | None = None  # task probabilities of an ambiguous prompt

    def task_targets(self) -> list[tuple[str, float]]:
        """(task, weight) pairs: one with weight 1, or the soft label."""
        if self.soft is not None:
            return list(self.soft.items())
        return [(self.task, 1.0)] if self.task is not None else []


def bucket(key: str) -> float:
    """A stable number in [0, 1) from a string."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def human(label: str) -> str:
    return label.replace("_", " ")


# ------------------------------------------------------------------------------------- loading


def load_mmlu():
    rows = []
    for path in sorted(glob.glob(str(DATA / "routellm-mmlu/mmlu/responses/*.csv"))):
        subject = Path(path).stem.removeprefix("mmlu_")
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            next(reader)
            for prompt, weak, strong in reader:
                rows.append((prompt, weak == "True", strong == "True", subject))
    if not rows:
        sys.exit(f"no RouteLLM MMLU data under {DATA}")
    return rows


def mmlu_split(prompt: str) -> str:
    u = bucket("mmlu:" + prompt)
    return "train" if u < 0.70 else "val" if u < 0.85 else "test"


def stem_of(prompt: str) -> str:
    """The question without its lettered options and trailing "Answer:"."""
    cut = prompt.find("\nA. ")
    stem = prompt[:cut] if cut > 0 else prompt
    return stem.removesuffix("Answer:").strip()


def load_queries():
    """(text, label, domain, split) for BANKING77 and CLINC150 (out-of-scope included)."""
    out = []
    with open(DATA / "banking77/train.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            split = "train" if bucket("b77:" + r["text"]) < 0.85 else "val"
            out.append((r["text"], r["category"], "banking77", split))
    with open(DATA / "banking77/test.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            out.append((r["text"], r["category"], "banking77", "test"))
    clinc = json.loads((DATA / "clinc150/data_full.json").read_text(encoding="utf-8"))
    for key, split in [
        ("train", "train"),
        ("oos_train", "train"),
        ("val", "val"),
        ("oos_val", "val"),
        ("test", "test"),
        ("oos_test", "test"),
    ]:
        for text, label in clinc[key]:
            out.append((text, label, "clinc150", split))
    return out


def load_sentences():
    """STS-B sentences: (text, split)."""
    out = []
    for name, test in [("train.tsv", False), ("dev.tsv", True)]:
        with open(DATA / "sts-b" / name, encoding="utf-8") as f:
            for line in f:
                cols = line.rstrip("\n").split("\t")
                if len(cols) < 10 or cols[0] == "index":
                    continue
                for s in cols[7:9]:
                    s = s.strip()
                    if not s:
                        continue
                    split = "test" if test else ("train" if bucket("sts:" + s) < 0.85 else "val")
                    out.append((s, split))
    # A sentence in both files belongs to the test side only.
    test_side = {s for s, sp_ in out if sp_ == "test"}
    seen = set()
    uniq = []
    for s, split in out:
        if split != "test" and s in test_side:
            continue
        if (s, split) in seen:
            continue
        seen.add((s, split))
        uniq.append((s, split))
    return uniq


# -------------------------------------------------------------------------------- construction


def fill(template: str, rng: random.Random, text="", labels=None, topic="", prompt="", stem=""):
    labels = labels or ["positive", "negative"]
    opts = list(labels) + ["other"] * 4
    return template.format(
        text=text,
        labels=", ".join(labels),
        l1=opts[0],
        l2=opts[1],
        l3=opts[2],
        l4=opts[3],
        topic=topic,
        prompt=prompt,
        stem=stem,
    )


def candidate_labels(rng: random.Random, true_label: str, pool: list[str]) -> list[str]:
    k = rng.randint(2, 6)
    others = [p for p in pool if p != true_label]
    chosen = rng.sample(others, min(k - 1, len(others))) + [true_label]
    rng.shuffle(chosen)
    return [human(c) for c in chosen]


def build(split: str, mmlu, queries, sentences, topics, rng: random.Random) -> list[Row]:
    """Rows of one split, each with its own instruction templates."""
    rows: list[Row] = []

    # MMLU: every question as given carries the needs_strong label (difficulty head), and one
    # presentation of it (as given, bare, or wrapped) is a reason row (task head).
    for prompt, weak, strong, subject in mmlu:
        if mmlu_split(prompt) != split:
            continue
        u = rng.random()
        as_given = u < 0.35
        rows.append(
            Row(
                prompt,
                "reason" if as_given else None,
                int((not weak) and strong),
                int(weak),
                int(strong),
                "mmlu:" + subject,
            )
        )
        if as_given:
            continue
        if u < 0.55:
            text = stem_of(prompt)
        else:
            text = fill(pick_template("reason", split, rng), rng, prompt=prompt, stem=stem_of(prompt))
        rows.append(Row(text, "reason", None, source="mmlu-wrapped:" + subject))

    q = [x for x in queries if x[3] == split]
    pools: dict[str, list[str]] = {}
    for _, label, domain, _ in queries:
        if label != "oos":
            pools.setdefault(domain, [])
            if label not in pools[domain]:
                pools[domain].append(label)
    rng.shuffle(q)
    s = [x for x, sp_ in sentences if sp_ == split]
    rng.shuffle(s)

    n_mmlu = sum(1 for r in rows if r.needs_strong is not None)
    # Roughly balanced classes: as many classify rows, and as many generate rows, as MMLU rows.
    n_class = n_mmlu
    n_gen_raw = n_mmlu // 2
    n_gen_tpl = n_mmlu - n_gen_raw

    qi = 0
    si = 0

    def next_query():
        nonlocal qi
        item = q[qi % len(q)]
        qi += 1
        return item

    def next_sentence():
        nonlocal si
        item = s[si % len(s)]
        si += 1
        return item

    for i in range(n_class):
        if i % 3 == 2:
            text = next_sentence()
            labels = list(rng.choice(GENERIC_LABEL_SETS))
            rng.shuffle(labels)
            src = "sts-classify"
        else:
            text, label, domain, _ = next_query()
            true = label if label != "oos" else rng.choice(pools[domain])
            labels = candidate_labels(rng, true, pools[domain])
            src = domain + "-classify"
        template = pick_template("classify", split, rng)
        rows.append(Row(fill(template, rng, text=text, labels=labels), "classify", 0, source=src))

    for _ in range(n_gen_raw):
        text, _, domain, _ = next_query()
        rows.append(Row(text, "generate", 0, source=domain + "-raw"))

    for i in range(n_gen_tpl):
        template = pick_template("generate", split, rng)
        if "{topic}" in template:
            rows.append(Row(fill(template, rng, topic=rng.choice(topics)), "generate", 0, source="topic-generate"))
        elif i % 2 == 0:
            rows.append(Row(fill(template, rng, text=next_sentence()), "generate", 0, source="sts-generate"))
        else:
            rows.append(Row(fill(template, rng, text=next_query()[0]), "generate", 0, source="query-generate"))

    subjects = sorted({human(subj) for *_, subj in mmlu})
    for _ in range(n_mmlu // 5):
        a, b = rng.sample(subjects if rng.random() < 0.5 else topics, 2)
        text = rng.choice(OPEN_ENDED[split]).format(topic=a, topic2=b)
        rows.append(Row(text, None, source="open-ended", soft=OPEN_ENDED_SOFT))
    for _ in range(n_mmlu // 10):
        text = rng.choice(UNDERSPECIFIED[split]).format(
            opener=rng.choice(OPENERS),
            verb=rng.choice(VERBS),
            object=rng.choice(OBJECTS),
            ending=rng.choice(ENDINGS),
            thing="{thing}",
        )
        text = text.format(thing=rng.choice(THINGS))
        rows.append(Row(text, None, source="underspecified", soft=UNDERSPECIFIED_SOFT))
    return rows


def topic_list(mmlu, queries) -> list[str]:
    topics = sorted({human(subj) for *_, subj in mmlu})
    topics += sorted({human(label) for _, label, _, _ in queries if label != "oos"})
    domains = json.loads((DATA / "clinc150/domains.json").read_text(encoding="utf-8"))
    topics += sorted(human(d) for d in domains)
    return topics


def datasets():
    """{"train"|"val"|"test": [Row]} built deterministically."""
    mmlu = load_mmlu()
    queries = load_queries()
    sentences = load_sentences()
    topics = topic_list(mmlu, queries)
    out = {}
    for i, split in enumerate(["train", "val", "test"]):
        rng = random.Random(SEED + i)
        out[split] = build(split, mmlu, queries, sentences, topics, rng)
    return out


# ------------------------------------------------------------------------------------ features


def cargo_features(mode: str, texts: list[str] | None = None, extra: list[str] | None = None) -> bytes:
    cmd = [
        "cargo",
        "run",
        "--release",
        "--quiet",
        "-p",
        "routing-core",
        "--example",
        "classifier-features",
        "--",
        mode,
    ] + (extra or [])
    stdin = None if texts is None else "".join(json.dumps(t) + "\n" for t in texts).encode("utf-8")
    return subprocess.run(cmd, cwd=ROOT, input=stdin, capture_output=True, check=True).stdout


def feature_info() -> dict:
    return json.loads(cargo_features("info"))


def extract(texts: list[str], dim: int) -> sp.csr_matrix:
    raw = cargo_features("extract-bin", texts)
    indptr = [0]
    indices = []
    values = []
    pos = 0
    for _ in texts:
        (n,) = np.frombuffer(raw, dtype="<u4", count=1, offset=pos)
        pos += 4
        indices.append(np.frombuffer(raw, dtype="<u4", count=n, offset=pos))
        pos += 4 * int(n)
        values.append(np.frombuffer(raw, dtype="<f4", count=n, offset=pos))
        pos += 4 * int(n)
        indptr.append(indptr[-1] + int(n))
    if pos != len(raw):
        sys.exit("feature export has trailing bytes")
    return sp.csr_matrix(
        (np.concatenate(values).astype(np.float64), np.concatenate(indices), np.array(indptr)),
        shape=(len(texts), dim),
    )


# ------------------------------------------------------------------------------------ training


def fit_temperature(logits: np.ndarray, y: np.ndarray, binary: bool, weights=None) -> float:
    """The temperature of least (weighted) validation log-loss."""
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)

    def nll(log_t: float) -> float:
        t = np.exp(log_t)
        if binary:
            z = logits / t
            return float(np.average(np.logaddexp(0, z) - y * z, weights=w))
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-np.average(logp[np.arange(len(y)), y], weights=w))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


def f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype="<f4")


def b64(a: np.ndarray) -> str:
    return base64.b64encode(f32(a).tobytes()).decode("ascii")


def fit_head(X_tr, y_tr, X_va, y_va, w_tr=None, w_va=None):
    """The logistic regression with the C of least validation log-loss."""
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=3000, tol=1e-6)
        clf.fit(X_tr, y_tr, sample_weight=w_tr)
        p = clf.predict_proba(X_va)
        loss = log_loss(y_va, p, labels=clf.classes_, sample_weight=w_va)
        print(f"    C={c:<5} val log-loss {loss:.4f}", flush=True)
        if best is None or loss < best[0]:
            best = (loss, c, clf)
    return best[1], best[2]


def main() -> None:
    info = feature_info()
    dim = info["dim"]
    print(f"features v{info['feature_version']} dim {dim} fingerprint {info['fingerprint']}")
    data = datasets()
    for split, rows in data.items():
        counts = {t: sum(1 for r in rows if r.task == t) for t in TASKS}
        counts["soft"] = sum(1 for r in rows if r.soft is not None)
        ns = [r.needs_strong for r in rows if r.weak is not None]
        print(f"{split}: {len(rows)} rows, tasks {counts}, MMLU {len(ns)} (needs_strong {np.mean(ns):.3f})")

    feats = {split: extract([r.text for r in rows], dim) for split, rows in data.items()}

    # Task head: rows with a task label, soft labels spread over weighted copies.
    def task_set(split):
        idx, labels, weights = [], [], []
        for i, r in enumerate(data[split]):
            for t, wgt in r.task_targets():
                if wgt > 0:
                    idx.append(i)
                    labels.append(TASKS.index(t))
                    weights.append(wgt)
        return feats[split][idx], np.array(labels), np.array(weights)

    Xt, y, sw = {}, {}, {}
    for split in data:
        Xt[split], y[split], sw[split] = task_set(split)
    print("task head")
    task_c, task_clf = fit_head(Xt["train"], y["train"], Xt["val"], y["val"], sw["train"], sw["val"])
    if list(task_clf.classes_) != [0, 1, 2]:
        sys.exit("task classes missing from training data")
    W = f32(task_clf.coef_).astype(np.float64)
    b = f32(task_clf.intercept_).astype(np.float64)
    # Temperature on the prompts with one right task: calibration is only measurable there.
    hard = sw["val"] == 1
    task_t = fit_temperature(Xt["val"][hard] @ W.T + b, y["val"][hard], binary=False)

    # Strong head: MMLU as given, plus a share of the classify/generate rows as 0 (see the module
    # doc). Validation: MMLU only.
    print("strong head")
    rng = np.random.default_rng(SEED)
    mmlu_tr = [i for i, r in enumerate(data["train"]) if r.weak is not None]
    other_tr = [i for i, r in enumerate(data["train"]) if r.weak is None and r.needs_strong is not None]
    other_tr = sorted(rng.choice(other_tr, size=min(len(other_tr), len(mmlu_tr) // 3), replace=False).tolist())
    tr = mmlu_tr + other_tr
    va = [i for i, r in enumerate(data["val"]) if r.weak is not None]
    ys_tr = np.array([data["train"][i].needs_strong for i in tr])
    ys_va = np.array([data["val"][i].needs_strong for i in va])
    strong_c, strong_clf = fit_head(feats["train"][tr], ys_tr, feats["val"][va], ys_va)
    w = f32(strong_clf.coef_[0]).astype(np.float64)
    bs = float(f32(strong_clf.intercept_)[0])
    strong_t = fit_temperature(feats["val"][va] @ w + bs, ys_va, binary=True)

    base_rate = float(np.mean([r.needs_strong for r in data["train"] if r.weak is not None]))
    thresholds = {"medium_from": round(0.5 * base_rate, 4), "hard_from": round(1.5 * base_rate, 4)}

    # Validation figures (the held-out test split is left to scripts/eval-classifier.py).
    zt = (Xt["val"] @ W.T + b) / task_t
    pt = np.exp(zt - zt.max(axis=1, keepdims=True))
    pt /= pt.sum(axis=1, keepdims=True)
    ps = 1 / (1 + np.exp(-((feats["val"][va] @ w + bs) / strong_t)))
    val_metrics = {
        "task_accuracy": round(float(np.mean((pt.argmax(1) == y["val"])[sw["val"] == 1])), 4),
        "task_log_loss": round(float(log_loss(y["val"], pt, labels=[0, 1, 2], sample_weight=sw["val"])), 4),
        "needs_strong_auc": round(float(roc_auc_score(ys_va, ps)), 4),
        "needs_strong_log_loss": round(float(log_loss(ys_va, ps, labels=[0, 1])), 4),
    }
    print("validation", val_metrics)

    digest = hashlib.sha256(b64(W).encode() + b64(w).encode()).hexdigest()[:10]
    model = {
        "format": MODEL_FORMAT,
        "format_version": 1,
        "id": f"lexlr-f{info['feature_version']}-{digest}",
        "feature_version": info["feature_version"],
        "feature_fingerprint": info["fingerprint"],
        "dim": dim,
        "tasks": TASKS,
        "task_temperature": round(task_t, 6),
        "task_bias": [float(v) for v in f32(b)],
        "strong_temperature": round(strong_t, 6),
        "strong_bias": float(np.float32(bs)),
        "difficulty_thresholds": thresholds,
        "training": {
            "script": "scripts/train-classifier.py",
            "seed": SEED,
            "data": "../shared/data/ (RouteLLM MMLU, BANKING77, CLINC150, STS-B sentences)",
            "rows": {s: len(r) for s, r in data.items()},
            "task_c": task_c,
            "strong_c": strong_c,
            "strong_rows": {"mmlu": len(mmlu_tr), "other_as_zero": len(other_tr)},
            "needs_strong_base_rate": round(base_rate, 4),
            "validation": val_metrics,
        },
        "task_weights": b64(W),
        "strong_weights": b64(w),
    }
    MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    MODEL_PATH.write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {MODEL_PATH.relative_to(ROOT)} ({MODEL_PATH.stat().st_size} bytes), id {model['id']}")

    # Parity fixture: the probabilities this script computes (float64 over the stored f32
    # weights); a Rust test checks that the served model gives the same.
    pick = random.Random(SEED)
    sample = pick.sample([r for r in data["test"] if r.task is not None], 40)
    texts = [r.text for r in sample] + [
        "",
        "hi",
        "explain this system design in simple terms",
        "Classify the sentiment of this review: great phone",
    ]
    X = extract(texts, dim)
    zt = (X @ W.T + b) / task_t
    pt = np.exp(zt - zt.max(axis=1, keepdims=True))
    pt /= pt.sum(axis=1, keepdims=True)
    ps = 1 / (1 + np.exp(-((X @ w + bs) / strong_t)))
    PARITY_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(PARITY_PATH, "w", encoding="utf-8") as f:
        for text, p, s_ in zip(texts, pt, ps):
            f.write(
                json.dumps(
                    {
                        "text": text,
                        "tasks": {t: round(float(v), 7) for t, v in zip(TASKS, p)},
                        "needs_strong": round(float(s_), 7),
                    }
                )
                + "\n"
            )
    print(f"wrote {PARITY_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
