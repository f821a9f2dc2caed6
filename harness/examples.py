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
    """Project-written news articles with highlights, n of them (CNN/DailyMail's shape)."""
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


def news_varied(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """News in the cnn_dailymail columns whose articles and highlights vary in wording and in
    which facts the highlights keep, as real highlights do: a model can learn the style (two
    short factual lines) but not guess every word, so scores stay below 100%.
    """
    rng = random.Random(seed + 5)
    rows = []
    for i in range(n):
        city, firm, site = rng.choice(CITIES), rng.choice(FIRMS), rng.choice(SITES)
        jobs, cost, day = rng.randint(2, 90) * 10, rng.randint(3, 60), rng.choice(DAYS)
        year, other = rng.randint(2026, 2030), rng.choice([c for c in CITIES if c != city])
        opening = rng.choice([
            f"{firm} will open a new {site} in {city}, the company said on {day}.",
            f"The company {firm} announced on {day} that it will build a {site} in {city}.",
            f"A new {site} is coming to {city}: {firm} confirmed its plans on {day}.",
        ])
        facts = {
            "cost": f"The {site} will cost {cost} million pounds.",
            "jobs": f"It will employ {jobs} people when it opens in {year}.",
            "rival": f"{firm} had also considered a site in {other}.",
            "traffic": f"Some residents raised concerns about traffic near the {site}.",
        }
        article = " ".join([
            opening, facts["cost"], facts["jobs"],
            f"Local leaders in {city} welcomed the plan, saying the jobs were badly needed.",
            facts["rival"],
            f"A spokesperson said {city} was chosen for its road and rail links.",
            facts["traffic"],
            f"{firm} promised to pay for a new junction, and the council will review the "
            f"final design next month.",
        ])
        first = rng.choice([f"{firm} will open a {site} in {city}.",
                            f"{firm} plans a new {site} in {city}.",
                            f"{city} is to get a {site} built by {firm}."])
        second = rng.choice([
            f"The {site} will employ {jobs} people from {year}.",
            f"It will cost {cost} million pounds and create {jobs} jobs.",
            f"{firm} chose {city} over {other}.",
            f"Residents worry about traffic; {firm} will pay for a junction.",
        ])
        rows.append({"id": f"story-{i:04d}", "article": article,
                     "highlights": f"{first}\n{second}"})
    return rows


def papers(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Project-written paper-like articles with abstracts, n of them (PubMed's shape)."""
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
    """Project-written medical question/answer pairs, n of them (MedQuAD's shape)."""
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


def commonsense_items(seed: int = 0) -> list[dict[str, Any]]:
    """HellaSwag-format items with one sensible ending: the forgetting probe of the real-model
    demo. The three wrong endings are other scenes' endings, so a language model that follows
    the context picks the right one well above chance (a quarter).
    """
    rng = random.Random(seed + 4)
    rows = []
    for i, (activity, context, subject, ending) in enumerate(EVERYDAY):
        others = [e[3] for j, e in enumerate(EVERYDAY) if j != i]
        endings = rng.sample(others, 3)
        label = rng.randrange(4)
        endings.insert(label, ending)
        rows.append({"ind": i, "activity_label": activity, "ctx_a": context, "ctx_b": subject,
                     "ctx": f"{context} {subject}", "endings": endings, "label": str(label),
                     "split": "val", "split_type": "indomain", "source_id": f"everyday-{i}"})
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
    """Write rows as JSON lines; returns the path."""
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


# (activity, context, subject, the sensible ending); written for this project.
EVERYDAY = [
    (
        "Making tea",
        "A woman fills a kettle with water and sets it on the stove. When the kettle whistles,",
        "she",
        "pours the hot water into a mug with a tea bag.",
    ),
    (
        "Washing a car",
        "A man sprays his dusty car with a hose and fills a bucket with soapy water. Then",
        "he",
        "scrubs the doors with a big sponge.",
    ),
    (
        "Painting a fence",
        "A girl dips a wide brush into a can of white paint. Standing by the wooden fence,",
        "she",
        "spreads the paint along the boards in long strokes.",
    ),
    (
        "Riding a bike",
        "A boy puts on his helmet and wheels his bicycle to the road. Climbing onto the seat,",
        "he",
        "pushes the pedals and rides down the street.",
    ),
    (
        "Baking bread",
        "A baker mixes flour, water and yeast in a bowl and lets the dough rise. An hour later,",
        "the baker",
        "shapes the dough into a loaf and puts it in the oven.",
    ),
    (
        "Planting a tree",
        "Two friends dig a deep hole in the garden and lower a young tree into it. Next,",
        "they",
        "fill the hole with soil and water the tree.",
    ),
    (
        "Brushing teeth",
        "A man squeezes toothpaste onto his toothbrush in front of the bathroom mirror. Then",
        "he",
        "brushes his teeth and rinses his mouth with water.",
    ),
    (
        "Making a sandwich",
        "A woman lays two slices of bread on a plate and opens a jar of peanut butter. With a "
        "knife,",
        "she",
        "spreads peanut butter on one slice of bread.",
    ),
    (
        "Mowing the lawn",
        "A man pulls the cord on the lawn mower and the engine starts. Holding the handle,",
        "he",
        "pushes the mower back and forth across the grass.",
    ),
    (
        "Washing dishes",
        "A boy fills the sink with warm soapy water and drops in the dirty plates. Taking a "
        "sponge,",
        "he",
        "scrubs each plate and sets it on the rack to dry.",
    ),
    (
        "Tying shoes",
        "A little girl sits on the step and pulls on her sneakers. Taking the laces in her hands,",
        "she",
        "ties them into a neat bow.",
    ),
    (
        "Ironing a shirt",
        "A man lays a wrinkled shirt flat on the ironing board and waits for the iron to heat up."
        " Then",
        "he",
        "presses the iron over the shirt until the wrinkles are gone.",
    ),
    (
        "Walking the dog",
        "A woman clips a leash onto her dog's collar and opens the front door. Outside,",
        "they",
        "walk together down the sidewalk to the park.",
    ),
    (
        "Changing a tire",
        "A man parks his car on the shoulder because a tire is flat. He loosens the nuts and "
        "jacks up the car, and then",
        "he",
        "takes off the flat tire and puts on the spare.",
    ),
    (
        "Swimming",
        "A girl in a swimsuit stands at the edge of the pool and adjusts her goggles. A moment "
        "later,",
        "she",
        "dives into the water and swims a lap.",
    ),
    (
        "Cooking pasta",
        "A cook brings a large pot of salted water to a boil. Once it is bubbling,",
        "the cook",
        "adds the pasta and stirs it with a wooden spoon.",
    ),
    (
        "Reading a book",
        "An old man sits in his armchair by the lamp and opens a thick novel. Putting on his "
        "glasses,",
        "he",
        "begins to read the first chapter.",
    ),
    (
        "Sweeping the floor",
        "A woman sees crumbs all over the kitchen floor and takes a broom from the closet. Then",
        "she",
        "sweeps the crumbs into a dustpan and empties it in the bin.",
    ),
    (
        "Building a snowman",
        "Two children roll a big ball of snow across the yard and set a smaller ball on top of "
        "it. Next,",
        "they",
        "add a carrot nose and two stones for eyes.",
    ),
    (
        "Fishing",
        "A man sits in a small boat on the lake and baits his hook with a worm. Then",
        "he",
        "casts the line into the water and waits for a bite.",
    ),
    (
        "Wrapping a gift",
        "A woman sets a box on a sheet of colourful paper and cuts the paper to size. Next,",
        "she",
        "folds the paper around the box and tapes it shut.",
    ),
    (
        "Doing laundry",
        "A man carries a basket of dirty clothes to the washing machine. After loading the "
        "clothes,",
        "he",
        "adds detergent and presses the start button.",
    ),
    (
        "Flying a kite",
        "A boy runs across the windy beach holding the string of a red kite. As the wind catches "
        "it,",
        "the kite",
        "rises high into the sky.",
    ),
    (
        "Playing the piano",
        "A girl sits down at the piano and opens her music book to the first page. Placing her "
        "fingers on the keys,",
        "she",
        "plays a slow and gentle melody.",
    ),
    (
        "Shaving",
        "A man spreads shaving foam over his cheeks and chin in front of the mirror. Then",
        "he",
        "runs the razor carefully along his jaw.",
    ),
    (
        "Watering plants",
        "A woman notices that the flowers on her balcony are drooping in the heat. Filling a "
        "watering can at the tap,",
        "she",
        "waters each pot until the soil is damp.",
    ),
    (
        "Making coffee",
        "A man puts a paper filter into the coffee maker and adds a scoop of ground coffee. After"
        " pouring in water,",
        "he",
        "switches the machine on and waits for the coffee to brew.",
    ),
    (
        "Cutting hair",
        "A barber drapes a cape over his customer and combs the customer's hair straight. Picking"
        " up the scissors,",
        "the barber",
        "trims the hair neatly around the ears.",
    ),
    (
        "Climbing a ladder",
        "A man leans a ladder against the house to reach a gutter full of leaves. Making sure it "
        "is steady,",
        "he",
        "climbs up and pulls the leaves out of the gutter.",
    ),
    (
        "Setting the table",
        "A girl takes plates and forks from the cupboard because dinner is almost ready. In the "
        "dining room,",
        "she",
        "places a plate, a fork and a glass at each seat.",
    ),
    (
        "Carving a pumpkin",
        "A boy cuts the top off a large orange pumpkin and scoops out the seeds. With a small "
        "knife,",
        "he",
        "carves two eyes and a grinning mouth into the front.",
    ),
    (
        "Skiing",
        "A woman clicks her boots into her skis at the top of the snowy slope. Pushing off with "
        "her poles,",
        "she",
        "glides down the hill, turning from side to side.",
    ),
    (
        "Lighting a campfire",
        "Two friends stack dry sticks and small logs in a ring of stones. Striking a match,",
        "they",
        "light the kindling and blow gently until the fire catches.",
    ),
    (
        "Hanging a picture",
        "A man holds a framed photo against the wall and marks the spot with a pencil. Then",
        "he",
        "hammers a nail into the mark and hangs the frame on it.",
    ),
    (
        "Peeling potatoes",
        "A cook sets a bag of potatoes beside the sink and picks up a peeler. One by one,",
        "the cook",
        "peels the potatoes and drops them into a pot of water.",
    ),
    (
        "Brushing a horse",
        "A girl leads a brown horse out of its stall and ties it to a post. Taking a soft brush,",
        "she",
        "brushes the horse's coat until it shines.",
    ),
    (
        "Sewing a button",
        "A woman finds that a button has come off her coat. Threading a needle,",
        "she",
        "sews the button back onto the coat.",
    ),
    (
        "Making pancakes",
        "A man whisks eggs, milk and flour into a smooth batter and heats a pan. Then",
        "he",
        "pours a ladle of batter into the pan and flips the pancake when it bubbles.",
    ),
    (
        "Jump rope",
        "A girl holds the handles of a jump rope at her sides on the playground. Swinging the "
        "rope over her head,",
        "she",
        "jumps each time it passes under her feet.",
    ),
    (
        "Cleaning windows",
        "A man sprays glass cleaner on the dirty window of his living room. With a dry cloth,",
        "he",
        "wipes the glass until it is clear.",
    ),
    (
        "Packing a suitcase",
        "A woman opens her suitcase on the bed the night before her trip. Taking clothes from the"
        " wardrobe,",
        "she",
        "folds them and packs them neatly inside.",
    ),
    (
        "Feeding a baby",
        "A father sits the baby in a high chair and opens a jar of mashed carrots. With a small "
        "spoon,",
        "he",
        "feeds the baby one mouthful at a time.",
    ),
    (
        "Making a bed",
        "A boy gets up in the morning and pulls the sheet straight over the mattress. Then",
        "he",
        "spreads the blanket on top and puts the pillow at the head.",
    ),
    (
        "Shoveling snow",
        "A woman opens her front door to find the path covered in deep snow. Grabbing a shovel,",
        "she",
        "clears the snow from the path to the street.",
    ),
    (
        "Playing basketball",
        "A boy dribbles the basketball toward the hoop while his friend tries to block him. "
        "Jumping high,",
        "he",
        "shoots the ball and it drops through the net.",
    ),
    (
        "Decorating a cake",
        "A baker lets the chocolate cake cool on a rack and fills a bag with icing. Then",
        "the baker",
        "pipes swirls of icing around the top of the cake.",
    ),
    (
        "Chopping wood",
        "A man sets a log on the chopping block and grips his axe with both hands. Raising the "
        "axe,",
        "he",
        "splits the log in two with one strong swing.",
    ),
    (
        "Taking a photo",
        "A woman sees a beautiful sunset over the sea and takes out her camera. Holding it steady,",
        "she",
        "frames the view and presses the shutter button.",
    ),
    (
        "Blowing out candles",
        "Friends carry a birthday cake with lit candles to the table and sing to the girl. When "
        "the song ends,",
        "she",
        "makes a wish and blows out the candles.",
    ),
    (
        "Grocery shopping",
        "A man pushes a cart through the supermarket with a list in his hand. At the fruit "
        "section,",
        "he",
        "picks out six apples and puts them in a bag.",
    ),
    (
        "Washing hands",
        "A nurse turns on the tap and wets her hands under the warm water. Then",
        "she",
        "rubs soap between her fingers and rinses her hands clean.",
    ),
    (
        "Painting a picture",
        "An artist sets a blank canvas on the easel and squeezes paint onto a palette. Dipping a "
        "brush in blue,",
        "he",
        "paints the sky across the top of the canvas.",
    ),
    (
        "Raking leaves",
        "A girl sees the lawn covered with fallen autumn leaves. Taking a rake from the shed,",
        "she",
        "gathers the leaves into a big pile.",
    ),
    (
        "Pouring cereal",
        "A boy takes a bowl from the cupboard and a box of cereal from the shelf. After filling "
        "the bowl with cereal,",
        "he",
        "pours milk over it and picks up a spoon.",
    ),
    (
        "Opening a jar",
        "A woman tries to open a jar of pickles but the lid is stuck. Running the lid under hot "
        "water,",
        "she",
        "twists it again and the lid comes off.",
    ),
    (
        "Fixing a leak",
        "A plumber kneels under the sink where water is dripping from a pipe. With a wrench,",
        "the plumber",
        "tightens the loose joint until the dripping stops.",
    ),
    (
        "Playing fetch",
        "A man throws a tennis ball across the park for his dog. Running after it,",
        "the dog",
        "catches the ball and brings it back to him.",
    ),
    (
        "Writing a letter",
        "A girl sits at her desk with a sheet of paper and a pen to write to her grandmother. "
        "When the letter is finished,",
        "she",
        "folds it into an envelope and writes the address.",
    ),
    (
        "Boiling eggs",
        "A man places four eggs in a pot of water and turns on the heat. After ten minutes,",
        "he",
        "lifts the eggs out with a spoon and cools them in cold water.",
    ),
    (
        "Mopping the floor",
        "A janitor fills a bucket with soapy water and wheels it into the hallway. Dipping the "
        "mop in the bucket,",
        "he",
        "mops the floor in wide strokes.",
    ),
    (
        "Putting on makeup",
        "A woman sits in front of a mirror with her makeup bag open. Picking up a small brush,",
        "she",
        "applies a little powder to her cheeks.",
    ),
    (
        "Rowing a boat",
        "Two friends climb into a small rowing boat tied at the dock. Untying the rope,",
        "they",
        "row out to the middle of the lake.",
    ),
    (
        "Vacuuming",
        "A man plugs in the vacuum cleaner and switches it on in the living room. Then",
        "he",
        "pushes it slowly over the carpet to pick up the dust.",
    ),
    (
        "Juggling",
        "A street performer tosses three balls into the air one after another. Keeping his eyes "
        "on them,",
        "he",
        "catches each ball and throws it up again.",
    ),
    (
        "Making a salad",
        "A woman washes lettuce, tomatoes and a cucumber at the sink. On the cutting board,",
        "she",
        "chops the vegetables and tosses them in a bowl.",
    ),
    (
        "Catching a bus",
        "A man sees his bus pulling up at the stop down the street. Waving his arm,",
        "he",
        "runs to the stop and climbs aboard before the doors close.",
    ),
    (
        "Grilling burgers",
        "A man lights the grill in the backyard and sets out a plate of raw patties. When the "
        "grill is hot,",
        "he",
        "lays the patties on the grate and flips them after a few minutes.",
    ),
    (
        "Wiping a table",
        "After dinner, a girl sees crumbs and spilled juice on the kitchen table. Taking a damp "
        "cloth,",
        "she",
        "wipes the table clean.",
    ),
    (
        "Taking out trash",
        "A boy ties up the full garbage bag in the kitchen. Carrying it outside,",
        "he",
        "drops it into the large bin by the curb.",
    ),
    (
        "Knitting",
        "An old woman sits by the fire with two needles and a ball of red wool. Looping the wool "
        "over a needle,",
        "she",
        "knits another row of the scarf.",
    ),
    (
        "Surfing",
        "A surfer paddles out past the breaking waves on his board. As a big wave rises behind "
        "him,",
        "he",
        "stands up on the board and rides the wave toward the shore.",
    ),
    (
        "Feeding ducks",
        "A boy and his mother walk to the pond with a bag of seeds. At the water's edge,",
        "they",
        "scatter the seeds and the ducks swim over to eat.",
    ),
    (
        "Pumping a tire",
        "A girl finds that the back tire of her bicycle is soft. Attaching the pump to the valve,",
        "she",
        "pumps air into the tire until it is firm.",
    ),
    (
        "Stacking firewood",
        "A man splits a pile of logs in the yard before winter. Carrying an armful at a time,",
        "he",
        "stacks the logs neatly against the side of the shed.",
    ),
    (
        "Using an umbrella",
        "A woman steps out of the office and sees that it is raining hard. Opening her umbrella,",
        "she",
        "walks to her car without getting wet.",
    ),
    (
        "Lifting weights",
        "A man lies on the bench at the gym and grips the heavy bar above his chest. Taking a "
        "deep breath,",
        "he",
        "lowers the bar to his chest and pushes it back up.",
    ),
    (
        "Frosting cookies",
        "A girl lays warm sugar cookies on the counter and opens a tub of pink frosting. With a "
        "butter knife,",
        "she",
        "spreads frosting on top of each cookie.",
    ),
    (
        "Locking the door",
        "A man puts on his coat and steps out of his apartment to go to work. Taking out his keys,",
        "he",
        "locks the door behind him.",
    ),
    (
        "Putting out a fire",
        "A cook sees a small flame rising from a pan of oil on the stove. Quickly,",
        "the cook",
        "covers the pan with a lid to smother the flame.",
    ),
    (
        "Bathing a dog",
        "A woman lifts her muddy dog into the bathtub and turns on the warm water. Rubbing in "
        "some shampoo,",
        "she",
        "washes the mud out of the dog's fur.",
    ),
]
