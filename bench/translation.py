"""Translation on the whole fra-eng corpus: each model's strong recipe
(configs/seq2seq/<model>_strong.yaml) trained for a wall-clock budget, its test sacreBLEU
(greedy and beam search) after each mark of the budget, training target tokens per second,
parameters and sample translations; and the Transformer's `cli.py fit` against a plain PyTorch
loop of the same model, batches and optimizer in the same process.

    python bench/translation.py train --models transformer seq2seq_bahdanau seq2seq_gru
    python bench/translation.py overhead --steps 60 --repeats 3
    python bench/translation.py report      # rewrite the section from the saved results
    python bench/translation.py outside     # each model's 60-minute checkpoint on
                                            # bench/outside_pairs.tsv (not in the corpus)

Training results are kept in runs/bench_translation/results.json as each model finishes, so
`report` can rewrite the section and a long run is not lost to a later crash."""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import sacrebleu
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.flops import matmul_flops  # noqa: E402
from bench.report import write_section  # noqa: E402
from cli import LitzooCLI  # noqa: E402
from lit_modules.decoding import PAD  # noqa: E402
from registry import count_parameters  # noqa: E402

WORK = Path("runs") / "bench_translation"
RESULTS = WORK / "results.json"
# Added to every command line; main() appends --cli_arg (e.g. a small --data.max_pairs to check
# the script quickly).
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
SAMPLES = 5
MODELS = ["transformer", "seq2seq_bahdanau", "seq2seq_gru"]


def recipe(model: str) -> str:
    return str(ROOT / "configs" / "seq2seq" / f"{model}_strong.yaml")


class TrainingClock(L.Callback):
    """Counts the target tokens trained on and the seconds spent in training steps (not in
    validation), and saves a checkpoint when the fit's wall time passes each mark."""

    def __init__(self, marks_minutes: list[float], directory: Path) -> None:
        self.marks = sorted(marks_minutes)
        self.directory = directory
        self.tokens = 0
        self.step_seconds = 0.0
        self.saved: dict[float, str] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.step_started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step_seconds += time.perf_counter() - self.step_started
        self.tokens += int((batch.tgt[:, 1:] != PAD).sum())
        minutes = (time.perf_counter() - self.started) / 60
        for mark in self.marks:
            if mark not in self.saved and minutes >= mark:
                path = self.directory / f"{mark:g}min.ckpt"
                trainer.save_checkpoint(path)
                self.saved[mark] = str(path)


def test_bleu(model: str, checkpoint: str, beam_size: int) -> dict[str, float]:
    """test/bleu (every reference of a sentence) and test/bleu_1ref (the pair's own)."""
    cli = LitzooCLI(
        [
            "test",
            "--config",
            recipe(model),
            f"--ckpt_path={checkpoint}",
            f"--data.beam_size={beam_size}",
            *QUIET,
        ]
    )
    metrics = cli.trainer.callback_metrics
    return {"all": float(metrics["test/bleu"]), "1ref": float(metrics["test/bleu_1ref"])}


def sample_translations(model: str, checkpoint: str, beam_size: int) -> list[dict[str, str]]:
    """Test sentences of 5 to 12 words spread evenly over the test split (which runs from
    short to long), with the reference and the model's output."""
    cli = LitzooCLI(["--config", recipe(model), *QUIET], run=False)
    data = cli.datamodule
    data.setup("test")
    net = type(cli.model).load_from_checkpoint(checkpoint, map_location="cpu").eval()
    test = data.splits["test"]
    fitting = ((test.src_len >= 6) & (test.src_len <= 13)).nonzero().squeeze(1)
    rows = fitting[torch.linspace(0, len(fitting) - 1, SAMPLES).long()]
    src_len = test.src_len[rows]
    with torch.no_grad():
        ids = net.translate(test.src[rows][:, : int(src_len.max())], src_len, beam_size)
    pairs = data.corpus["test"]
    return [
        {
            "english": pairs[r].english,
            "reference": pairs[r].french,
            "translation": data.decode_target(row),
        }
        for r, row in zip(rows.tolist(), ids, strict=True)
    ]


def train(model: str, minutes: float, marks: list[float], beam_size: int) -> dict[str, Any]:
    directory = WORK / model
    directory.mkdir(parents=True, exist_ok=True)
    gflops = matmul_flops() / 1e9
    clock = TrainingClock([m for m in marks if m < minutes], directory)
    seconds = round(minutes * 60)
    budget = f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"  # DD:HH:MM:SS
    cli = LitzooCLI(
        ["--config", recipe(model), f"--trainer.max_time={budget}", "--trainer.max_epochs=-1",
         *QUIET],
        run=False,
    )  # fmt: skip
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, cli.datamodule)
    final = directory / f"{minutes:g}min.ckpt"
    cli.trainer.save_checkpoint(final)
    checkpoints = {**clock.saved, minutes: str(final)}
    result = {
        "gflops": gflops,
        "test_pairs": len(cli.datamodule.corpus["test"]),
        "parameters": count_parameters(cli.model),
        "epochs": cli.trainer.current_epoch,
        "steps": cli.trainer.global_step,
        "tokens_per_second": clock.tokens / clock.step_seconds,
        "bleu": {
            f"{mark:g}": {
                "greedy": test_bleu(model, path, 1),
                "beam": test_bleu(model, path, beam_size),
            }
            for mark, path in sorted(checkpoints.items())
        },
        "beam_size": beam_size,
        "samples": sample_translations(model, str(final), beam_size),
    }
    return result


def translate_outside(model: str, checkpoint: str, english: Path, beam_size: int) -> list[str]:
    """Translations of the lines of `english` through `cli.py predict`, as a user would run it."""
    cli = LitzooCLI(
        ["predict", "--config", recipe(model), f"--ckpt_path={checkpoint}",
         f"--data.sentences_file={english}", f"--data.beam_size={beam_size}", *QUIET],
    )  # fmt: skip
    written = (Path(cli.trainer.log_dir) / "translations.tsv").read_text(encoding="utf-8")
    return [line.split("\t")[1] for line in written.splitlines()[1:]]


def outside(models: list[str], pairs_file: Path, beam_size: int) -> None:
    """Translate English sentences that are not in the corpus with each model's 60-minute
    checkpoint and score them by sacreBLEU (case-insensitive) against one reference each."""
    pairs = [line.split("\t") for line in pairs_file.read_text(encoding="utf-8").splitlines()]
    english = WORK / "outside_english.txt"
    english.parent.mkdir(parents=True, exist_ok=True)
    english.write_text("".join(f"{source}\n" for source, _ in pairs), encoding="utf-8")
    references = [[french for _, french in pairs]]
    translations, scores = {}, []
    for model in models:
        checkpoint = WORK / model / "60min.ckpt"
        translations[model] = translate_outside(model, str(checkpoint), english, beam_size)
        bleu = sacrebleu.corpus_bleu(translations[model], references, lowercase=True)
        scores.append(f"| `{model}` | `{checkpoint}` | **{bleu.score:.1f}** | {bleu} |")
    rows = [
        f"| {source} | {french} | " + " | ".join(translations[m][i] for m in models) + " |"
        for i, (source, french) in enumerate(pairs)
    ]
    write_section(
        "translation_outside",
        "Translation of sentences from outside the corpus",
        f"""The {len(pairs)} English sentences of bench/outside_pairs.tsv, written for this check and
none of them in fra.txt (compared lowercased), translated by each model's 60-minute checkpoint
from the training benchmark above through `cli.py predict` with beam {beam_size}, scored by
sacreBLEU's corpus BLEU, case-insensitive, against the one French reference written beside each
(a translation with "tu" where the reference has "vous" counts as wrong words).

| model | checkpoint | sacreBLEU | details |
|---|---|---|---|
{chr(10).join(scores)}

| English | reference | {" | ".join(f"`{m}`" for m in models)} |
|---|---|{"---|" * len(models)}
{chr(10).join(rows)}""",
    )


def plain_loop_seconds(cli: LitzooCLI, steps: int) -> float:
    """The same model, batches, optimizer, schedule and gradient clipping as the fit, in a
    hand-written loop."""
    model = copy.deepcopy(cli.model)  # its hyperparameters hold optimizer specs, not callables
    model.train()
    optimizers = model.configure_optimizers()
    optimizer, schedule = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    clip = cli.trainer.gradient_clip_val
    start = time.perf_counter()
    for step, batch in enumerate(cli.datamodule.train_dataloader()):
        if step == steps:
            break
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        schedule.step()
    return time.perf_counter() - start


def fit_seconds(steps: int) -> float:
    """`cli.py fit` of the Transformer's recipe for `steps` optimizer steps, as the CLI builds
    it (logger, checkpoints, callbacks), without validation, which the plain loop lacks."""
    cli = LitzooCLI(
        ["--config", recipe("transformer"), f"--trainer.max_steps={steps}",
         "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0", *QUIET],
        run=False,
    )  # fmt: skip
    cli.datamodule.setup("fit")  # reading the corpus is not a training cost of either side
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    return time.perf_counter() - start


def overhead(steps: int, repeats: int) -> None:
    cli = LitzooCLI(["--config", recipe("transformer"), *QUIET], run=False)
    cli.datamodule.setup("fit")
    pairs = []
    for _ in range(repeats):  # alternating, so the machine's drift hits both sides
        plain = plain_loop_seconds(cli, steps)
        fit = fit_seconds(steps)
        pairs.append((plain, fit))
    ratios = [fit / plain for plain, fit in pairs]
    rows = "\n".join(
        f"| {i + 1} | {plain:.1f} ({plain / steps * 1000:.0f} ms/step) | {fit:.1f} | {fit / plain:.3f} |"
        for i, (plain, fit) in enumerate(pairs)
    )
    write_section(
        "translation_overhead",
        "Transformer: cli.py fit against a plain PyTorch loop",
        f"""The Transformer's strong recipe (configs/seq2seq/transformer_strong.yaml) for {steps}
optimizer steps on the whole corpus: `cli.py fit` as the CLI builds it (CSV logger, best and
last checkpoints, callbacks; validation off, since the plain loop has none) against a
hand-written loop of the same model, batches, Adam, inverse-square-root schedule and gradient
clipping, in the same process, alternating. fp32 matmul: {matmul_flops() / 1e9:.0f} GFLOP/s.

| repeat | plain loop s | cli.py fit s | ratio |
|---|---|---|---|
{rows}

Median ratio: **{statistics.median(ratios):.3f}** (bar: <= 1.05).""",
    )


def budget(result: dict[str, Any]) -> float:
    """A model's training budget in minutes: its last mark."""
    return max(map(float, result["bleu"]))


def report(results: dict[str, Any]) -> None:
    marks = sorted({mark for r in results.values() for mark in r["bleu"]}, key=float)
    header = " / ".join(f"{m}" for m in marks)

    def scores(r: dict[str, Any], search: str, references: str) -> str:
        return " / ".join(
            f"{r['bleu'][m][search][references]:.1f}" if m in r["bleu"] else "-" for m in marks
        )

    lines = [
        f"| model | parameters | epochs | target tokens/s | greedy BLEU, min {header} | "
        f"beam BLEU, min {header} | greedy BLEU, 1 ref | beam BLEU, 1 ref | matmul GFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| `{name}` | {r['parameters']:,} | {r['epochs']} | {r['tokens_per_second']:,.0f} "
            f"| {scores(r, 'greedy', 'all')} | {scores(r, 'beam', 'all')} (beam {r['beam_size']}) "
            f"| {scores(r, 'greedy', '1ref')} | {scores(r, 'beam', '1ref')} | {r['gflops']:.0f} |"
        )
    test_pairs = next(iter(results.values()))["test_pairs"]
    samples = []
    for name, r in results.items():
        samples.append(f"\n`{name}`, beam {r['beam_size']}, after {budget(r):g} minutes:\n")
        samples.append("| English | reference | translation |\n|---|---|---|")
        samples += [
            f"| {s['english']} | {s['reference']} | {s['translation']} |" for s in r["samples"]
        ]
    write_section(
        "translation",
        "Translation, English to French, on the whole corpus",
        f"""Each model's strong recipe (configs/seq2seq/<model>_strong.yaml) trained for
{", ".join(f"{name} {budget(r):g}" for name, r in results.items())} minutes of wall time on this
machine (validation included; fp32 matmul GFLOP/s measured before each), then the checkpoint
saved at each mark is tested on the whole test split
({test_pairs:,} pairs whose English sentences appear in no other split) by sacreBLEU's corpus BLEU,
case-insensitive, against the corpus's own French sentences: `test/bleu` against every French
translation the corpus gives a sentence (Tatoeba often has several: with "tu" and with
"vous", say), `test/bleu_1ref` (the "1 ref" columns) against the pair's own French sentence
only. Target tokens/s counts training steps only. Bar: the Transformer >= 35 BLEU within 60
minutes; Bahdanau above the plain GRU.

{chr(10).join(lines)}

Sample translations of test sentences:
{chr(10).join(samples)}""",
    )


def saved_results() -> dict[str, Any]:
    """The results of every model trained so far from this directory, by model name."""
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cli_arg", action="append", default=[],
        help="one more cli.py argument for every run (repeatable), e.g. --cli_arg=--data.max_pairs=4000",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = sub.add_parser("train", help="train, test and record models")
    train_parser.add_argument("--models", nargs="+", default=MODELS)
    train_parser.add_argument("--minutes", type=float, default=60)
    train_parser.add_argument("--marks", type=float, nargs="+", default=[15, 30])
    train_parser.add_argument("--beam_size", type=int, default=4)
    overhead_parser = sub.add_parser("overhead", help="cli.py fit against a plain loop")
    overhead_parser.add_argument("--steps", type=int, default=60)
    overhead_parser.add_argument("--repeats", type=int, default=3)
    sub.add_parser("report", help="rewrite the section from saved results")
    outside_parser = sub.add_parser("outside", help="translate pairs from outside the corpus")
    outside_parser.add_argument("--models", nargs="+", default=MODELS)
    outside_parser.add_argument("--pairs", type=Path, default=ROOT / "bench" / "outside_pairs.tsv")
    outside_parser.add_argument("--beam_size", type=int, default=4)
    args = parser.parse_args()
    QUIET.extend(args.cli_arg)

    if args.command == "overhead":
        overhead(args.steps, args.repeats)
        return
    if args.command == "outside":
        outside(args.models, args.pairs, args.beam_size)
        return
    if args.command == "train":
        for model in args.models:
            result = train(model, args.minutes, args.marks, args.beam_size)
            # Read again just before writing: another model may have been trained beside this
            # one in the same directory and saved its result meanwhile.
            RESULTS.write_text(
                json.dumps({**saved_results(), model: result}, indent=1, ensure_ascii=False)
            )
    report(saved_results())


if __name__ == "__main__":
    main()
