#!/usr/bin/env python3
"""Trains the classify function's model and writes crates/routing-core/models/classifier.json.

Usage (from the project root, with ../shared/data/ beside it):

    python3 -m venv /tmp/clsvenv && /tmp/clsvenv/bin/pip install -r scripts/requirements-train.txt
    /tmp/clsvenv/bin/python scripts/train-classifier.py

Features come from the Rust extractor itself (`cargo run --release -p routing-core --example
classifier-features -- extract-bin` and `-- signal`), so training and serving share one implementation. The run is
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
* needs_strong (the gain head): the expected quality gain of the strong tier over the weak one,
  max(0, strong - weak) in [0, 1], with the per-prompt weak/strong qualities that
  scripts/eval-routing defines (imported from it, not copied): real outcomes on MMLU
  (Mixtral-8x7B vs GPT-4: 1 exactly when only the strong model is right, as the old binary label),
  per-level expectations on MATH and FollowBench, one constant on Arena-Hard, none on the intents
  (BANKING77, CLINC150). A logistic regression with soft targets over the 13 length and structure
  values of crates/routing-core/src/classifier/signal.rs (from the `classifier-features signal`
  example), every source weighing the same. Chosen leave-one-source-out: each source scored by a
  model trained on the others, on scripts/eval-routing's own evaluation sample (never trained on),
  against prompt length and random with bootstrap intervals, beside other signals (the task
  extractor's dense features, hashed n-grams). The run writes that comparison to
  crates/routing-core/models/classifier-report.md.

Difficulty tiers come from needs_strong: hard from 1.5x the training mix's mean expected gain,
simple below 0.5x, medium between (absolute stop-gaps: quantiles of recent scores place them
better).

Task probabilities are temperature-scaled on the validation split. Splits: MMLU by a hash of the
prompt (70/15/15); BANKING77 train by hash (85/15) and its own test file; CLINC150 its own
train/val/test (with their out-of-scope parts); STS-B GLUE train by hash (85/15) and dev as test.
`--keep-task-head` reuses the model file's task head and retrains the gain head only.
"""

from __future__ import annotations

import argparse
import base64
import csv
import glob
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import random
import subprocess
import sys
from collections import Counter
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


# ------------------------------------------------------------------------------- the gain head
#
# needs_strong is the expected quality gain of the strong tier over the weak one for a prompt.
# Labels and sources are scripts/eval-routing's (imported, not copied): per prompt a weak and a
# strong expected quality; the target is max(0, strong - weak) in [0, 1], fitted as a soft label
# by a logistic regression (each row twice, as 1 with weight gain and as 0 with weight 1 - gain),
# every source weighing the same in total. Chosen by leave-one-source-out ranking (see
# write_report and models/classifier-report.md).

EVAL_ROUTING = ROOT / "scripts/eval-routing"
REPORT_PATH = ROOT / "crates/routing-core/models/classifier-report.md"
EVAL_SEED = 20261201  # scripts/eval-routing's default seed: its sample is the evaluation set
EVAL_PER_SOURCE = 500  # and its default --per-source
GAIN_CAP = 3000  # training prompts per source at most
GAIN_C = 1.0
_ER = None


def eval_routing():
    """scripts/eval-routing as a module: its sources, labels and metrics."""
    global _ER
    if _ER is None:
        loader = importlib.machinery.SourceFileLoader("eval_routing", str(EVAL_ROUTING))
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader("eval_routing", loader))
        sys.modules["eval_routing"] = module  # dataclasses look their module up
        loader.exec_module(module)
        _ER = module
    return _ER


def gain_data():
    """(training pools per source, evaluation items). The evaluation items are exactly
    scripts/eval-routing's default sample (500 per source, its seed, interleaved); the pools are
    every other labelled prompt: MMLU's classifier train/validation splits, BANKING77's and
    CLINC150's train splits (with the out-of-scope queries), and MATH, FollowBench, Arena-Hard and
    LLMFAO less the prompts in the evaluation sample (LLMFAO's 19 are all in it, so it is never
    trained on), at most GAIN_CAP per source (seeded sample)."""
    er = eval_routing()
    names = [s.name for s in er.SOURCES]
    evalset = er.assemble(DATA, names, EVAL_PER_SOURCE, EVAL_SEED)
    held = {(it.source, it.uid) for it in evalset}
    train_split = {
        "mmlu": lambda d: er.load_mmlu(d, "train"),
        "banking77": lambda d: er.load_banking77(d, "train"),
        "clinc150": lambda d: er.load_clinc150(d, "train"),
    }
    pools = {}
    for s in er.SOURCES:
        items = train_split.get(s.name, s.load)(DATA)
        items = [it for it in items if it.prompt.strip() and (it.source, it.uid) not in held]
        random.Random(f"{SEED}:gain:{s.name}").shuffle(items)
        pools[s.name] = items[:GAIN_CAP]
    return pools, evalset


def gain_target(items) -> np.ndarray:
    return np.array([min(1.0, max(0.0, it.strong - it.weak)) for it in items])


def signal_info() -> tuple[int, list[str]]:
    info = feature_info()
    return info["signal_version"], info["signal_names"]


def signal(texts: list[str]) -> np.ndarray:
    out = cargo_features("signal", texts)
    return np.array([json.loads(line) for line in out.decode("utf-8").splitlines()], dtype=np.float64)


def source_weights(sources: np.ndarray) -> np.ndarray:
    """Every source weighs 1 in total."""
    names, counts = np.unique(sources, return_counts=True)
    per = dict(zip(names, 1.0 / counts))
    return np.array([per[s] for s in sources])


def fit_gain(D: np.ndarray, y: np.ndarray, sources: np.ndarray, H=None, C: float = GAIN_C) -> dict:
    """The soft-label logistic regression over standardised dense columns D (and, for the
    comparison only, sparse columns H as they are). Parameters rounded to f32, as stored."""
    mean = f32(D.mean(axis=0)).astype(np.float64)
    scale = f32(np.where(D.std(axis=0) > 1e-6, D.std(axis=0), 1.0)).astype(np.float64)
    A = (D - mean) / scale
    if H is not None:
        A = sp.hstack([sp.csr_matrix(A), H]).tocsr()
        AA = sp.vstack([A, A]).tocsr()
    else:
        AA = np.vstack([A, A])
    w = source_weights(sources)
    n = len(y)
    ww = np.r_[w * y, w * (1 - y)]
    clf = LogisticRegression(C=C, max_iter=5000, tol=1e-7)
    clf.fit(AA, np.r_[np.ones(n), np.zeros(n)], sample_weight=ww * len(ww) / ww.sum())
    return {
        "mean": mean,
        "scale": scale,
        "weights": f32(clf.coef_[0]).astype(np.float64),
        "bias": float(f32(clf.intercept_)[0]),
    }


def gain_logit(head: dict, D: np.ndarray, H=None) -> np.ndarray:
    k = len(head["mean"])
    z = head["bias"] + ((D - head["mean"]) / head["scale"]) @ head["weights"][:k]
    if H is not None:
        z = z + H @ head["weights"][k:]
    return np.asarray(z).ravel()


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def loso_scores(cols, train_items, eval_items, C: float = GAIN_C) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-source-out scores of the evaluation items: each source is scored by a model fitted
    on every other source. `cols(items, which)` gives (dense, sparse or None) columns. Returns
    (raw, quantile): the model's own expected gain, and that gain's place in the distribution of
    the same model's scores over its own training mix (every source weighing the same), which puts
    the seven models on one scale the way quantile thresholds over recent traffic would."""
    src_tr = np.array([it.source for it in train_items])
    src_ev = np.array([it.source for it in eval_items])
    Dtr, Htr = cols(train_items, "train")
    Dev, Hev = cols(eval_items, "eval")
    y = gain_target(train_items)
    raw = np.zeros(len(eval_items))
    quant = np.zeros(len(eval_items))
    for s in sorted(set(src_ev)):
        m = src_tr != s
        e = src_ev == s
        head = fit_gain(Dtr[m], y[m], src_tr[m], None if Htr is None else Htr[m], C)
        held = gain_logit(head, Dev[e], None if Hev is None else Hev[e])
        ref = gain_logit(head, Dtr[m], None if Htr is None else Htr[m])
        order = np.argsort(ref, kind="stable")
        w = source_weights(src_tr[m])[order]
        raw[e] = sigmoid(held)
        quant[e] = np.interp(held, ref[order], np.cumsum(w) / w.sum())
    return raw, quant


def rank_metrics(eval_items, scores: dict[str, np.ndarray], replicates: int) -> dict:
    """scripts/eval-routing's metrics (APGR, CPT, Q95 with bootstrap intervals) per source and for
    the mixed workload, for the given scores beside its length, random and oracle rankings."""
    er = eval_routing()
    index = {id(it): i for i, it in enumerate(eval_items)}
    scorers = {
        name: (lambda v: lambda items, _rng: [float(v[index[id(it)]]) for it in items])(v)
        for name, v in scores.items()
    }
    scorers |= {k: er.SCORERS[k] for k in ("length", "random", "oracle")}
    groups = {s.name: [it for it in eval_items if it.source == s.name] for s in er.SOURCES}
    groups[er.MIXED] = list(eval_items)
    return {name: er.evaluate(g, scorers, replicates, EVAL_SEED) for name, g in groups.items()}


def signal_columns(names):
    """Column makers for the comparison: the shipped signal, its length terms alone, the 32 dense
    features of the task head's extractor, and those with the hashed n-grams."""
    cache = {}

    def sig(items):
        key = ("signal", id(items))
        if key not in cache:
            cache[key] = signal([it.prompt for it in items])
        return cache[key]

    def feats(items):
        key = ("features", id(items))
        if key not in cache:
            cache[key] = extract([it.prompt for it in items], feature_info()["dim"])
        return cache[key]

    length_cols = [names.index(n) for n in names if n.startswith("log_bytes")]
    return {
        "length and structure (shipped)": lambda items, _w: (sig(items), None),
        "length alone (log bytes, hinged)": lambda items, _w: (sig(items)[:, length_cols], None),
        "32 dense features of the task extractor": lambda items, _w: (feats(items)[:, :32].toarray(), None),
        "32 dense features + hashed n-grams": lambda items, _w: (feats(items)[:, :32].toarray(), feats(items)[:, 32:]),
    }


def ci_text(m: dict, pct: bool = False) -> str:
    if m.get("value") is None:
        return "n/a"
    f = (lambda x: f"{100 * x:.0f}%") if pct else (lambda x: f"{x:.3f}")
    ci = m.get("ci")
    return f"{f(m['value'])} [{f(ci[0])}–{f(ci[1])}]" if ci else f(m["value"])


def write_report(path: Path, command: str, main: dict, candidates: dict, head: dict, names: list[str],
                 thresholds: dict, pools: dict, eval_items, replicates: int, cand_replicates: int,
                 quality: dict) -> None:
    er = eval_routing()
    order = [s.name for s in er.SOURCES] + [er.MIXED]
    n_eval = Counter(it.source for it in eval_items)
    lines = [
        "# needs_strong: training report",
        "",
        "Written by `scripts/train-classifier.py`; reproduce with (from the project root, `../shared/data/` beside it):",
        "",
        "```",
        command,
        "```",
        "",
        "`needs_strong` is the expected quality gain of the strong tier over the weak one for a prompt, in [0, 1]: a",
        "logistic regression with soft targets over 13 length and structure values of the prompt",
        "(`crates/routing-core/src/classifier/signal.rs`). Labels are `scripts/eval-routing`'s per-source weak/strong",
        "expected qualities (real per-prompt outcomes on MMLU; per-level tables, partly assumed, on MATH and FollowBench;",
        "one constant on Arena-Hard; no gap on the intents; GPT-4-judged win rates on LLMFAO): the target is",
        "max(0, strong − weak). Every source weighs the same in training.",
        "",
        "## Leave one source out",
        "",
        "Each source's prompts are scored by a model trained on every *other* source (its whole source is left out, not",
        "just the prompts). Evaluation prompts are exactly `scripts/eval-routing`'s default sample (500 per source, seed",
        f"{EVAL_SEED}); training prompts never include them. Metrics are `scripts/eval-routing`'s (APGR, CPT(50%),",
        f"CPT(80%), Q95 = least strong share reaching 95% of strong-only quality), with {replicates} bootstrap resamples",
        "(95% percentile intervals; the random ranking redrawn in each, so its interval is the band chance lands in).",
        "",
        "**Mixed workload and the common scale.** The mixed workload ranks prompts of all sources together, each",
        "scored by a different leave-one-out model. Those seven models do not share a scale: each one's absolute level",
        "depends on which source it lacks. The headline puts them on one scale the way the router will use the score,",
        "with thresholds at quantiles of recent traffic: a prompt's score is the share of the model's own training mix",
        "(sources weighing the same) that scores below it. The *raw* column ranks by the models' expected gains as they",
        "are; it is shown because it is the harder test, and on it the signal does **not** beat length (see below).",
        "Within one source both give the same ranking.",
        "",
        "| source | n eval | n train (other sources) | APGR signal (LOSO) | APGR length | APGR random | APGR oracle | CPT(50%) signal / length | CPT(80%) signal / length | Q95 signal / length |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    total_train = sum(len(v) for v in pools.values())
    for name in order:
        r = main[name]["rankings"]
        ntr = total_train - len(pools.get(name, [])) if name != er.MIXED else "per source"
        lines.append(
            f"| {'**' + name + '**' if name == er.MIXED else name} | {main[name]['n']} | {ntr} "
            f"| {ci_text(r['signal']['apgr'])} | {ci_text(r['length']['apgr'])} | {ci_text(r['random']['apgr'])} "
            f"| {ci_text({'value': r['oracle']['apgr']['value']})} "
            f"| {ci_text({'value': r['signal']['cpt50']['value']}, True)} / {ci_text({'value': r['length']['cpt50']['value']}, True)} "
            f"| {ci_text({'value': r['signal']['cpt80']['value']}, True)} / {ci_text({'value': r['length']['cpt80']['value']}, True)} "
            f"| {ci_text({'value': r['signal']['q95']['value']}, True)} / {ci_text({'value': r['length']['q95']['value']}, True)} |"
        )
    rm = main[er.MIXED]["rankings"]
    lines += [
        "",
        f"Mixed workload on the raw scale (the seven models' expected gains as they are): APGR "
        f"{ci_text(rm['signal_raw']['apgr'])}, against length {ci_text(rm['length']['apgr'])}.",
        "",
        "APGR is undefined on BANKING77 and CLINC150 (weak = strong: no gap); they count in the mixed workload, where",
        "sending them to the strong model is pure cost. On Arena-Hard every prompt has the same label, so every ranking",
        "is 0.5 there. Within MATH and FollowBench even the oracle is close to 0.5: the per-level gap barely changes with",
        "the level, so the room for routing is between kinds of prompt (the mixed workload).",
        "",
        "## Signals compared (leave one source out)",
        "",
        f"Same protocol, {cand_replicates} bootstrap resamples; APGR with 95% intervals. \"q\" is the common-scale mixed",
        "workload (the headline above), \"raw\" the raw scale.",
        "",
        "| signal | mixed (q) | mixed (raw) | mmlu | math | followbench | llmfao |",
        "|---|---|---|---|---|---|---|",
    ]
    for cname, res in candidates.items():
        rk = {s: res[s]["rankings"] for s in res}
        lines.append(
            f"| {cname} | {ci_text(rk[er.MIXED]['signal']['apgr'])} | {ci_text(rk[er.MIXED]['signal_raw']['apgr'])} | "
            + " | ".join(ci_text(rk[s]["signal"]["apgr"]) for s in ("mmlu", "math", "followbench", "llmfao"))
            + " |"
        )
    base = next(iter(candidates.values()))
    lines.append(
        f"| *prompt length (characters), no model* | {ci_text(base[er.MIXED]['rankings']['length']['apgr'])} | same | "
        + " | ".join(ci_text(base[s]["rankings"]["length"]["apgr"]) for s in ("mmlu", "math", "followbench", "llmfao"))
        + " |"
    )
    lines += [
        "",
        "What each adds. Length alone, as a fitted model (log bytes with hinges), does a little worse on the mixed",
        "workload than ranking by raw length: a model fitted without one source can bend the length curve the wrong",
        "way for it. The task extractor's 32 dense features (word length, character fractions, cue-word lists, opening",
        "words) only tie length on the mixed workload: they help on MMLU and LLMFAO but their source-identifying",
        "contrasts misplace whole held-out sources. Adding the hashed word and character n-grams is worse again on MMLU",
        "(they learn which dataset a prompt comes from). The shipped 13 values, length with four hinges plus lines,",
        "code and math marks, LaTeX, digits, constraint words, multiple-choice options and the answer cue, are of the sets",
        "tried the only one that ranks whole kinds of prompt better than length on the mixed workload while tying it",
        "within each source.",
        "",
        "Subsets tried while developing the signal (a ridge regression on the gain, same folds and scale, 100",
        "resamples; not rerun by this script): length with its hinges alone 0.614 mixed; the shipped values plus code",
        "fences, `$` signs, list lines, question marks and the non-ASCII share 0.655 mixed but 0.514 on FollowBench,",
        "at the bottom of length's interval; the shipped values plus the five cue-word counts 0.660 mixed, FollowBench",
        "0.511, below it; the shipped 13 with ridge 0.675. A logistic regression on the same 13 gave the same picture",
        "and is what ships.",
        "",
        "Sentence embeddings (all-MiniLM-L6-v2, the fleet's own, through `cargo run --release -p minilm --example",
        "embed_lines`), same folds, scale and 200 resamples, a logistic regression on the 384 values alone or with the",
        "shipped 13 (not rerun by this script: embedding the 16,000 prompts takes about 15 minutes on two cores):",
        "embeddings alone 0.617 [0.606–0.628] mixed, MMLU 0.431 [0.350–0.504], FollowBench 0.503 [0.497–0.509];",
        "embeddings with the shipped values 0.636 [0.627–0.647] mixed, MMLU 0.445 [0.376–0.519], FollowBench 0.501",
        "[0.495–0.506]. They add nothing that transfers (they take away: they too learn which dataset a prompt comes",
        "from), so the shipped signal needs no embedding and the in-process path stays cheap.",
        "",
        "## The shipped model",
        "",
        f"Fitted on all sources' training prompts ({', '.join(f'{k} {len(v)}' for k, v in pools.items())}), C = {GAIN_C}.",
        "Weights are per standard deviation of each value (values are standardised with the mean and scale below).",
        "",
        "| value | mean | scale | weight |",
        "|---|---|---|---|",
    ]
    for i, n in enumerate(names):
        lines.append(f"| {n} | {head['mean'][i]:.4f} | {head['scale'][i]:.4f} | {head['weights'][i]:+.4f} |")
    lines += [
        f"| (bias) | | | {head['bias']:+.4f} |",
        "",
        f"Difficulty thresholds in the model file (0.5× and 1.5× the training mix's mean expected gain, as the",
        f"previous model used 0.5× and 1.5× MMLU's base rate): medium from {thresholds['medium_from']}, hard from",
        f"{thresholds['hard_from']}. They are absolute and only a stop-gap: tiers should be cut at quantiles of recent",
        "scores.",
        "",
        "## Per-tier quality",
        "",
        "Two more heads of the same form predict each tier's expected quality (`quality_weak`, `quality_strong` in the",
        "classify answer). Mean predicted against labelled quality on the evaluation sample (prompts never trained on;",
        "LLMFAO is a source never trained on):",
        "",
        "| source | n | weak: labelled / predicted | strong: labelled / predicted |",
        "|---|---|---|---|",
        *[
            f"| {k} | {v['n']} | {v['weak_label']:.2f} / {v['weak_predicted']:.2f} | {v['strong_label']:.2f} / {v['strong_predicted']:.2f} |"
            for k, v in quality.items()
        ],
        "",
        "These are the levels of the training labels (assumed per-level tables on MATH and FollowBench, a constant on",
        "Arena-Hard), not measured quality of the catalogue's models; the policy does not read them yet.",
        "",
        "## Where it falls short",
        "",
        "- The common-scale mixed figure is the headline; on the raw scale (absolute expected gains of models that never",
        "  saw the source) the signal is below length: the level a model gives an unseen kind of prompt is not reliable,",
        "  its ranking within the traffic it is used on is.",
        "- Per source the signal only ties length on MATH and FollowBench (both near 0.5, as is the oracle there) and is",
        "  within length's wide interval on MMLU and LLMFAO (19 prompts).",
        "- MATH and FollowBench labels are per-level tables partly assumed (see `scripts/eval-routing`); Arena-Hard's are",
        "  one constant; only MMLU has real per-prompt outcomes.",
        "- Within MMLU the signal, like length, stays inside random's band: it has no transferable signal for which",
        "  exam questions the weak model misses.",
        "- The model file's absolute tier thresholds send most non-intent traffic to the strong tier (see",
        "  `scripts/eval-routing`); the operating point is for quantile thresholds to set, not this score's level.",
        "- Per-tier quality is predicted for two tiers only, not per catalogue model, and nothing consumes it yet.",
        "- The feature set was chosen after comparing a few subsets on these same leave-one-out figures, so they are",
        "  somewhat optimistic for a truly new source.",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def train_task_head(info: dict, data: dict, feats: dict) -> dict:
    """The task head (see the module doc): weights, bias, temperature, C and validation figures."""
    dim = info["dim"]
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

    zt = (Xt["val"] @ W.T + b) / task_t
    pt = np.exp(zt - zt.max(axis=1, keepdims=True))
    pt /= pt.sum(axis=1, keepdims=True)
    return {
        "W": W,
        "b": b,
        "temperature": round(task_t, 6),
        "c": task_c,
        "validation": {
            "task_accuracy": round(float(np.mean((pt.argmax(1) == y["val"])[sw["val"] == 1])), 4),
            "task_log_loss": round(float(log_loss(y["val"], pt, labels=[0, 1, 2], sample_weight=sw["val"])), 4),
        },
    }


def kept_task_head(dim: int) -> dict:
    """The task head of the current model file, for retraining the gain head alone."""
    old = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    if old["tasks"] != TASKS or old["dim"] != dim or old["feature_fingerprint"] != feature_info()["fingerprint"]:
        sys.exit("--keep-task-head: the model file's task head is for other features or tasks; retrain it")
    W = np.frombuffer(base64.b64decode(old["task_weights"]), dtype="<f4").astype(np.float64).reshape(len(TASKS), dim)
    training = old.get("training", {})
    return {
        "W": W,
        "b": np.array(old["task_bias"], dtype=np.float64),
        "temperature": old["task_temperature"],
        "c": training.get("task_c"),
        "validation": {k: v for k, v in training.get("validation", {}).items() if k.startswith("task_")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep-task-head", action="store_true",
                    help="reuse the model file's task head and retrain the gain head only")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the report (default 1000)")
    ap.add_argument("--candidate-bootstrap", type=int, default=200,
                    help="bootstrap resamples of the signal comparison (default 200)")
    args = ap.parse_args()
    command = "python scripts/train-classifier.py" + "".join(f" {a}" for a in sys.argv[1:])

    info = feature_info()
    dim = info["dim"]
    print(f"features v{info['feature_version']} dim {dim} fingerprint {info['fingerprint']}")
    print(f"signal v{info['signal_version']}: {', '.join(info['signal_names'])}")
    data = datasets()
    for split, rows in data.items():
        counts = {t: sum(1 for r in rows if r.task == t) for t in TASKS}
        counts["soft"] = sum(1 for r in rows if r.soft is not None)
        print(f"{split}: {len(rows)} rows, tasks {counts}")
    if args.keep_task_head:
        task = kept_task_head(dim)
        print("task head kept from", MODEL_PATH.relative_to(ROOT))
    else:
        feats = {split: extract([r.text for r in rows], dim) for split, rows in data.items()}
        task = train_task_head(info, data, feats)
    W, b, task_t = task["W"], task["b"], task["temperature"]

    # Gain head: leave-one-source-out comparison and report, then the model on every source.
    print("gain head")
    names = info["signal_names"]
    pools, eval_items = gain_data()
    train_items = [it for v in pools.values() for it in v]
    print("  training prompts", {k: len(v) for k, v in pools.items()}, "evaluation prompts", len(eval_items))
    columns = signal_columns(names)
    candidates = {}
    main_scores = None
    for cname, cols in columns.items():
        raw, quant = loso_scores(cols, train_items, eval_items)
        if main_scores is None:
            main_scores = (raw, quant)
        candidates[cname] = rank_metrics(eval_items, {"signal": quant, "signal_raw": raw}, args.candidate_bootstrap)
        r = candidates[cname]["mixed"]["rankings"]
        print(f"  {cname}: mixed APGR {ci_text(r['signal']['apgr'])} (raw {ci_text(r['signal_raw']['apgr'])}),"
              f" length {ci_text(r['length']['apgr'])}", flush=True)
    report = rank_metrics(eval_items, {"signal": main_scores[1], "signal_raw": main_scores[0]}, args.bootstrap)

    S = signal([it.prompt for it in train_items])
    src = np.array([it.source for it in train_items])
    y = gain_target(train_items)
    head = fit_gain(S, y, src)
    # Per-tier quality: the same soft-label regression on each tier's expected quality.
    q_heads = {t: fit_gain(S, np.array([getattr(it, t) for it in train_items]), src) for t in ("weak", "strong")}
    S_ev = signal([it.prompt for it in eval_items])
    quality_check = {
        name: {
            "n": int(m.sum()),
            **{f"{t}_label": float(np.mean([getattr(it, t) for it, k in zip(eval_items, m) if k])) for t in ("weak", "strong")},
            **{f"{t}_predicted": float(sigmoid(gain_logit(q_heads[t], S_ev[m])).mean()) for t in ("weak", "strong")},
        }
        for name in sorted({it.source for it in eval_items})
        for m in [np.array([it.source == name for it in eval_items])]
    }
    w_src = source_weights(src)
    mean_gain = float(np.sum(w_src * y) / np.sum(w_src))
    thresholds = {"medium_from": round(0.5 * mean_gain, 4), "hard_from": round(1.5 * mean_gain, 4)}
    write_report(REPORT_PATH, command, report, candidates, head, names, thresholds, pools, eval_items,
                 args.bootstrap, args.candidate_bootstrap, quality_check)
    print(f"wrote {REPORT_PATH.relative_to(ROOT)}")
    mixed = report["mixed"]["rankings"]
    loso = {
        "mixed_apgr": round(mixed["signal"]["apgr"]["value"], 4),
        "mixed_apgr_raw_scale": round(mixed["signal_raw"]["apgr"]["value"], 4),
        "mixed_apgr_length": round(mixed["length"]["apgr"]["value"], 4),
    }

    digest = hashlib.sha256(b64(W).encode() + b64(head["weights"]).encode()).hexdigest()[:10]
    model = {
        "format": MODEL_FORMAT,
        "format_version": 2,
        "id": f"lexlr-f{info['feature_version']}-gain-s{info['signal_version']}-{digest}",
        "feature_version": info["feature_version"],
        "feature_fingerprint": info["fingerprint"],
        "dim": dim,
        "tasks": TASKS,
        "task_temperature": task_t,
        "task_bias": [float(v) for v in f32(b)],
        "gain": {
            "target": "expected quality gain of the strong tier over the weak one, max(0, strong - weak)",
            "signal_version": info["signal_version"],
            "features": names,
            "mean": [float(v) for v in head["mean"]],
            "scale": [float(v) for v in head["scale"]],
            "weights": [float(v) for v in head["weights"]],
            "bias": head["bias"],
            "quality": {
                t: {"weights": [float(v) for v in q_heads[t]["weights"]], "bias": q_heads[t]["bias"]}
                for t in ("weak", "strong")
            },
        },
        "difficulty_thresholds": thresholds,
        "training": {
            "script": "scripts/train-classifier.py",
            "command": command,
            "seed": SEED,
            "data": "../shared/data/ (RouteLLM MMLU, BANKING77, CLINC150, STS-B sentences; for the gain head also "
            "MATH, FollowBench, Arena-Hard, with scripts/eval-routing's labels)",
            "rows": {s: len(r) for s, r in data.items()},
            "task_c": task["c"],
            "gain_c": GAIN_C,
            "gain_rows": {k: len(v) for k, v in pools.items()},
            "gain_mean_target": round(mean_gain, 4),
            "validation": task["validation"],
            "leave_one_source_out": loso,
            "report": str(REPORT_PATH.relative_to(ROOT)),
        },
        "task_weights": b64(W),
    }
    MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    MODEL_PATH.write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {MODEL_PATH.relative_to(ROOT)} ({MODEL_PATH.stat().st_size} bytes), id {model['id']}")

    # Parity fixture: the probabilities and gains this script computes (float64 over the stored
    # f32 parameters); a Rust test checks that the served model gives the same.
    pick = random.Random(SEED)
    sample = pick.sample([r for r in data["test"] if r.task is not None], 40)
    texts = [r.text for r in sample] + [it.prompt for it in random.Random(SEED).sample(eval_items, 24)] + [
        "",
        "hi",
        "explain this system design in simple terms",
        "Classify the sentiment of this review: great phone",
        "Write exactly three sentences about tea. Do not use commas; at least one must rhyme.",
        "Prove that $\\sum_{k=1}^n k = n(n+1)/2$ for every n >= 1.",
        "```python\ndef f(x):\n    return x * 2\n```\nWhy does this fail on strings?",
    ]
    X = extract(texts, dim)
    zt = (X @ W.T + b) / task_t
    pt = np.exp(zt - zt.max(axis=1, keepdims=True))
    pt /= pt.sum(axis=1, keepdims=True)
    S_fix = signal(texts)
    ps = sigmoid(gain_logit(head, S_fix))
    pq = {t: sigmoid(gain_logit(q_heads[t], S_fix)) for t in ("weak", "strong")}
    PARITY_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(PARITY_PATH, "w", encoding="utf-8") as f:
        for text, p, s_, qw, qs in zip(texts, pt, ps, pq["weak"], pq["strong"]):
            f.write(
                json.dumps(
                    {
                        "text": text,
                        "tasks": {t: round(float(v), 7) for t, v in zip(TASKS, p)},
                        "needs_strong": round(float(s_), 9),
                        "quality_weak": round(float(qw), 9),
                        "quality_strong": round(float(qs), 9),
                    }
                )
                + "\n"
            )
    print(f"wrote {PARITY_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
