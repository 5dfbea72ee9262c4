"""Agreement: every engine and precision against torch fp32, on a trained stand-in and on random weights.

python -m bench.agreement --model DIR [--standin DIR] [--engine-cache DIR] [--quick]

Random weights give agreement figures that say little: their top two scores are nearly equal, so
any rounding flips a label. So each figure is measured on the trained stand-in (``tools.standin``:
the same architecture trained on part of the headlines) beside the random model's, on the stand-in's
held-out headlines (never trained on). For each model and setting (engine, precision) a process of
its own loads the classifier through the product's code (``FinbertClassifier.load``; OpenVINO
conversions built by the product's ``openvino_engine.build``, int8 calibrated on the shipped
sample) and classifies every held-out text; then, against torch fp32 of the same model: the share of
identical labels, the accuracy against the true labels and its change in points, the largest
probability difference, and fp32's top-two margins (median, and the largest where labels differ).

**Window merging**: long posts made of held-out headlines of one label (joined until 128+ tokens)
are read in one window (FINBERT_MAX_LENGTH 512) and in windows of 64 tokens whose scores are merged
(``model.windows``), with torch fp32 and with the default setting; the same figures against the
one-window read. (The stand-in was trained on up to 64 tokens: its positions beyond 64 are barely
trained, which favours the windowed read. Say so where the figure is used.)

The rule (README "Engines and precisions"): a faster setting may cost at most
``MAX_ACCURACY_LOSS_POINTS`` of accuracy and at most ``1 - MIN_SAME_LABELS`` of the labels.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, child_env, log, shielded_from_signals, stop_process

#: points of accuracy (against the true labels) a faster setting may lose against torch fp32.
MAX_ACCURACY_LOSS_POINTS = 0.5
#: share of torch fp32's labels a faster setting must keep.
MIN_SAME_LABELS = 0.99
#: seconds a classifier process may take (a FinBERT-sized int8 conversion takes minutes).
CHILD_TIMEOUT = 1800.0
#: tokens a long post has at least.
LONG_POST_TOKENS = 128
#: tokens per window when long posts are read in merged windows.
WINDOW_TOKENS = 64
#: long posts built for the window-merging figures (full, --quick).
LONG_POSTS = (120, 40)
#: held-out texts classified (full: all; --quick: this many, spread over them).
QUICK_TEXTS = 300


def settings_to_measure(bf16_native: bool, openvino: bool) -> list[tuple[str, str]]:
    """Torch fp32 (the reference) first; bf16 only where the CPU computes in bf16 (emulated elsewhere)."""
    chosen = [("torch", "fp32")]
    chosen += [("torch", "bf16")] if bf16_native else []
    chosen += [("torch", "int8")]
    if openvino:
        chosen += (
            [("openvino", "fp32")] + ([("openvino", "bf16")] if bf16_native else []) + [("openvino", "int8")]
        )
    return chosen


def classify_in_child(
    model: Path,
    engine: str,
    precision: str,
    texts: list[str],
    work_dir: Path,
    engine_cache: Path,
    max_length: int = 512,
) -> list[dict[str, Any]]:
    """Predictions (label, scores) for ``texts`` from a process of its own."""
    work_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{model.name}-{engine}-{precision}-{max_length}"
    spec = work_dir / f"agreement-{tag}.spec.json"
    out = work_dir / f"agreement-{tag}.out.json"
    log_path = work_dir / f"agreement-{tag}.log"
    spec.write_text(
        json.dumps(
            {
                "model": str(model),
                "engine": engine,
                "precision": precision,
                "texts": texts,
                "engine_cache": str(engine_cache),
                "max_length": max_length,
            }
        )
    )
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [PYTHON, "-m", "bench.agreement", "--child", str(spec), str(out)],
            cwd=REPO,
            env=child_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            status = process.wait(CHILD_TIMEOUT)
        finally:
            with shielded_from_signals():
                stop_process(process, timeout=5)
    if status != 0:
        raise RuntimeError(f"{engine} {precision} on {model.name} failed:\n{log_path.read_text()[-2000:]}")
    return json.loads(out.read_text())["predictions"]


def _child(spec_path: Path, out_path: Path) -> None:
    """Load the classifier (building an OpenVINO conversion first if needed) and classify the texts."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    spec = json.loads(spec_path.read_text())
    from model.classifier import FinbertClassifier, configure_torch

    threads = os.cpu_count() or 1
    configure_torch(threads)
    cache = Path(spec["engine_cache"])
    if spec["engine"] == "openvino":
        from model.openvino_engine import build

        build(spec["model"], spec["precision"], spec["max_length"], cache)
    classifier = FinbertClassifier.load(
        spec["model"],
        spec["precision"],
        max_length=spec["max_length"],
        engine=spec["engine"],
        engine_cache=cache,
        threads=threads,
    )
    predictions = [
        {
            "label": result.sentiment,
            "scores": [result.raw_scores[label] for label in classifier.labels],
            "windows": result.windows,
        }
        for result in classifier.classify(spec["texts"])
    ]
    out_path.write_text(json.dumps({"labels": list(classifier.labels), "predictions": predictions}))


def _margin(scores: list[float]) -> float:
    top, second = sorted(scores, reverse=True)[:2]
    return top - second


def compare(reference: list[dict[str, Any]], other: list[dict[str, Any]], truth: list[str]) -> dict[str, Any]:
    """``other`` against ``reference`` (same texts): identical labels, accuracy against ``truth``, margins."""
    pairs = list(zip(reference, other, truth, strict=True))
    differing = [ref for ref, item, _ in pairs if ref["label"] != item["label"]]
    accuracy = sum(item["label"] == true for _, item, true in pairs) / len(pairs)
    reference_accuracy = sum(ref["label"] == true for ref, _, true in pairs) / len(pairs)
    return {
        "items": len(pairs),
        "same_label_share": 1 - len(differing) / len(pairs),
        "disagreements": len(differing),
        "accuracy": accuracy,
        "reference_accuracy": reference_accuracy,
        "accuracy_change_points": (accuracy - reference_accuracy) * 100,
        "max_abs_probability_diff": max(
            max(abs(a - b) for a, b in zip(ref["scores"], item["scores"], strict=True))
            for ref, item, _ in pairs
        ),
        "median_fp32_margin": statistics.median(_margin(ref["scores"]) for ref, _, _ in pairs),
        "max_fp32_margin_where_disagreeing": max((_margin(ref["scores"]) for ref in differing), default=None),
        "predicted_labels": {
            label: sum(item["label"] == label for _, item, _ in pairs) for label in sorted(set(truth))
        },
    }


def passes_rule(item: dict[str, Any]) -> bool:
    """A faster setting keeps the default's promise: at most 0.5 points of accuracy and 1% of labels."""
    return (
        item["same_label_share"] >= MIN_SAME_LABELS
        and -item["accuracy_change_points"] <= MAX_ACCURACY_LOSS_POINTS + 1e-9
    )


def long_posts(rows: list[tuple[str, str]], tokenizer: Any, count: int) -> list[tuple[str, str]]:
    """``count`` posts of at least LONG_POST_TOKENS tokens, each joining held-out headlines of one label
    (taken in order, round-robin over the labels), with that label as the truth."""
    by_label: dict[str, list[str]] = {}
    for text, label in rows:
        by_label.setdefault(label, []).append(text)
    positions = dict.fromkeys(by_label, 0)
    posts: list[tuple[str, str]] = []
    labels = sorted(by_label)
    while len(posts) < count:
        label = labels[len(posts) % len(labels)]
        parts: list[str] = []
        while len(tokenizer(". ".join(parts), add_special_tokens=False)["input_ids"]) < LONG_POST_TOKENS:
            texts = by_label[label]
            parts.append(texts[positions[label] % len(texts)].rstrip(". "))
            positions[label] += 1
        posts.append((". ".join(parts) + ".", label))
    return posts


def measure_agreement(
    standin: Path,
    random_model: Path,
    work_dir: Path,
    engine_cache: Path,
    quick: bool = False,
    default: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Every setting on both models, window merging; see the module's docstring. Errors are recorded."""
    from bench.common import evenly_spaced
    from config import BF16_FLAGS, DEFAULT_ENGINE, cpu_flags, default_precision
    from model.engine_choice import openvino_installed
    from tools.standin import STANDIN_FILE, held_out_rows

    default = default or (DEFAULT_ENGINE, default_precision(engine=DEFAULT_ENGINE))
    rows = held_out_rows(standin)
    if quick:
        rows = evenly_spaced(rows, QUICK_TEXTS)
    texts = [text for text, _ in rows]
    truth = [label for _, label in rows]
    chosen = settings_to_measure(bool(BF16_FLAGS & cpu_flags()), openvino_installed())
    record = json.loads((standin / STANDIN_FILE).read_text())
    results: dict[str, Any] = {
        "standin": str(standin),
        "standin_training": {
            key: record[key]
            for key in (
                "recipe",
                "seed",
                "held_out_share",
                "held_out_accuracy_fp32",
                "majority_share",
                "seconds",
            )
        },
        "random_model": str(random_model),
        "items": len(texts),
        "held_out_labels": {label: truth.count(label) for label in sorted(set(truth))},
        "settings": [f"{engine} {precision}" for engine, precision in chosen],
        "default": f"{default[0]} {default[1]}",
        "rule": {"max_accuracy_loss_points": MAX_ACCURACY_LOSS_POINTS, "min_same_labels": MIN_SAME_LABELS},
        "models": {},
        "errors": [],
    }
    for name, model in (("standin", standin), ("random", random_model)):
        predictions: dict[str, list[dict[str, Any]]] = {}
        for engine, precision in chosen:
            setting = f"{engine} {precision}"
            log(f"agreement: {name}, {setting}, {len(texts)} held-out headlines")
            try:
                predictions[setting] = classify_in_child(
                    model, engine, precision, texts, work_dir, engine_cache
                )
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
                results["errors"].append(f"{name} {setting}: {error}")
                log(f"agreement: {name} {setting} failed: {error}")
        reference = predictions.get("torch fp32")
        results["models"][name] = (
            {setting: compare(reference, items, truth) for setting, items in predictions.items()}
            if reference
            else {}
        )
        for setting, item in results["models"][name].items():
            item["passes_rule"] = passes_rule(item)
            log(
                f"agreement: {name} {setting}: {item['same_label_share']:.2%} same labels, "
                f"accuracy {item['accuracy']:.2%} ({item['accuracy_change_points']:+.2f} points)"
            )
    results["windows"] = _window_merging(
        standin, random_model, rows, work_dir, engine_cache, LONG_POSTS[1 if quick else 0], default, results
    )
    return results


def _window_merging(
    standin: Path,
    random_model: Path,
    rows: list[tuple[str, str]],
    work_dir: Path,
    engine_cache: Path,
    count: int,
    default: tuple[str, str],
    results: dict[str, Any],
) -> dict[str, Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(standin))
    posts = long_posts(rows, tokenizer, count)
    texts = [text for text, _ in posts]
    truth = [label for _, label in posts]
    figures: dict[str, Any] = {"posts": len(posts), "window_tokens": WINDOW_TOKENS, "models": {}}
    for name, model in (("standin", standin), ("random", random_model)):
        figures["models"][name] = {}
        for engine, precision in dict.fromkeys([("torch", "fp32"), default]):
            setting = f"{engine} {precision}"
            log(f"agreement: window merging, {name}, {setting}, {len(texts)} long posts")
            try:
                whole = classify_in_child(model, engine, precision, texts, work_dir, engine_cache, 512)
                merged = classify_in_child(
                    model, engine, precision, texts, work_dir, engine_cache, WINDOW_TOKENS
                )
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
                results["errors"].append(f"window merging {name} {setting}: {error}")
                continue
            item = compare(whole, merged, truth)
            item["mean_windows"] = sum(p["windows"] for p in merged) / len(merged)
            figures["models"][name][setting] = item
    return figures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(Path(argv[1]), Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.agreement", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", required=True, help="the FinBERT-shaped random model (build:DIR or a folder)"
    )
    parser.add_argument(
        "--standin", type=Path, help="a built stand-in (default: built or found in its cache)"
    )
    parser.add_argument(
        "--engine-cache", type=Path, help="where conversions are cached (default: a temporary folder)"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    from bench.model import resolve_model, resolve_standin

    model, _ = resolve_model(args.model)
    standin = args.standin or resolve_standin()
    with tempfile.TemporaryDirectory(prefix="volfefe-agreement-") as work:
        results = measure_agreement(
            standin, model, Path(work), args.engine_cache or Path(work) / "engines", args.quick
        )
    from bench.engine_report import agreement_lines

    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print("\n".join(agreement_lines({"agreement": results})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
