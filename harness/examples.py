"""Small example data written for this project (no third-party text), built deterministically.

Four sets in the shapes of the built-in tasks, for the demo and the tests:
news (cnn_dailymail columns), papers (pubmed columns), medical QA (medquad's local columns)
and HellaSwag-format items (hub columns: ctx_a/ctx_b, WikiHow-style markup in some).
The texts follow templates, so a tiny model can learn them in a few hundred steps.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

CITIES = ["Avonford", "Brightwater", "Calder", "Dunmore", "Eastwick", "Fairhaven", "Glenrock",
          "Harrow", "Ivybridge", "Kestrel", "Lakemont", "Marlow", "Northby", "Oakridge"]
FIRMS = ["Northwind", "Bluepeak", "Copperline", "Greenfield", "Silverlake", "Redstone",
         "Ironbridge", "Sunhill", "Clearwater", "Stonegate"]
SITES = ["factory", "warehouse", "research centre", "hospital wing", "rail depot", "school",
         "solar farm", "data centre"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
DISEASES = ["gravel fever", "marsh cough", "copper rash", "river flu", "stone ache",
            "amber palsy", "winter gout", "salt anemia", "ridge syndrome", "lantern blight"]
SIGNS = ["fever", "tiredness", "headache", "joint pain", "a dry cough", "skin spots",
         "poor sleep", "weight loss", "dizziness", "a sore throat"]
CURES = ["rest and fluids", "a short course of antibiotics", "physical therapy",
         "a low salt diet", "daily stretching", "iron tablets"]
COMPOUNDS = ["zelomab", "tricorin", "valdexine", "hepatrol", "minoquil", "sorafen"]
CONDITIONS = ["chronic kidney disease", "type 2 diabetes", "mild asthma", "hypertension",
              "osteoarthritis", "migraine"]
ACTIVITIES = ["Making tea", "Washing a car", "Painting a fence", "Riding a bike", "Baking bread",
              "Planting a tree", "Tying a tie", "Cleaning windows"]
ACTORS = ["a man", "a woman", "the boy", "the girl", "an old man", "two friends"]
ACTIONS = ["picks up a brush", "fills a bucket with water", "opens the oven door",
           "lifts the shovel", "pours hot water into a cup", "turns the handle",
           "wipes the glass with a cloth", "puts on a helmet", "kneads the dough",
           "pulls the cloth tight", "digs a small hole", "checks the front wheel"]


def news(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        city, firm, site = rng.choice(CITIES), rng.choice(FIRMS), rng.choice(SITES)
        jobs, cost, day = rng.randint(2, 90) * 10, rng.randint(3, 60), rng.choice(DAYS)
        year = rng.randint(2026, 2030)
        article = (
            f"{firm} will open a new {site} in {city}, the company said on {day}. "
            f"The {site} will cost {cost} million pounds and employ {jobs} people when it opens "
            f"in {year}. Local leaders in {city} welcomed the plan, saying the jobs were badly "
            f"needed. A spokesperson for {firm} said the site was chosen for its road and rail "
            f"links. Building work is expected to start later this year, and the council will "
            f"review the final design next month. Some residents raised concerns about traffic "
            f"near the {site}, and {firm} promised to pay for a new junction."
        )
        highlights = (f"{firm} will open a {site} in {city}.\n"
                      f"The {site} will employ {jobs} people from {year}.")
        rows.append({"id": f"news-{i:04d}", "article": article, "highlights": highlights})
    return rows


def papers(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed + 1)
    rows = []
    for i in range(n):
        drug, cond = rng.choice(COMPOUNDS), rng.choice(CONDITIONS)
        pts, weeks, pct = rng.randint(4, 60) * 10, rng.randint(4, 52), rng.randint(5, 45)
        article = "\n".join([
            f"{cond} affects many adults and current treatments are of limited benefit .",
            f"we studied {drug} in a randomised trial of {pts} patients with {cond} .",
            f"patients received {drug} or placebo for {weeks} weeks .",
            f"the primary outcome was the change in symptom score at {weeks} weeks .",
            f"symptom scores fell by {pct} percent more with {drug} than with placebo .",
            "adverse events were mild and similar in both groups .",
            "further trials with longer follow up are needed .",
        ])
        abstract = (f"in a trial of {pts} patients with {cond} , {drug} for {weeks} weeks "
                    f"lowered symptom scores by {pct} percent more than placebo .\n"
                    f"{drug} was well tolerated .")
        rows.append({"article_id": f"paper-{i:04d}", "article": article, "abstract": abstract})
    return rows


def medical_qa(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed + 2)
    rows = []
    for i in range(n):
        disease = DISEASES[i % len(DISEASES)]
        kind = ["symptoms", "treatment", "information"][(i // len(DISEASES)) % 3]
        signs = rng.sample(SIGNS, 3)
        cure = rng.choice(CURES)
        if kind == "symptoms":
            q = f"What are the symptoms of {disease} ?"
            a = f"The symptoms of {disease} include {signs[0]}, {signs[1]} and {signs[2]}."
        elif kind == "treatment":
            q = f"What are the treatments for {disease} ?"
            a = f"{disease.capitalize()} is treated with {cure}. Most people recover in weeks."
        else:
            q = f"What is (are) {disease} ?"
            a = (f"{disease.capitalize()} is a rare illness that causes {signs[0]} "
                 f"and {signs[1]}. It is not contagious.")
        rows.append({"qid": f"qa-{i:04d}", "question": q, "answer": a, "qtype": kind})
    return rows


def hellaswag_items(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """HellaSwag-format rows (hub columns), some with WikiHow markup and double spaces."""
    rng = random.Random(seed + 3)
    rows = []
    for i in range(n):
        label = rng.randrange(4)
        actor, act = rng.choice(ACTORS), rng.choice(ACTIVITIES)
        ctx_a = f"{actor.capitalize()} is {act.lower()} outside.  {actor.capitalize()} smiles."
        ctx_b = f"{actor}"
        if i % 5 == 0:  # WikiHow-style item
            ctx_a = f"[header] {act} [title] Get ready. [step] {ctx_a}"
        endings = rng.sample(ACTIONS, 4)
        if i % 7 == 0:
            endings[rng.randrange(4)] += " [substeps] then stops."
        rows.append({"ind": i, "activity_label": act, "ctx_a": ctx_a, "ctx_b": ctx_b,
                     "ctx": f"{ctx_a} {ctx_b}", "endings": endings, "label": str(label),
                     "split": "val", "split_type": "indomain", "source_id": f"ex-{i}"})
    return rows


def corpus() -> list[str]:
    """Text to train the tiny tokenizer on."""
    texts = [r["article"] + "\n" + r["highlights"] for r in news(60)]
    texts += [r["article"] + "\n" + r["abstract"] for r in papers(60)]
    texts += [r["question"] + " " + r["answer"] for r in medical_qa(60)]
    texts += [r["ctx_a"] + " " + " ".join(r["endings"]) for r in hellaswag_items(60)]
    texts += ["Question: Answer: Summary: Article: [INST] [/INST] Summarize the following news "
              "article: You are a helpful assistant who writes concise, factual summaries."]
    return texts


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def write_all(folder: Path, n: int = 40) -> dict[str, Path]:
    """Write one file per built-in task; returns task name -> path for `--data`."""
    return {
        "cnn_dailymail": write_jsonl(news(n), folder / "news.jsonl"),
        "pubmed": write_jsonl(papers(n), folder / "papers.jsonl"),
        "medquad": write_jsonl(medical_qa(n), folder / "medical_qa.jsonl"),
        "hellaswag": write_jsonl(hellaswag_items(n), folder / "hellaswag.jsonl"),
    }
